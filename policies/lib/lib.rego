# Shared accessors over the policy input, so every rule reads the input the same way and
# a missing field is a default, never an undefined that silently skips a deny.
#
# Cost: each reference to one of these rules is a lookup of a virtual document (about
# eight evaluation steps even when cached), where a direct `input....` reference is one or
# two; and a rule whose body starts with `input.x == "constant"` is skipped by OPA's rule
# index without being entered. So hot rules compare `input.recommendation.kind` and
# `input.recommendation.spec.action` directly (equal to `kind` and `action` below wherever
# these are defined), bind an accessor once per body, and use these where the default
# matters (messages, the absent cases).
package dakr.lib

kind := object.get(input, ["recommendation", "kind"], "")

# The recommendation's spec is read field by field, never whole, so the engine is sent
# only the fields some rule reads (reconciler/adapters/opa/embedded.py, input_shape): an
# absent spec reads as {} and a spec that is not an object is an evaluation error, as
# object.get on it always was.
default action := ""

action := object.get(input.recommendation.spec, "action", "")

is_workload if kind == "WorkloadRecommendation"

is_nodegroup if kind == "NodeGroupRecommendation"

namespace := ns if {
	ns := input.recommendation.metadata.namespace
	is_string(ns)
} else := ns if {
	ns := input.target.metadata.namespace
	is_string(ns)
} else := ""

default name := ""

name := object.get(input.recommendation.spec, ["targetRef", "name"], "")

default target_kind := ""

target_kind := object.get(input.recommendation.spec, ["targetRef", "kind"], "")

labels := object.get(input, ["target", "metadata", "labels"], {})

# No accessor for the target's annotations: a rule looks the key it needs up
# (`input.target.metadata.annotations["argocd.argoproj.io/tracking-id"]`, as gitops.tool
# does), so only those keys are sent (policies/README.md, "What the embedded engine is
# sent"); a workload's annotations hold kubectl's whole last applied manifest.

cluster := object.get(input, "cluster", {})

containers := object.get(input, ["normalized", "containers"], {})

now_ns := time.parse_rfc3339_ns(input.now)

# A denial as the decision lists it. The library's own rules write the object out
# (`{"rule": ..., "msg": ...}`): a function call costs steps on every denial.
denial(rule, msg) := {"rule": rule, "msg": msg}

# Percent change from old to new; a change from nothing counts as 100 %.
pct_change(old, new) := 100 if {
	old == 0
	new != 0
} else := 0 if {
	old == 0
} else := abs(((new - old) * 100) / old)

any_regex_match(patterns, value) if {
	some p in patterns
	regex.match(p, value)
}

# Human units for messages: cores as millicores, bytes as Mi.
fmt_res("cpu", v) := sprintf("%dm", [round(v * 1000)])

fmt_res("memory", v) := sprintf("%dMi", [round(v / 1048576)])
