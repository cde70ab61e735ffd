package dakr.scope_test

import data.fixtures as f

test_default_namespace_in_scope if not f.denies(f.rightsizing, "OutOfScope")

test_kube_system_out if f.denies(f.in_namespace("kube-system"), "OutOfScope")

test_operator_namespace_out if f.denies(f.in_namespace("dakr-operator"), "OutOfScope")

test_other_operator_namespace if f.denies(f.cluster("operatorNamespace", "ops"), "OutOfScope") with data.fixtures.rightsizing as f.in_namespace("ops")

test_system_namespace_beats_rules if f.denies(f.in_namespace("kube-system"), "OutOfScope") with data.config.rules as [{"name": "all", "match": {"namespaceRegex": [".*"]}, "settings": {}}]

test_excluded_namespace if f.denies(f.rightsizing, "OutOfScope") with data.config.scope.excludeNamespaces as ["default"]

test_excluded_namespace_regex if f.denies(f.in_namespace("team-a"), "OutOfScope") with data.config.scope.excludeNamespaceRegex as ["^team-"]

test_include_list_misses if f.denies(f.rightsizing, "OutOfScope") with data.config.scope.includeNamespaces as ["shop"]

test_include_list_hits if not f.denies(f.in_namespace("shop"), "OutOfScope") with data.config.scope.includeNamespaces as ["shop"]

test_include_regex_hits if not f.denies(f.in_namespace("team-a"), "OutOfScope") with data.config.scope.includeNamespaceRegex as ["^team-"]

test_include_regex_misses if f.denies(f.rightsizing, "OutOfScope") with data.config.scope.includeNamespaceRegex as ["^team-"]

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

test_nodegroup_not_scoped_by_namespace if not f.denies(f.nodegroup, "OutOfScope")
