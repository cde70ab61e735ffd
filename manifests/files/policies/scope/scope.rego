# Scope: which workloads the reconciler may touch at all. Coverage is opt-in: a workload is
# covered only when a rule under config.rules matches it or the default scope includes its
# namespace by name or pattern; an uncovered one is denied NotCovered, with the setting
# that would cover it. Excluded is a deny with rule OutOfScope; the system namespaces and
# the operator's own namespace are never in scope, whatever the rules say.
package dakr.scope

import data.dakr.lib

system_namespaces contains ns if some ns in data.config.systemNamespaces

system_namespaces contains ns if {
	ns := lib.cluster.operatorNamespace
	is_string(ns)
}

deny contains {"rule": "OutOfScope", "msg": sprintf("namespace %s is a system namespace", [lib.namespace])} if {
	input.recommendation.kind == "WorkloadRecommendation"
	lib.namespace in system_namespaces
}

deny contains {"rule": "OutOfScope", "msg": sprintf("rule %s disables %s/%s", [matched_rule.name, lib.namespace, lib.name])} if {
	input.recommendation.kind == "WorkloadRecommendation"
	object.get(matched_rule, "enabled", true) == false
}

# The default scope applies only when no rule matched the workload.
deny contains {"rule": "OutOfScope", "msg": msg} if {
	input.recommendation.kind == "WorkloadRecommendation"
	not matched_rule
	namespace_included
	some msg in default_scope_violations
}

deny contains {"rule": "NotCovered", "msg": msg} if {
	input.recommendation.kind == "WorkloadRecommendation"
	not lib.namespace in system_namespaces
	not matched_rule
	not namespace_included
	msg := sprintf(
		"no scope rule covers %s/%s: add %q to config.scope.includeNamespaces in the policy data (chart value policies.data.config.scope.includeNamespaces), or a rule under config.rules that matches it",
		[lib.namespace, lib.name, lib.namespace],
	)
}

default_scope_violations contains sprintf("namespace %s is excluded", [lib.namespace]) if {
	lib.namespace in data.config.scope.excludeNamespaces
}

default_scope_violations contains sprintf("namespace %s is excluded by pattern", [lib.namespace]) if {
	lib.any_regex_match(data.config.scope.excludeNamespaceRegex, lib.namespace)
}

default_scope_violations contains sprintf("kind %s is not in scope", [lib.target_kind]) if {
	not lib.target_kind in data.config.scope.kinds
}

default_scope_violations contains sprintf("label %s=%s excludes the workload", [k, v]) if {
	some k, v in data.config.scope.excludeLabels
	lib.labels[k] == v
}

default_scope_violations contains sprintf("name %s is excluded by pattern", [lib.name]) if {
	lib.any_regex_match(data.config.scope.excludeNamePatterns, lib.name)
}

namespace_included if lib.namespace in data.config.scope.includeNamespaces

namespace_included if {
	some p in data.config.scope.includeNamespaceRegex
	regex.match(p, lib.namespace)
}

# The common case in one body: a node group (the rules above concern workloads), or a
# workload that no scoped rule matches, outside the system namespaces, covered by the
# default scope and excluded by none of its lists. When it holds no rule above can fire,
# and the decision (dakr/decision.rego) does not evaluate them.
in_scope := true if {
	input.recommendation.kind == "NodeGroupRecommendation"
} else := true if {
	# The same, with the four checks below made once per policy load (dakr/derived.rego):
	# the rule index skips this body without entering it unless the flag is true.
	data.dakr_derived.plain_scope == true
	ns := lib.namespace
	not ns in data.config.systemNamespaces
	ns != input.cluster.operatorNamespace
	namespace_included
	input.recommendation.spec.targetRef.kind in data.config.scope.kinds
	not excluded_label
} else := true if {
	# No scoped rule and no exclusion list (as shipped): the kinds and labels remain.
	data.config.rules == []
	data.config.scope.excludeNamespaces == []
	data.config.scope.excludeNamespaceRegex == []
	data.config.scope.excludeNamePatterns == []
	ns := lib.namespace
	not ns in data.config.systemNamespaces
	ns != input.cluster.operatorNamespace
	namespace_included
	input.recommendation.spec.targetRef.kind in data.config.scope.kinds
	not excluded_label
} else := true if {
	not matched_rule
	ns := lib.namespace
	not ns in data.config.systemNamespaces
	not ns == object.get(input, ["cluster", "operatorNamespace"], null)
	namespace_included
	not ns in data.config.scope.excludeNamespaces
	not lib.any_regex_match(data.config.scope.excludeNamespaceRegex, ns)
	input.recommendation.spec.targetRef.kind in data.config.scope.kinds
	not excluded_label
	name := input.recommendation.spec.targetRef.name
	not lib.any_regex_match(data.config.scope.excludeNamePatterns, name)
}

excluded_label if {
	some k, v in data.config.scope.excludeLabels
	input.target.metadata.labels[k] == v
}
