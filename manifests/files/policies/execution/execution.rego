# How an allowed change is carried out, where there is more than one way: the decision's
# `execution` object, present only for the actions it concerns.
#
#   LiveMigration (direct mode resizes the running pods in place, pods/resize):
#     fallback         none | recreate: what happens when a pod cannot be resized in place
#                      (Infeasible, Error, Deferred or in progress too long, a refusal):
#                      none = Failed, the pods already resized put back; recreate = the
#                      ordinary rolling change of the pod template (every pod restarts)
#     persist          webhook | template: how pods created later get the new values:
#                      webhook = the admission webhook (no rollout), template = the pod
#                      template changes too (a rollout that restarts every pod)
#     move             none | checkpoint: a pod whose resize is Infeasible on its node is
#                      moved with its process state (checkpoint/restore) when the cluster
#                      declares it can restore (input.cluster.checkpointRestore)
#     maxPodsResizing  pods of one workload resizing at once
#     deferredTimeoutSeconds, inProgressTimeoutSeconds: how long a Deferred or an
#                      in-progress resize is waited for before the fallback
#     resizeRunning    GitOps mode: true = the running pods are resized in place as soon
#                      as the pull request is open (the pull request still carries the
#                      template change, which restarts the pods when merged); direct mode
#                      always resizes in place
#   NodeGroupRecommendation:
#     nodeConsolidation mark | drain: mark the nodes for the cluster's node operator
#                      (Karpenter, the cluster autoscaler) or cordon and drain them here
#
# Values come from config.defaults (liveMigration, nodes.consolidation) or a scoped rule.
package dakr.execution

import data.dakr.scope

live := object.get(scope.settings, "liveMigration", {})

live_defaults := {
	"fallback": "none",
	"persist": "webhook",
	"move": "none",
	"maxPodsResizing": 1,
	"deferredTimeoutSeconds": 300,
	"inProgressTimeoutSeconds": 3600,
	"resizeRunning": false,
}

live_settings := object.union(live_defaults, live)

consolidation := object.get(scope.settings, ["nodes", "consolidation"], "mark")

execution := {"liveMigration": object.filter(live_settings, object.keys(live_defaults))} if {
	input.recommendation.spec.action == "LiveMigration"
} else := {"nodeConsolidation": consolidation} if {
	input.recommendation.kind == "NodeGroupRecommendation"
} else := {}

# A move the cluster cannot make: said when the decision is made, not only when a pod's
# resize turns out Infeasible.
warnings contains "liveMigration.move is checkpoint but the cluster does not declare checkpoint/restore (chart value liveMigration.checkpointRestore): a pod whose resize is Infeasible gets the fallback instead" if {
	input.recommendation.spec.action == "LiveMigration"
	live_settings.move == "checkpoint"
	not input.cluster.checkpointRestore
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("liveMigration.fallback %v is not one of none, recreate", [v])} if {
	input.recommendation.spec.action == "LiveMigration"
	v := live_settings.fallback
	not v in {"none", "recreate"}
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("liveMigration.persist %v is not one of webhook, template", [v])} if {
	input.recommendation.spec.action == "LiveMigration"
	v := live_settings.persist
	not v in {"webhook", "template"}
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("liveMigration.move %v is not one of none, checkpoint", [v])} if {
	input.recommendation.spec.action == "LiveMigration"
	v := live_settings.move
	not v in {"none", "checkpoint"}
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("liveMigration.%s %v is not a positive number", [k, v])} if {
	input.recommendation.spec.action == "LiveMigration"
	some k in ["maxPodsResizing", "deferredTimeoutSeconds", "inProgressTimeoutSeconds"]
	v := live_settings[k]
	not positive(v)
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("liveMigration.resizeRunning %v is not true or false", [v])} if {
	input.recommendation.spec.action == "LiveMigration"
	v := live_settings.resizeRunning
	not is_boolean(v)
}

deny contains {"rule": "InvalidConfig", "msg": sprintf("nodes.consolidation %v is not one of mark, drain", [consolidation])} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	not consolidation in {"mark", "drain"}
}

positive(v) if {
	is_number(v)
	v > 0
}
