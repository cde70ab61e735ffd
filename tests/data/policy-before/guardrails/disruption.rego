# Disruption: a resource change rolls the workload's pods. A PodDisruptionBudget that
# allows no disruption right now does not make the change unsafe, but the rollout will
# wait on it, which a reviewer should know.
package dakr.guardrails

import data.dakr.lib

warnings contains sprintf(
	"PodDisruptionBudget %s allows no disruption now: the rollout will wait for it",
	[object.get(pdb, ["metadata", "name"], "?")],
) if {
	resizes
	some pdb in object.get(lib.cluster, "pdbs", [])
	object.get(pdb, ["status", "disruptionsAllowed"], 1) == 0
}
