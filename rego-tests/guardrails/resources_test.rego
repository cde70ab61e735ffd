package dakr.guardrails_test

import data.fixtures as f

# The rightsizing sample: server 200m/128Mi -> 150m/96Mi, limits 400m/256Mi unchanged.

test_sample_passes_guardrails if count(data.dakr.guardrails.deny) == 0 with input as f.rightsizing

test_step_down_clamped if f.bounds(f.proposed("requests", "cpu", 0.05)).containers.server.requests.cpu == 0.1

test_step_down_clamped_warns if f.warned(f.proposed("requests", "cpu", 0.05), "clamped from 50m to 100m")

test_step_up_clamped if f.bounds(f.proposed("requests", "cpu", 0.39)).containers.server.requests.cpu == 0.3 with data.config.profiles.balanced.maxIncreasePercent as 50

test_step_up_beyond_limit_clamped if f.bounds(f.proposed("requests", "memory", f.mib(1024))).containers.server.requests.memory == f.mib(256)

test_within_step_not_clamped if f.bounds(f.rightsizing) == {}

test_absolute_min_cpu if f.bounds(f.proposed("requests", "cpu", 0.005)).containers.server.requests.cpu == 0.01 with data.config.profiles.balanced.maxDecreasePercent as 100

test_absolute_max_cpu if f.bounds(f.proposed("requests", "cpu", 0.35)).containers.server.requests.cpu == 0.3 with data.config.defaults.guardrails.maxCpuCores as 0.3

test_absolute_min_memory if f.bounds(f.proposed("requests", "memory", f.mib(8))).containers.server.requests.memory == f.mib(16) with data.config.profiles.balanced.maxDecreasePercent as 100

test_absolute_max_memory if f.bounds(f.proposed("requests", "memory", f.mib(200))).containers.server.requests.memory == f.mib(160) with data.config.defaults.guardrails.maxMemoryBytes as f.mib(160)

test_new_request_without_current if f.allows(f.current("requests", "cpu", null))

test_clamp_rounded_up_to_millicores if f.bounds(f.current("requests", "cpu", 0.2001)).containers.server.requests.cpu == 0.101 with data.fixtures.rightsizing as f.proposed("requests", "cpu", 0.05)

test_in_bounds_proposal_stands_unrounded if f.bounds(f.proposed("requests", "cpu", 0.1504)) == {}

test_request_above_new_limit if f.denies(f.proposed("limits", "cpu", 0.1), "RequestAboveLimit")

test_request_above_current_limit if f.denies(f.proposed("requests", "cpu", 0.45), "RequestAboveLimit") with data.config.profiles.balanced.maxIncreasePercent as 200

test_request_at_limit_ok if not f.denies(f.proposed("requests", "cpu", 0.4), "RequestAboveLimit")

test_limit_removal_denied if f.denies(f.proposed("limits", "cpu", null), "LimitRemoval")

test_limit_removal_allowed if not f.denies(f.proposed("limits", "cpu", null), "LimitRemoval") with data.config.defaults.guardrails.allowLimitRemoval as true

test_removing_absent_limit_ok if not f.denies(f.current("limits", "cpu", null), "LimitRemoval") with data.fixtures.rightsizing as f.proposed("limits", "cpu", null)

test_memory_limit_decrease_denied if f.denies(f.proposed("limits", "memory", f.mib(200)), "MemoryLimitDecrease")

test_memory_limit_decrease_allowed if not f.denies(f.proposed("limits", "memory", f.mib(200)), "MemoryLimitDecrease") with data.config.defaults.guardrails.allowMemoryLimitDecrease as true

test_memory_limit_increase_ok if not f.denies(f.proposed("limits", "memory", f.mib(300)), "MemoryLimitDecrease")

test_conservative_keeps_limits if f.denies(f.proposed("limits", "cpu", 0.5), "LimitChange") with data.config.defaults.profile as "conservative"

test_conservative_no_limit_removal if f.denies(f.proposed("limits", "cpu", null), "LimitChange") with data.config.defaults.profile as "conservative"

test_conservative_unchanged_limits_ok if not f.denies(f.rightsizing, "LimitChange") with data.config.defaults.profile as "conservative"

test_balanced_may_change_limits if not f.denies(f.proposed("limits", "cpu", 0.5), "LimitChange")

test_change_too_small if f.denies(f.set(f.proposed("requests", "cpu", 0.199), "/normalized/containers/server/proposed/requests/memory", f.mib(128)), "MinimumChange")

test_change_big_enough if not f.denies(f.rightsizing, "MinimumChange")

test_limit_change_counts if not f.denies(f.set(f.proposed("requests", "cpu", 0.2), "/normalized/containers/server/proposed/requests/memory", f.mib(128)), "MinimumChange") with data.fixtures.rightsizing as f.proposed("limits", "cpu", 0.5)

test_new_limit_counts_as_change if not f.denies(f.current("limits", "cpu", null), "MinimumChange") with data.fixtures.rightsizing as f.set(f.proposed("requests", "cpu", 0.2), "/normalized/containers/server/proposed/requests/memory", f.mib(128))

test_aggressive_allows_small_change if not f.denies(f.set(f.proposed("requests", "cpu", 0.195), "/normalized/containers/server/proposed/requests/memory", f.mib(128)), "MinimumChange") with data.config.defaults.profile as "aggressive"

test_no_resources if f.denies(f.set(f.rightsizing, "/normalized/containers", {}), "NoResources")

test_replica_scaling_needs_no_resources if not f.denies(f.replica_scaling, "NoResources")

test_clamped_step_counts_as_change if not f.denies(f.proposed("requests", "cpu", 0.05), "MinimumChange") with data.config.defaults.profile as "conservative" with data.fixtures.rightsizing as f.proposed("requests", "memory", f.mib(128))

untouched_memory := json.remove(f.rightsizing, [
	"/normalized/containers/server/proposed/requests/memory",
	"/normalized/containers/server/proposed/limits/memory",
])

test_untouched_resource_ignored if not f.denies(untouched_memory, "MinimumChange")

test_untouched_resource_not_clamped if f.bounds(untouched_memory) == {}

test_absent_request_keeps_current_for_limit_check if f.denies(json.remove(f.proposed("limits", "cpu", 0.1), ["/normalized/containers/server/proposed/requests/cpu"]), "RequestAboveLimit")

test_unknown_container if f.denies(f.set(f.rightsizing, "/normalized/containers/server/found", false), "UnknownContainer")

test_known_container if not f.denies(f.rightsizing, "UnknownContainer")

test_unknown_target_cannot_tell if not f.denies(f.set(f.set(f.rightsizing, "/normalized/containers/server/found", false), "/target", null), "UnknownContainer")

# Requests as they are now (200m / 128Mi): a proposal that changes nothing by itself.
unchanged := f.set(f.proposed("requests", "cpu", 0.2), "/normalized/containers/server/proposed/requests/memory", f.mib(128))

test_setting_a_request_is_significant if not f.denies(f.current("requests", "cpu", null), "MinimumChange") with data.fixtures.rightsizing as unchanged

test_removing_a_limit_is_significant if not f.denies(f.proposed("limits", "cpu", null), "MinimumChange") with data.fixtures.rightsizing as unchanged

test_unchanged_is_not_worth_it if f.denies(unchanged, "MinimumChange")

test_minimum_change_message if {
	some d in f.decision(f.set(unchanged, "/normalized/containers/server/proposed/requests/cpu", 0.199)).deny
	d.msg == "largest change is 0.5%, below the 5% worth a rollout"
}

test_minimum_change_message_limits if {
	inp := json.remove(f.proposed("limits", "cpu", 0.402), ["/normalized/containers/server/proposed/requests"])
	some d in f.decision(inp).deny
	d.msg == "largest change is 0.5%, below the 5% worth a rollout"
}

test_limit_removal_alone_is_a_change if not f.denies(json.remove(f.proposed("limits", "cpu", null), [
	"/normalized/containers/server/proposed/requests",
	"/normalized/containers/server/proposed/limits/memory",
]), "NoResources")

# A profile name no profile has: no per-step limit, only the absolute bounds.
test_unknown_profile_no_step_limit if f.bounds(f.proposed("requests", "cpu", 0.05)) == {} with data.config.defaults.profile as "none"

test_unknown_profile_absolute_bounds if f.bounds(f.proposed("requests", "cpu", 0.005)).containers.server.requests.cpu == 0.01 with data.config.defaults.profile as "none"

# A current request of 0: any other proposal is a 100 % move, with no per-step limit.
test_from_zero_is_significant if not f.denies(f.current("requests", "cpu", 0), "MinimumChange") with data.fixtures.rightsizing as f.proposed("requests", "memory", f.mib(128))

test_from_zero_not_step_clamped if f.bounds(f.current("requests", "cpu", 0)) == {}

test_two_containers_clamped if count(f.bounds(f.set(f.proposed("requests", "cpu", 0.01), "/normalized/containers/sidecar", {"found": true, "current": {"requests": {"cpu": 0.2}, "limits": {}}, "proposed": {"requests": {"cpu": 0.01}, "limits": {}}})).containers) == 2
