package dakr.lib_test

import data.dakr.lib
import data.fixtures as f

test_pct_change_decrease if lib.pct_change(200, 150) == 25

test_pct_change_increase if lib.pct_change(100, 150) == 50

test_pct_change_from_zero if lib.pct_change(0, 5) == 100

test_pct_change_zero_to_zero if lib.pct_change(0, 0) == 0

test_fmt_cpu if lib.fmt_res("cpu", 0.25) == "250m"

test_fmt_memory if lib.fmt_res("memory", 134217728) == "128Mi"

test_namespace_from_recommendation if lib.namespace == "default" with input as f.rightsizing

test_namespace_from_target if {
	inp := f.set(json.remove(f.rightsizing, ["/recommendation/metadata/namespace"]), "/target/metadata/namespace", "shop")
	lib.namespace == "shop" with input as inp
}

test_namespace_unknown if lib.namespace == "" with input as {"recommendation": {}}

test_regex_any if lib.any_regex_match(["^a", "^b"], "bee")

test_regex_none if not lib.any_regex_match(["^a"], "bee")

test_workload_kind if lib.is_workload with input as f.rightsizing

test_nodegroup_kind if lib.is_nodegroup with input as f.nodegroup

test_containers_default if lib.containers == {} with input as f.nodegroup

test_denial_is_rule_and_msg if lib.denial("R", "m") == {"rule": "R", "msg": "m"}
