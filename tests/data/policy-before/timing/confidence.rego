# Minimum confidence: recommendations the source is unsure about are not applied.
#
# A recommendation that gives no confidence at all (every KRR and VPA import, most
# hand-written files) is its own case, not "confidence 0": timing.withoutConfidence says
# what happens to it. allow (the default) decides it on the other rules and warns that the
# check was skipped; deny refuses it with rule NoConfidence.
package dakr.timing

import data.dakr.lib
import data.dakr.scope

min_confidence := object.get(scope.settings, ["timing", "minConfidence"], 0)

without_confidence := object.get(scope.settings, ["timing", "withoutConfidence"], "deny")

has_confidence if is_number(lib.spec.confidence)

source := s if {
	s := lib.spec.source
	is_string(s)
	s != ""
} else := "unknown"

deny contains lib.denial("MinimumConfidence", sprintf(
	"confidence %v is below the minimum %v (timing.minConfidence)", [c, min_confidence],
)) if {
	lib.is_workload
	c := lib.spec.confidence
	is_number(c)
	c < min_confidence
}

deny contains lib.denial("NoConfidence", sprintf(
	"the recommendation gives no confidence (source %s) and timing.withoutConfidence is %v: set it to allow to decide such recommendations on the other rules",
	[source, without_confidence],
)) if {
	lib.is_workload
	not has_confidence
	without_confidence != "allow"
}

warnings contains sprintf(
	"no confidence given (source %s): the minimum-confidence check was skipped (timing.withoutConfidence: allow)",
	[source],
) if {
	lib.is_workload
	not has_confidence
	without_confidence == "allow"
}
