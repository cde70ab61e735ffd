# Replica scaling. A workload whose scaling an HPA owns is never scaled through `replicas`
# (the HPA would fight the change): the recommendation must move the HPA's min/max. No
# workload goes below minReplicas, and one step moves at most maxReplicaChange replicas;
# a larger step is clamped into `bounds` with a warning.
#
# Most recommendations ask nothing of replicas: each rule starts with the input it needs
# (input.normalized.replicas, spec.replicas, spec.hpa), so it fails in a step or two when
# that is absent. input.cluster.hpa is `hpa` wherever that is an object.
package dakr.replicas

import data.dakr.lib
import data.dakr.scope

p := scope.settings.replicas

hpa := object.get(lib.cluster, "hpa", null)

hpa_owned if is_object(hpa)

proposed := v if {
	v := input.normalized.replicas.proposed
	is_number(v)
} else := v if {
	v := input.recommendation.spec.replicas
	is_number(v)
}

current := v if {
	v := input.normalized.replicas.current
	is_number(v)
} else := v if {
	v := input.target.spec.replicas
	is_number(v)
}

deny contains {"rule": "HPAOwnsReplicas", "msg": sprintf(
	"HPA %s scales this workload; change its minReplicas/maxReplicas instead of replicas",
	[object.get(hpa, ["metadata", "name"], "")],
)} if {
	is_object(input.cluster.hpa)
	proposed
}

deny contains {"rule": "MinReplicas", "msg": sprintf("%v replicas is below the minimum %v", [v, p.minReplicas])} if {
	v := proposed
	v < p.minReplicas
}

deny contains {"rule": "MinReplicas", "msg": sprintf("HPA minReplicas %v is below the minimum %v", [m, p.minReplicas])} if {
	m := input.recommendation.spec.hpa.minReplicas
	m < p.minReplicas
}

deny contains {"rule": "InvalidHPA", "msg": sprintf("HPA minReplicas %v exceeds maxReplicas %v", [m, n])} if {
	m := input.recommendation.spec.hpa.minReplicas
	n := input.recommendation.spec.hpa.maxReplicas
	m > n
}

deny contains {"rule": "NoHPA", "msg": "the recommendation changes HPA bounds but no HPA targets the workload"} if {
	input.recommendation.spec.hpa
	not hpa_owned
}

deny contains {"rule": "NoReplicaChange", "msg": "a ReplicaScaling recommendation sets neither replicas nor hpa"} if {
	input.recommendation.spec.action == "ReplicaScaling"
	not proposed
	not input.recommendation.spec.hpa
}

step := p.maxReplicaChange

bounded_replicas := current + step if {
	v := proposed
	not hpa_owned
	v > current + step
} else := max([current - step, p.minReplicas]) if {
	v := proposed
	not hpa_owned
	v < current - step
}

warnings contains sprintf(
	"replicas clamped from %v to %v: at most %v replicas per step", [proposed, bounded_replicas, step],
) if bounded_replicas

hpa_current_min := hpa.spec.minReplicas

bounded_hpa_min := hpa_current_min + step if {
	m := input.recommendation.spec.hpa.minReplicas
	m > hpa_current_min + step
} else := max([hpa_current_min - step, p.minReplicas]) if {
	m := input.recommendation.spec.hpa.minReplicas
	m < hpa_current_min - step
}

bounds := {"replicas": bounded_replicas} if {
	bounded_replicas
} else := {"hpa": {"minReplicas": bounded_hpa_min}} if {
	bounded_hpa_min
} else := {}

warnings contains sprintf(
	"HPA minReplicas clamped from %v to %v: at most %v replicas per step",
	[input.recommendation.spec.hpa.minReplicas, bounded_hpa_min, step],
) if bounded_hpa_min
