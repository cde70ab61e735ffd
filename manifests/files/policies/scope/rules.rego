# Which scoped rule applies to the workload, and the effective settings it yields.
# Precedence: a rule that matches by name beats one matching by labels, which beats one
# matching by namespace; ties go to the higher priority, then to the rule listed first.
package dakr.scope

import data.dakr.lib

rules := object.get(data.config, "rules", [])

# How specific a rule's match is: the most specific key it uses.
specificity(m) := 3 if {
	m.names
} else := 2 if {
	m.labels
} else := 1 if {
	m.namespaces
} else := 1 if {
	m.namespaceRegex
} else := 0

rule_matches(r) if {
	m := object.get(r, "match", {})
	specificity(m) > 0
	match_names(m)
	match_labels(m)
	match_namespaces(m)
	match_namespace_regex(m)
}

match_names(m) if not m.names

match_names(m) if lib.any_regex_match(m.names, lib.name)

match_labels(m) if not m.labels

match_labels(m) if {
	every k, v in m.labels {
		lib.labels[k] == v
	}
}

match_namespaces(m) if not m.namespaces

match_namespaces(m) if lib.namespace in m.namespaces

match_namespace_regex(m) if not m.namespaceRegex

match_namespace_regex(m) if lib.any_regex_match(m.namespaceRegex, lib.namespace)

# Sortable keys of the matching rules: most specific, highest priority, first listed.
# (data.config.rules is `rules` wherever it has an entry.)
candidates contains [0 - specificity(r.match), 0 - object.get(r, "priority", 0), i] if {
	input.recommendation.kind == "WorkloadRecommendation"
	some i, r in data.config.rules
	rule_matches(r)
}

# The index of the rule that applies in data.config.rules, and the rule.
matched_index := sort(candidates)[0][2] if count(candidates) > 0

matched_rule := data.config.rules[matched_index]

# With no matching rule (no rule at all, as shipped) the defaults as they are: merging {}
# over them changes nothing.
settings := data.config.defaults if {
	data.config.rules == []
} else := rule_settings(matched_rule) if {
	matched_rule
} else := data.config.defaults

# The settings of a workload that rule `r` matches.
rule_settings(r) := object.union(data.config.defaults, object.get(r, "settings", {}))

# What the configuration alone implies for the settings in use, computed once per policy
# load: the embedded engine evaluates data.dakr.derived (dakr/derived.rego) when it loads
# the set and places the result at data.dakr_derived, one view for the defaults and one
# per rule. Undefined without it (the Rego test runner, an OPA sidecar): each value is
# then computed per decision, by the same functions, so the answers are the same.
view := data.dakr_derived.default if {
	data.config.rules == []
} else := data.dakr_derived.rules[matched_index] if {
	matched_index
} else := data.dakr_derived.default if {
	not matched_rule
}

guardrails := v if {
	v := view.guardrails
} else := guardrails_of(settings)

# The guardrails of settings `s`: its profile's, overridden by its own.
guardrails_of(s) := object.union(object.get(data.config.profiles, s.profile, {}), s.guardrails)
