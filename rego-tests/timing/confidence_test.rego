package dakr.timing_confidence_test

import data.fixtures as f

test_confident_enough if not f.denies(f.rightsizing, "MinimumConfidence")

test_at_minimum if not f.denies(f.spec("confidence", 0.7), "MinimumConfidence")

test_below_minimum if f.denies(f.spec("confidence", 0.69), "MinimumConfidence")

test_missing_confidence_denied if f.denies(json.remove(f.rightsizing, ["/recommendation/spec/confidence"]), "MinimumConfidence")

test_minimum_configurable if not f.denies(f.spec("confidence", 0.5), "MinimumConfidence") with data.config.defaults.timing.minConfidence as 0.5

test_nodegroup_has_no_confidence if not f.denies(f.nodegroup, "MinimumConfidence")
