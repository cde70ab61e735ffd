# Cooldown: no new change to a workload until cooldownMinutes after the last one applied,
# so the effect of a change is observed before the next one is made.
package dakr.timing

import data.dakr.lib
import data.dakr.scope

cooldown_ns := object.get(scope.settings, ["timing", "cooldownMinutes"], 0) * 60000000000

deny contains lib.denial("Cooldown", sprintf(
	"last change %s was applied at %s; cooldown of %v minutes not over",
	[last.recommendationId, last.at, scope.settings.timing.cooldownMinutes],
)) if {
	last := input.history.lastApplied
	is_string(last.at)
	elapsed := lib.now_ns - time.parse_rfc3339_ns(last.at)
	elapsed < cooldown_ns
}
