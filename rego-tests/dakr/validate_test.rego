package dakr.validate_test

import data.fixtures as f

test_valid_now if not f.denies(f.at("2026-11-24T10:00:00+01:00"), "InvalidInput")

test_now_with_fraction if not f.denies(f.at("2026-11-24T10:00:00.123Z"), "InvalidInput")

test_bad_now if f.denies(f.at("2026-11-24 10:00"), "InvalidInput")

test_missing_now if f.denies(json.remove(f.rightsizing, ["/now"]), "InvalidInput")

test_unknown_kind if f.denies(f.set(f.rightsizing, "/recommendation/kind", "Pod"), "InvalidInput")

test_missing_recommendation if f.denies({"now": "2026-11-24T10:00:00Z"}, "InvalidInput")

test_unknown_workload_action if f.denies(f.spec("action", "Delete"), "InvalidInput")

test_unknown_nodegroup_action if f.denies(f.set(f.nodegroup, "/recommendation/spec/action", "Delete"), "InvalidInput")

test_bad_last_applied_time if f.denies(f.applied_at("last week"), "InvalidInput")

test_missing_target_name if f.denies(f.spec("targetRef", {"kind": "Deployment"}), "InvalidInput")

test_all_actions_accepted if {
	every a in ["Rightsizing", "LiveMigration"] {
		not f.denies(f.spec("action", a), "InvalidInput")
	}
	not f.denies(f.replica_scaling, "InvalidInput")
	not f.denies(f.set(f.nodegroup, "/recommendation/spec/action", "scale"), "InvalidInput")
}

test_cluster_not_an_object if f.rules(f.set(f.rightsizing, "/cluster", "facts")) == {"InvalidInput"}

test_no_cluster_facts if not f.denies(json.remove(f.rightsizing, ["/cluster"]), "InvalidInput")
