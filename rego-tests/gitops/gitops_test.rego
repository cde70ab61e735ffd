package dakr.gitops_test

import data.dakr.gitops
import data.fixtures as f

tool(inp) := t if {
	t := gitops.tool with input as inp
}

test_plain_workload_unmanaged if not gitops.managed with input as f.rightsizing

test_tool_from_cluster_facts if tool(f.cluster("gitops", {"tool": "flux"})) == "flux"

test_unknown_tool_ignored if not gitops.managed with input as f.cluster("gitops", {"tool": "spinnaker"})

test_argocd_label if tool(f.labelled("argocd.argoproj.io/instance", "shop")) == "argocd"

test_argocd_tracking_annotation if tool(f.annotated("argocd.argoproj.io/tracking-id", "shop:apps/Deployment:default/cart")) == "argocd"

test_flux_kustomize_label if tool(f.labelled("kustomize.toolkit.fluxcd.io/name", "apps")) == "flux"

test_flux_helm_label if tool(f.labelled("helm.toolkit.fluxcd.io/name", "shop")) == "flux"

test_no_target_unmanaged if not gitops.managed with input as f.set(f.rightsizing, "/target", null)

test_managed_routes_to_gitops if f.mode(f.labelled("helm.toolkit.fluxcd.io/name", "shop")) == "gitops"
