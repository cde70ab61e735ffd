# Cooldown: no new change to a workload until cooldownMinutes after the last one applied,
# so the effect of a change is observed before the next one is made.
package dakr.timing

import data.dakr.lib
import data.dakr.scope

cooldown_ns := object.get(scope.settings, ["timing", "cooldownMinutes"], 0) * 60000000000

deny contains {"rule": "Cooldown", "msg": sprintf(
	"last change %s was applied at %s; cooldown of %v minutes not over",
	[last.recommendationId, last.at, scope.settings.timing.cooldownMinutes],
)} if {
	at := input.history.lastApplied.at
	is_string(at)
	last := input.history.lastApplied
	elapsed := lib.now_ns - time.parse_rfc3339_ns(at)
	elapsed < cooldown_ns
}
