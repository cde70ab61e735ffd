# Input sanity: a decision about an input the policies cannot read is a deny, never a
# silent allow because every rule happened to be undefined.
package dakr.validate

import data.dakr.lib

kinds := {"WorkloadRecommendation", "NodeGroupRecommendation"}

workload_actions := {"Rightsizing", "ReplicaScaling", "LiveMigration"}

nodegroup_actions := {"consolidate", "scale"}

rfc3339 := `^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`

deny contains {"rule": "InvalidInput", "msg": sprintf("recommendation kind %v is not one of %v", [lib.kind, kinds])} if {
	not lib.kind in kinds
}

deny contains {"rule": "InvalidInput", "msg": sprintf("action %v is not a workload action", [lib.action])} if {
	input.recommendation.kind == "WorkloadRecommendation"
	not lib.action in workload_actions
}

deny contains {"rule": "InvalidInput", "msg": sprintf("action %v is not a node-group action", [lib.action])} if {
	input.recommendation.kind == "NodeGroupRecommendation"
	not lib.action in nodegroup_actions
}

deny contains {"rule": "InvalidInput", "msg": "input.now must be an RFC 3339 time"} if not valid_now

valid_now if regex.match(rfc3339, input.now)

deny contains {"rule": "InvalidInput", "msg": "history.lastApplied.at must be an RFC 3339 time"} if {
	at := input.history.lastApplied.at
	not regex.match(rfc3339, at)
}

# The cluster facts are read field by field: facts that are not an object would read as
# none at all.
deny contains {"rule": "InvalidInput", "msg": "input.cluster must be an object"} if not is_object(lib.cluster)

deny contains {"rule": "InvalidInput", "msg": "recommendation has no targetRef.name"} if {
	input.recommendation.kind == "WorkloadRecommendation"
	lib.name == ""
}

# The common case in one body per kind: when it holds, no rule above can fire, and the
# decision (dakr/decision.rego) does not evaluate them. A time absent from the history is
# checked as a valid one. (The constants above, written out: a reference to a rule costs
# steps, a literal none.)
well_formed := true if {
	input.recommendation.kind == "WorkloadRecommendation"
	input.recommendation.spec.action in {"Rightsizing", "ReplicaScaling", "LiveMigration"}
	input.recommendation.spec.targetRef.name != ""
	is_object(input.cluster)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, input.now)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, object.get(input, ["history", "lastApplied", "at"], "1970-01-01T00:00:00Z"))
} else := true if {
	input.recommendation.kind == "NodeGroupRecommendation"
	input.recommendation.spec.action in {"consolidate", "scale"}
	is_object(input.cluster)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, input.now)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, object.get(input, ["history", "lastApplied", "at"], "1970-01-01T00:00:00Z"))
}
