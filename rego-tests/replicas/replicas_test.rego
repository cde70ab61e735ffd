package dakr.replicas_test

import data.fixtures as f

# replica_scaling: frontend 2 -> 3 replicas. hpa_scaling: HPA checkout min 3 max 8, proposed 2..6.

test_scale_up_allowed if f.allows(f.replica_scaling)

test_below_minimum if f.denies(f.replicas(0), "MinReplicas")

test_minimum_configurable if f.denies(f.replicas(1), "MinReplicas") with data.config.defaults.replicas.minReplicas as 2

test_at_minimum if not f.denies(f.replicas(1), "MinReplicas")

test_hpa_owns_replicas if f.denies(f.cluster("hpa", {"metadata": {"name": "frontend"}, "spec": {"minReplicas": 1}}), "HPAOwnsReplicas") with data.fixtures.rightsizing as f.replica_scaling

test_step_up_clamped if f.bounds(f.replicas(12)) == {"replicas": 7}

test_step_up_clamp_warns if f.warned(f.replicas(12), "replicas clamped from 12 to 7")

test_step_down_clamped if f.bounds(f.set(f.replicas(1), "/normalized/replicas/current", 10)) == {"replicas": 5}

test_step_down_clamp_respects_minimum if f.bounds(f.set(f.replicas(2), "/normalized/replicas/current", 10)) == {"replicas": 5} with data.config.defaults.replicas.minReplicas as 2

test_step_within_limit if f.bounds(f.replicas(7)) == {}

test_current_from_target if {
	inp := json.remove(f.replicas(12), ["/normalized/replicas"])
	f.bounds(inp) == {"replicas": 7}
}

test_hpa_bounds_allowed if f.allows(f.hpa_scaling)

test_hpa_min_below_minimum if f.denies(f.hpa_bounds(1, 6), "MinReplicas") with data.config.defaults.replicas.minReplicas as 2

test_hpa_min_above_max if f.denies(f.hpa_bounds(7, 6), "InvalidHPA")

test_hpa_bounds_without_hpa if f.denies(f.set(f.hpa_scaling, "/cluster/hpa", null), "NoHPA")

test_nothing_to_scale if f.denies(json.remove(f.replica_scaling, ["/recommendation/spec/replicas", "/normalized/replicas"]), "NoReplicaChange")

test_hpa_min_step_up_clamped if f.bounds(f.hpa_bounds(10, 12)) == {"hpa": {"minReplicas": 8}}

test_hpa_min_step_down_clamped if f.bounds(f.set(f.hpa_bounds(1, 12), "/cluster/hpa/spec/minReplicas", 9)) == {"hpa": {"minReplicas": 4}}

test_hpa_min_clamp_warns if f.warned(f.hpa_bounds(10, 12), "HPA minReplicas clamped from 10 to 8")
