package dakr.scope_test_rules

import data.dakr.scope
import data.fixtures as f

ns_rule := {"name": "ns", "match": {"namespaces": ["default"]}, "settings": {"profile": "conservative"}}

label_rule := {"name": "label", "match": {"labels": {"app": "cartservice"}}, "settings": {"profile": "aggressive"}}

name_rule := {"name": "name", "match": {"names": ["^cart"]}, "settings": {"approval": "audit"}}

regex_rule := {"name": "regex", "match": {"namespaceRegex": ["^def"]}, "settings": {"approval": "review"}}

off_rule := {"name": "off", "match": {"namespaces": ["default"]}, "enabled": false}

winner(rules) := w if {
	w := scope.matched_rule.name with data.config.rules as rules with input as f.rightsizing
}

test_no_rule_no_match if not scope.matched_rule with input as f.rightsizing with data.config.rules as []

test_shipped_data_has_no_rules if count(scope.rules) == 0

test_defaults_without_match if scope.settings.profile == "balanced" with input as f.rightsizing

test_namespace_rule_applies if winner([ns_rule]) == "ns"

test_namespace_regex_rule_applies if winner([regex_rule]) == "regex"

test_label_beats_namespace if winner([ns_rule, label_rule]) == "label"

test_name_beats_label if winner([label_rule, name_rule, ns_rule]) == "name"

test_priority_breaks_ties if winner([ns_rule, object.union(regex_rule, {"priority": 5})]) == "regex"

test_first_listed_breaks_equal_priority if winner([regex_rule, ns_rule]) == "regex"

test_all_match_keys_must_match if not scope.matched_rule with input as f.rightsizing with data.config.rules as [{"name": "x", "match": {"namespaces": ["default"], "labels": {"app": "other"}}}]

test_rule_without_match_keys_never_matches if not scope.matched_rule with input as f.rightsizing with data.config.rules as [{"name": "x", "match": {}}]

test_name_rule_misses if not scope.matched_rule with input as f.named("frontend") with data.config.rules as [name_rule]

test_settings_merge_keeps_defaults if {
	s := scope.settings with input as f.rightsizing with data.config.rules as [ns_rule]
	s.profile == "conservative"
	s.approval == "auto"
}

test_profile_sets_guardrails if scope.guardrails.maxDecreasePercent == 10 with input as f.rightsizing with data.config.rules as [ns_rule]

test_rule_guardrails_override_profile if {
	r := {"name": "g", "match": {"names": ["cart"]}, "settings": {"guardrails": {"maxDecreasePercent": 33}}}
	scope.guardrails.maxDecreasePercent == 33 with input as f.rightsizing with data.config.rules as [r]
}

test_disabled_rule_out_of_scope if f.denies(f.rightsizing, "OutOfScope") with data.config.rules as [off_rule]

test_rule_overrides_default_exclusion if not f.denies(f.rightsizing, "OutOfScope") with data.config.scope.excludeNamespaces as ["default"] with data.config.rules as [ns_rule]

test_enabled_name_rule_beats_disabled_namespace_rule if not f.denies(f.rightsizing, "OutOfScope") with data.config.rules as [off_rule, name_rule]
