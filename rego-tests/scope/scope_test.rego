package dakr.scope_test

import data.fixtures as f

all_in := [".*"]

ns_rule := [{"name": "ns", "match": {"namespaces": ["default"]}, "settings": {}}]

# -- coverage is opt-in --------------------------------------------------------

test_shipped_data_covers_nothing if f.shipped_rules(f.rightsizing) == {"NotCovered"}

test_not_covered_names_the_setting if {
	some d in f.shipped(f.rightsizing).deny
	d.rule == "NotCovered"
	contains(d.msg, "default/cartservice")
	contains(d.msg, "config.scope.includeNamespaces")
}

test_not_covered_never_allows if not f.shipped(f.rightsizing).allow

test_include_list_covers if f.shipped_rules(f.rightsizing) == set() with data.config.scope.includeNamespaces as ["default"]

test_include_list_misses if f.shipped_rules(f.rightsizing) == {"NotCovered"} with data.config.scope.includeNamespaces as ["shop"]

test_include_regex_covers if f.shipped_rules(f.in_namespace("team-a")) == set() with data.config.scope.includeNamespaceRegex as ["^team-"]

test_include_regex_misses if f.shipped_rules(f.rightsizing) == {"NotCovered"} with data.config.scope.includeNamespaceRegex as ["^team-"]

test_matching_rule_covers if f.shipped_rules(f.rightsizing) == set() with data.config.rules as ns_rule

test_label_rule_covers if f.shipped_rules(f.rightsizing) == set() with data.config.rules as [{"name": "l", "match": {"labels": {"app": "cartservice"}}}]

test_other_rule_does_not_cover if f.shipped_rules(f.rightsizing) == {"NotCovered"} with data.config.rules as [{"name": "x", "match": {"namespaces": ["shop"]}}]

test_nodegroup_not_scoped_by_namespace if not "NotCovered" in f.shipped_rules(f.nodegroup)

# -- never in scope, whatever covers it ----------------------------------------

test_kube_system_out if f.shipped_rules(f.in_namespace("kube-system")) == {"OutOfScope"} with data.config.scope.includeNamespaceRegex as all_in

test_kube_system_uncovered_is_out_not_uncovered if f.shipped_rules(f.in_namespace("kube-system")) == {"OutOfScope"}

test_operator_namespace_out if f.denies(f.in_namespace("dakr-operator"), "OutOfScope")

test_other_operator_namespace if f.denies(f.cluster("operatorNamespace", "ops"), "OutOfScope") with data.fixtures.rightsizing as f.in_namespace("ops")

test_system_namespace_beats_rules if f.denies(f.in_namespace("kube-system"), "OutOfScope") with data.config.rules as [{"name": "all", "match": {"namespaceRegex": [".*"]}, "settings": {}}]

test_disabled_rule_excludes if f.shipped_rules(f.rightsizing) == {"OutOfScope"} with data.config.rules as [{"name": "off", "match": {"namespaces": ["default"]}, "enabled": false}]

# -- exclusions of the default scope, on a covered namespace -------------------

test_default_namespace_in_scope if not f.denies(f.rightsizing, "OutOfScope")

test_excluded_namespace if f.denies(f.rightsizing, "OutOfScope") with data.config.scope.excludeNamespaces as ["default"]

test_excluded_namespace_regex if f.denies(f.in_namespace("team-a"), "OutOfScope") with data.config.scope.excludeNamespaceRegex as ["^team-"]

test_kind_out if f.denies(f.of_kind("Job"), "OutOfScope")

test_kinds_in if {
	every k in ["Deployment", "StatefulSet", "DaemonSet"] {
		not f.denies(f.of_kind(k), "OutOfScope")
	}
}

test_excluded_label if f.denies(f.labelled("dakr.devzero.io/exclude", "true"), "OutOfScope")

test_excluded_label_other_value if not f.denies(f.labelled("dakr.devzero.io/exclude", "false"), "OutOfScope")

test_excluded_name_pattern if f.denies(f.named("redis-cart"), "OutOfScope") with data.config.scope.excludeNamePatterns as ["^redis-"]

test_name_pattern_misses if not f.denies(f.rightsizing, "OutOfScope") with data.config.scope.excludeNamePatterns as ["^redis-"]

test_nodegroup_not_out_of_scope if not f.denies(f.nodegroup, "OutOfScope")
