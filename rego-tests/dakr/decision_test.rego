package dakr.decision_test

import data.fixtures as f

test_sample_is_allowed if f.allows(f.rightsizing)

test_document_shape if {
	d := f.decision(f.rightsizing)
	d == {"allow": true, "mode": "gitops", "deny": [], "warnings": []}
}

test_deny_entries_are_rule_and_msg if {
	some d in f.decision(f.spec("confidence", 0.1)).deny
	object.keys(d) == {"rule", "msg"}
}

test_any_deny_means_not_allowed if not f.allows(f.spec("confidence", 0.1))

test_denies_are_sorted if {
	d := f.decision(f.set(f.spec("confidence", 0.1), "/history/lastApplied", {"recommendationId": "r", "at": "2026-11-24T09:59:00Z"}))
	[x.rule | some x in d.deny] == ["Cooldown", "MinimumConfidence"]
}

test_bounds_only_when_clamped if not "bounds" in object.keys(f.decision(f.rightsizing))

test_bounds_present_when_clamped if f.bounds(f.proposed("requests", "cpu", 0.01)) != {}

test_out_of_scope_hides_other_reasons if f.rules(f.set(f.in_namespace("kube-system"), "/recommendation/spec/confidence", 0.1)) == {"OutOfScope"}

test_invalid_input_hides_other_reasons if f.rules(f.set(f.at("noon"), "/recommendation/spec/confidence", 0.1)) == {"InvalidInput"}

test_no_bounds_when_gated if not "bounds" in object.keys(f.decision(f.set(f.in_namespace("kube-system"), "/normalized/containers/server/proposed/requests/cpu", 0.01)))

test_batch_decides_each_item if {
	ds := data.dakr.batch with input as {"items": [f.rightsizing, f.in_namespace("kube-system"), f.in_namespace("shop")]}
		with data.config.scope.includeNamespaces as ["default"]
	[d.allow | some d in ds] == [true, false, false]
	[r | some d in ds; some r in d.deny; r.rule == "NotCovered"] != []
}

test_warnings_are_strings if {
	ws := f.decision(f.proposed("requests", "cpu", 0.01)).warnings
	count(ws) > 0
	every w in ws {
		is_string(w)
	}
}

# A Rightsizing that also carries replica fields is still judged by the replica rules.
test_rightsizing_with_hpa_bounds if f.denies(f.spec("hpa", {"minReplicas": 2, "maxReplicas": 4}), "NoHPA")

test_rightsizing_with_replicas if f.denies(f.spec("replicas", 0), "MinReplicas")

test_rightsizing_with_normalized_replicas if f.bounds(f.set(f.rightsizing, "/normalized/replicas", {"current": 2, "proposed": 12})).replicas == 7

# A LiveMigration carries its execution; a gated one neither bounds nor execution.
test_live_migration_bounds_and_execution if object.keys(f.decision(f.set(f.live_migration, "/normalized/containers/server/proposed/requests/cpu", 0.01))) == {"allow", "mode", "deny", "warnings", "bounds", "execution"}

test_gated_live_migration_bare if object.keys(f.decision(f.set(f.live_migration, "/recommendation/metadata/namespace", "kube-system"))) == {"allow", "mode", "deny", "warnings"}

# A gated decision still carries every area's warnings.
test_gated_decision_warns if f.warned(f.set(f.in_namespace("kube-system"), "/normalized/containers/server/proposed/requests/cpu", 0.01), "clamped")
