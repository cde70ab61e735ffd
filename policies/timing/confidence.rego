# Minimum confidence: recommendations the source is unsure about are not applied.
package dakr.timing

import data.dakr.lib
import data.dakr.scope

min_confidence := object.get(scope.settings, ["timing", "minConfidence"], 0)

deny contains lib.denial("MinimumConfidence", sprintf(
	"confidence %v is below the minimum %v", [c, min_confidence],
)) if {
	lib.is_workload
	c := object.get(lib.spec, "confidence", 0)
	c < min_confidence
}
