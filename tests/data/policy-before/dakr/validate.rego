# Input sanity: a decision about an input the policies cannot read is a deny, never a
# silent allow because every rule happened to be undefined.
package dakr.validate

import data.dakr.lib

kinds := {"WorkloadRecommendation", "NodeGroupRecommendation"}

workload_actions := {"Rightsizing", "ReplicaScaling", "LiveMigration"}

nodegroup_actions := {"consolidate", "scale"}

rfc3339 := `^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`

deny contains lib.denial("InvalidInput", sprintf("recommendation kind %v is not one of %v", [lib.kind, kinds])) if {
	not lib.kind in kinds
}

deny contains lib.denial("InvalidInput", sprintf("action %v is not a workload action", [lib.action])) if {
	lib.is_workload
	not lib.action in workload_actions
}

deny contains lib.denial("InvalidInput", sprintf("action %v is not a node-group action", [lib.action])) if {
	lib.is_nodegroup
	not lib.action in nodegroup_actions
}

deny contains lib.denial("InvalidInput", "input.now must be an RFC 3339 time") if not valid_now

valid_now if regex.match(rfc3339, input.now)

deny contains lib.denial("InvalidInput", "history.lastApplied.at must be an RFC 3339 time") if {
	at := input.history.lastApplied.at
	not regex.match(rfc3339, at)
}

deny contains lib.denial("InvalidInput", "recommendation has no targetRef.name") if {
	lib.is_workload
	lib.name == ""
}
