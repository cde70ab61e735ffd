# The decision document, data.dakr.decision: what the reconciler asks before any change.
#
#   allow     true only when no rule denies
#   mode      gitops | direct | audit (where an allowed change goes)
#   deny      [{rule, msg}], sorted by rule, then msg
#   warnings  [string], sorted
#   bounds    optional: clamped values the planner must use instead of the proposal
#   execution optional: how the change is carried out (execution/execution.rego): live
#             migration's fallback and persistence, node consolidation's mark or drain
#
# When the workload is out of scope, or the input is unreadable, only those reasons are
# reported: the other rules would only add noise about a change that cannot happen.
package dakr

import data.dakr.approval
import data.dakr.execution
import data.dakr.guardrails
import data.dakr.nodes
import data.dakr.replicas
import data.dakr.scope
import data.dakr.timing
import data.dakr.validate

gate := validate.deny | scope.deny

checks := ((((guardrails.deny | timing.deny) | approval.deny) | replicas.deny) | nodes.deny) | execution.deny

deny := gate if {
	count(gate) > 0
} else := checks

all_warnings := (((guardrails.warnings | approval.warnings) | replicas.warnings) | timing.warnings) | execution.warnings

all_bounds := object.union(guardrails.bounds, replicas.bounds)

base := {
	"allow": count(deny) == 0,
	"mode": approval.mode,
	"deny": [{"rule": p[0], "msg": p[1]} | some p in sort([[d.rule, d.msg] | some d in deny])],
	"warnings": [w | some w in all_warnings],
}

shaped := object.union(base, {"bounds": all_bounds}) if {
	count(all_bounds) > 0
	count(gate) == 0
} else := base

decision := object.union(shaped, {"execution": execution.execution}) if {
	count(execution.execution) > 0
	count(gate) == 0
} else := shaped

# Many decisions in one evaluation: input.items is a list of decision inputs.
batch := [d | some item in input.items; d := decision with input as item]
