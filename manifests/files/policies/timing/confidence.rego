# Minimum confidence: recommendations the source is unsure about are not applied.
#
# A recommendation that gives no confidence at all (every KRR and VPA import, most
# hand-written files) is its own case, not "confidence 0": timing.withoutConfidence says
# what happens to it. allow (the default) decides it on the other rules and warns that the
# check was skipped; deny refuses it with rule NoConfidence.
package dakr.timing

import data.dakr.scope

min_confidence := object.get(scope.settings, ["timing", "minConfidence"], 0)

without_confidence := object.get(scope.settings, ["timing", "withoutConfidence"], "deny")

# (A helper: `not is_number(input....)` is undefined, not true, when the field is absent.)
has_confidence if is_number(input.recommendation.spec.confidence)

source := s if {
	s := input.recommendation.spec.source
	is_string(s)
	s != ""
} else := "unknown"

deny contains {"rule": "MinimumConfidence", "msg": sprintf(
	"confidence %v is below the minimum %v (timing.minConfidence)", [c, m],
)} if {
	input.recommendation.kind == "WorkloadRecommendation"
	c := input.recommendation.spec.confidence
	is_number(c)
	m := min_confidence
	c < m
}

# What timing.withoutConfidence says, for a workload recommendation that gives no
# confidence: computed once for the deny and the warning below (a negation costs steps).
no_confidence := without_confidence if {
	input.recommendation.kind == "WorkloadRecommendation"
	not has_confidence
}

deny contains {"rule": "NoConfidence", "msg": sprintf(
	"the recommendation gives no confidence (source %s) and timing.withoutConfidence is %v: set it to allow to decide such recommendations on the other rules",
	[source, w],
)} if {
	w := no_confidence
	w != "allow"
}

warnings contains sprintf(
	"no confidence given (source %s): the minimum-confidence check was skipped (timing.withoutConfidence: allow)",
	[source],
) if {
	no_confidence == "allow"
}
