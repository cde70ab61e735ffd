# GitOps ownership: a workload that Argo CD or Flux syncs from Git must be changed in Git,
# or the next sync reverts a direct patch. The pipeline reports the tool in
# input.cluster.gitops.tool; the target's own labels and annotations are checked as well
# so a missing cluster fact cannot route a managed workload to a direct patch.
package dakr.gitops

# The tool the cluster facts name, else Argo CD's tracking label or annotation, else
# Flux's labels. (input.cluster.gitops.tool and input.target.metadata.labels are lib.cluster
# and lib.labels wherever those are set; the annotations have no accessor.) A key is looked
# up, not searched for among the others: `_ = labels[key]` holds whatever its value, as
# the key's presence did.
tool := t if {
	t := input.cluster.gitops.tool
	t in {"argocd", "flux"}
} else := "argocd" if {
	_ = input.target.metadata.labels["argocd.argoproj.io/instance"]
} else := "argocd" if {
	_ = input.target.metadata.annotations["argocd.argoproj.io/tracking-id"]
} else := "argocd" if {
	_ = input.target.metadata.annotations["argocd.argoproj.io/sync-options"]
} else := "flux" if {
	_ = input.target.metadata.labels["kustomize.toolkit.fluxcd.io/name"]
} else := "flux" if {
	_ = input.target.metadata.labels["helm.toolkit.fluxcd.io/name"]
}

managed if tool
