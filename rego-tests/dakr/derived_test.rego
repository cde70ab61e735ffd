package dakr.derived_test

import data.dakr
import data.dakr.guardrails
import data.dakr.scope
import data.fixtures as f

ns_rule := {"name": "ns", "match": {"namespaces": ["default"]}, "settings": {"profile": "conservative"}}

other_rule := {"name": "other", "match": {"namespaces": ["elsewhere"]}, "settings": {"profile": "aggressive"}}

marked := {"default": {"guardrails": {"mark": "default"}, "per_resource": "default"}, "rules": [{"guardrails": {"mark": "rule"}, "per_resource": "rule"}]}

test_derived_default_is_what_a_decision_computes if dakr.derived.default == {"guardrails": scope.guardrails, "per_resource": guardrails.per_resource} with input as f.rightsizing

test_derived_has_a_view_per_rule if dakr.derived.rules[0] == {"guardrails": scope.guardrails, "per_resource": guardrails.per_resource} with input as f.rightsizing with data.config.rules as [ns_rule]

test_derived_rule_view_uses_its_profile if dakr.derived.rules[0].guardrails.maxDecreasePercent == 10 with data.config.rules as [ns_rule]

test_derived_reads_no_input if dakr.derived.default.per_resource.cpu == [0.01, 16, 1000, 0.5, 2]

test_derived_view_leaves_out_what_is_undefined if dakr.derived.default == {} with data.config.defaults as {"profile": "balanced"}

test_without_derived_there_is_no_view if not scope.view with input as f.rightsizing

test_view_read_when_present if guardrails.per_resource == "default" with input as f.rightsizing with data.dakr_derived as marked

test_guardrails_read_from_view if scope.guardrails == {"mark": "default"} with input as f.rightsizing with data.dakr_derived as marked

test_view_of_the_matched_rule if guardrails.g == {"mark": "rule"} with input as f.rightsizing with data.config.rules as [ns_rule] with data.dakr_derived as marked

test_view_of_defaults_when_no_rule_matches if guardrails.g == {"mark": "default"} with input as f.rightsizing with data.config.rules as [other_rule] with data.dakr_derived as {"default": {"guardrails": {"mark": "default"}}, "rules": [{}]}

test_value_missing_from_view_is_computed if guardrails.per_resource.cpu == [0.01, 16, 1000, 0.5, 2] with input as f.rightsizing with data.dakr_derived as {"default": {}}

test_plain_scope_as_shipped if dakr.derived.plain_scope == true

test_no_plain_scope_with_rules if dakr.derived.plain_scope == false with data.config.rules as [ns_rule]

test_no_plain_scope_with_exclusions if dakr.derived.plain_scope == false with data.config.scope.excludeNamespaces as ["x"]

test_plain_scope_short_body if scope.in_scope with input as f.rightsizing with data.config.scope.includeNamespaces as ["default"] with data.dakr_derived as {"plain_scope": true}

test_plain_scope_short_body_keeps_system_namespaces_out if not scope.in_scope with input as f.in_namespace("kube-system") with data.dakr_derived as {"plain_scope": true}
