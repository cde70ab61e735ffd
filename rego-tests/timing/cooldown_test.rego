package dakr.timing_cooldown_test

import data.fixtures as f

test_never_applied if not f.denies(f.rightsizing, "Cooldown")

test_applied_recently if f.denies(f.applied_at("2026-11-24T09:30:00Z"), "Cooldown")

test_applied_long_ago if not f.denies(f.applied_at("2026-11-24T08:59:59Z"), "Cooldown")

test_cooldown_boundary_is_over if not f.denies(f.applied_at("2026-11-24T09:00:00Z"), "Cooldown")

test_cooldown_configurable if not f.denies(f.applied_at("2026-11-24T09:30:00Z"), "Cooldown") with data.config.defaults.timing.cooldownMinutes as 15

test_cooldown_zero if not f.denies(f.applied_at("2026-11-24T09:59:00Z"), "Cooldown") with data.config.defaults.timing.cooldownMinutes as 0
