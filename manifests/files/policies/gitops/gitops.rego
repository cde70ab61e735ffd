# GitOps ownership: a workload that Argo CD or Flux syncs from Git must be changed in Git,
# or the next sync reverts a direct patch. The pipeline reports the tool in
# input.cluster.gitops.tool; the target's own labels and annotations are checked as well
# so a missing cluster fact cannot route a managed workload to a direct patch.
package dakr.gitops

# The tool the cluster facts name, else Argo CD's tracking label or annotation, else
# Flux's labels. (input.cluster.gitops.tool, input.target.metadata.labels and .annotations
# are lib.cluster, lib.labels and lib.annotations wherever those are set; the sets are
# literals, which cost no lookup.)
tool := t if {
	t := input.cluster.gitops.tool
	t in {"argocd", "flux"}
} else := "argocd" if {
	some k, _ in input.target.metadata.labels
	k == "argocd.argoproj.io/instance"
} else := "argocd" if {
	some k, _ in input.target.metadata.annotations
	k in {"argocd.argoproj.io/tracking-id", "argocd.argoproj.io/sync-options"}
} else := "flux" if {
	some k, _ in input.target.metadata.labels
	k in {"kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name"}
}

managed if tool
