package dakr.timing_confidence_test

import data.fixtures as f

test_confident_enough if not f.denies(f.rightsizing, "MinimumConfidence")

test_at_minimum if not f.denies(f.spec("confidence", 0.7), "MinimumConfidence")

test_below_minimum if f.denies(f.spec("confidence", 0.69), "MinimumConfidence")

unsure := json.remove(f.rightsizing, ["/recommendation/spec/confidence"])

test_missing_confidence_is_not_below_minimum if not f.denies(unsure, "MinimumConfidence")

test_missing_confidence_allowed_by_default if f.allows(unsure)

test_missing_confidence_warns if f.warned(unsure, "no confidence given (source unknown)")

test_missing_confidence_names_source if f.warned(f.set(unsure, "/recommendation/spec/source", "krr"), "source krr")

test_missing_confidence_denied_when_set if f.rules(unsure) == {"NoConfidence"} with data.config.defaults.timing.withoutConfidence as "deny"

test_missing_confidence_denial_names_setting if {
	some d in f.decision(unsure).deny with data.config.defaults.timing.withoutConfidence as "deny"
	contains(d.msg, "timing.withoutConfidence")
}

test_confidence_given_no_warning if not f.warned(f.rightsizing, "no confidence")

test_zero_confidence_is_below_minimum if f.denies(f.spec("confidence", 0), "MinimumConfidence")

test_minimum_configurable if not f.denies(f.spec("confidence", 0.5), "MinimumConfidence") with data.config.defaults.timing.minConfidence as 0.5

test_nodegroup_has_no_confidence if not f.denies(f.nodegroup, "MinimumConfidence")
