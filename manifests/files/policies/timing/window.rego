# Maintenance windows: when any are configured, changes happen only inside one of them.
# A window is {days: [Monday, ...], start: "HH:MM", end: "HH:MM", timezone: "Area/City"};
# days empty or absent means every day; end before start wraps past midnight (the part after
# midnight belongs to the day the window started). The clock is input.now, never the wall.
package dakr.timing

import data.dakr.lib
import data.dakr.scope

windows := object.get(scope.settings, ["timing", "maintenanceWindows"], [])

minutes(hhmm) := (to_number(parts[0]) * 60) + to_number(parts[1]) if parts := split(hhmm, ":")

local_minutes(tz) := (c[0] * 60) + c[1] if c := time.clock([lib.now_ns, tz])

weekday(tz) := time.weekday([lib.now_ns, tz])

# The weekday before the given one, for the after-midnight part of a wrapping window.
day_names := ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

previous_day(d) := day_names[(i + 6) % 7] if day_names[i] == d

day_ok(w, d) if count(object.get(w, "days", [])) == 0

day_ok(w, d) if d in w.days

in_window(w) if {
	tz := object.get(w, "timezone", "UTC")
	start := minutes(w.start)
	end := minutes(w.end)
	start <= end
	now := local_minutes(tz)
	start <= now
	now < end
	day_ok(w, weekday(tz))
}

in_window(w) if {
	tz := object.get(w, "timezone", "UTC")
	start := minutes(w.start)
	end := minutes(w.end)
	start > end
	local_minutes(tz) >= start
	day_ok(w, weekday(tz))
}

in_window(w) if {
	tz := object.get(w, "timezone", "UTC")
	start := minutes(w.start)
	end := minutes(w.end)
	start > end
	local_minutes(tz) < end
	day_ok(w, previous_day(weekday(tz)))
}

deny contains {"rule": "MaintenanceWindow", "msg": sprintf("%s is outside every maintenance window", [input.now])} if {
	count(scope.settings.timing.maintenanceWindows) > 0
	not any_window
}

any_window if {
	some w in windows
	in_window(w)
}
