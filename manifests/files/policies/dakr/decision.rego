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
#
# Cost (policies/README.md, Cost): the decision asks only for the documents that can say
# something about the input (`shape`), and each gate area answers the common case in one
# body. Both rest on what the areas' rules need: a rule added to validate, scope, replicas,
# nodes or execution that fires where those premises say nothing can must come with a
# change here (or to well_formed / in_scope); tests/integration/policy/test_policy_equivalence.py
# holds the library to the decisions it made before the rewrite.
package dakr

import data.dakr.approval
import data.dakr.execution
import data.dakr.guardrails
import data.dakr.nodes
import data.dakr.replicas
import data.dakr.scope
import data.dakr.timing
import data.dakr.validate

# Whether the gate is open (no InvalidInput, NotCovered or OutOfScope). The common case is
# checked in one body per area (validate.well_formed, scope.in_scope), each of which
# implies that its area denies nothing: only an area whose check fails has its rules
# evaluated.
open := true if {
	validate.well_formed
	scope.in_scope
} else := count(gate) == 0

gate := invalid | out_of_scope

invalid := set() if validate.well_formed else := validate.deny

out_of_scope := set() if scope.in_scope else := scope.deny

# Which documents can say anything about the input, so that the others are not asked for:
#   resize    a Rightsizing workload asking nothing of replicas: no node rule (node groups
#             only), no execution rule (LiveMigration and node groups only) and no replica
#             rule (each needs replicas, spec.replicas, spec.hpa or a ReplicaScaling)
#   workload  a Rightsizing or ReplicaScaling workload: no node or execution rule
#   any       anything else
# (A rule added to replicas, nodes or execution must keep these premises true.)
shape := "resize" if {
	input.recommendation.kind == "WorkloadRecommendation"
	input.recommendation.spec.action == "Rightsizing"
	not asks_replicas
} else := "workload" if {
	input.recommendation.kind == "WorkloadRecommendation"
	input.recommendation.spec.action in {"Rightsizing", "ReplicaScaling"}
} else := "any"

# Each body names the input it needs: the rule index skips those whose input is absent.
asks_replicas if input.normalized.replicas

asks_replicas if input.recommendation.spec.replicas

asks_replicas if input.recommendation.spec.hpa

# The decision, one branch per shape and gate: with the gate open, the rules' denials,
# and bounds and execution when not empty; with it closed, only the gate's reasons. (The
# unions are written in the call, not bound to a name first: an assignment is a step.)
decision := object.union(
	doc((guardrails.deny | timing.deny) | approval.deny, (guardrails.warnings | approval.warnings) | timing.warnings),
	guardrails.bounds_doc,
) if {
	shape == "resize"
	open
} else := object.union(
	doc(((guardrails.deny | timing.deny) | approval.deny) | replicas.deny, ((guardrails.warnings | approval.warnings) | replicas.warnings) | timing.warnings),
	with_bounds(object.union(guardrails.bounds, replicas.bounds)),
) if {
	shape == "workload"
	open
} else := object.union(doc(dn, all_warnings), {k: v |
	some k, v in {"bounds": object.union(guardrails.bounds, replicas.bounds), "execution": execution.execution}
	count(v) > 0
}) if {
	open
	dn := ((((guardrails.deny | timing.deny) | approval.deny) | replicas.deny) | nodes.deny) | execution.deny
} else := doc(gate, all_warnings)

with_bounds(b) := {"bounds": b} if count(b) > 0 else := {}

all_warnings := (((guardrails.warnings | approval.warnings) | replicas.warnings) | timing.warnings) | execution.warnings

# The document without bounds and execution: deny sorted by rule, then msg (a set of
# objects would sort by msg first), warnings sorted.
doc(dn, ws) := {
	"allow": count(dn) == 0,
	"mode": approval.mode,
	"deny": deny_list(dn),
	"warnings": sort(ws),
}

deny_list(dn) := [{"rule": d.rule, "msg": d.msg} | some d in dn] if {
	count(dn) < 2
} else := [{"rule": p[0], "msg": p[1]} | some p in sort([[d.rule, d.msg] | some d in dn])]

# Many decisions in one evaluation: input.items is a list of decision inputs.
batch := [d | some item in input.items; d := decision with input as item]
