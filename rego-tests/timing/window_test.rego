package dakr.timing_window_test

import data.fixtures as f

# The samples' now is Tuesday 2026-11-24 10:00 UTC (11:00 in Paris).

window(days, start, end, tz) := {"days": days, "start": start, "end": end, "timezone": tz}

outside(now, w) if f.denies(f.at(now), "MaintenanceWindow") with data.config.defaults.timing.maintenanceWindows as [w]

test_no_windows_any_time if not f.denies(f.rightsizing, "MaintenanceWindow")

test_inside_window if not outside("2026-11-24T10:00:00Z", window(["Tuesday"], "09:00", "11:00", "UTC"))

test_before_window if outside("2026-11-24T10:00:00Z", window(["Tuesday"], "11:00", "12:00", "UTC"))

test_end_is_exclusive if outside("2026-11-24T11:00:00Z", window(["Tuesday"], "09:00", "11:00", "UTC"))

test_start_is_inclusive if not outside("2026-11-24T09:00:00Z", window(["Tuesday"], "09:00", "11:00", "UTC"))

test_wrong_day if outside("2026-11-24T10:00:00Z", window(["Saturday", "Sunday"], "09:00", "11:00", "UTC"))

test_every_day_when_no_days if not outside("2026-11-24T10:00:00Z", window([], "09:00", "11:00", "UTC"))

test_time_zone_inside if not outside("2026-11-24T10:00:00Z", window(["Tuesday"], "10:30", "11:30", "Europe/Paris"))

test_time_zone_outside if outside("2026-11-24T10:00:00Z", window(["Tuesday"], "09:00", "10:30", "Europe/Paris"))

test_default_zone_utc if not outside("2026-11-24T10:00:00Z", {"days": ["Tuesday"], "start": "09:00", "end": "11:00"})

test_wrapping_before_midnight if not outside("2026-11-24T23:00:00Z", window(["Tuesday"], "22:00", "02:00", "UTC"))

test_wrapping_after_midnight_belongs_to_start_day if not outside("2026-11-25T01:00:00Z", window(["Tuesday"], "22:00", "02:00", "UTC"))

test_wrapping_after_midnight_other_day if outside("2026-11-25T01:00:00Z", window(["Wednesday"], "22:00", "02:00", "UTC"))

test_wrapping_outside if outside("2026-11-24T10:00:00Z", window([], "22:00", "02:00", "UTC"))

test_any_of_several_windows if not f.denies(f.rightsizing, "MaintenanceWindow") with data.config.defaults.timing.maintenanceWindows as [
	window(["Monday"], "01:00", "02:00", "UTC"),
	window(["Tuesday"], "09:00", "12:00", "UTC"),
]
