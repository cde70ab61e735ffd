# GitOps ownership: a workload that Argo CD or Flux syncs from Git must be changed in Git,
# or the next sync reverts a direct patch. The pipeline reports the tool in
# input.cluster.gitops.tool; the target's own labels and annotations are checked as well
# so a missing cluster fact cannot route a managed workload to a direct patch.
package dakr.gitops

import data.dakr.lib

tools := {"argocd", "flux"}

argocd_labels := {"argocd.argoproj.io/instance"}

argocd_annotations := {"argocd.argoproj.io/tracking-id", "argocd.argoproj.io/sync-options"}

flux_labels := {
	"kustomize.toolkit.fluxcd.io/name",
	"helm.toolkit.fluxcd.io/name",
}

tool := t if {
	t := lib.cluster.gitops.tool
	t in tools
} else := "argocd" if {
	some k, _ in lib.labels
	k in argocd_labels
} else := "argocd" if {
	some k, _ in lib.annotations
	k in argocd_annotations
} else := "flux" if {
	some k, _ in lib.labels
	k in flux_labels
}

managed if tool
