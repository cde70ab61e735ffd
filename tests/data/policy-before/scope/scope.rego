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

deny contains lib.denial("OutOfScope", sprintf("namespace %s is a system namespace", [lib.namespace])) if {
	lib.is_workload
	lib.namespace in system_namespaces
}

deny contains lib.denial("OutOfScope", sprintf("rule %s disables %s/%s", [matched_rule.name, lib.namespace, lib.name])) if {
	lib.is_workload
	object.get(matched_rule, "enabled", true) == false
}

# The default scope applies only when no rule matched the workload.
deny contains lib.denial("OutOfScope", msg) if {
	lib.is_workload
	not matched_rule
	namespace_included
	some msg in default_scope_violations
}

deny contains lib.denial("NotCovered", msg) if {
	lib.is_workload
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

namespace_included if lib.any_regex_match(data.config.scope.includeNamespaceRegex, lib.namespace)
