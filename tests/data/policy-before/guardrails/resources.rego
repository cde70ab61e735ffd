# Resource guardrails for container requests and limits.
#
# Requests are clamped rather than refused: a proposal beyond the per-step limits
# (maxDecreasePercent / maxIncreasePercent of the current request) or outside the absolute
# min/max is moved to the nearest allowed value and reported in `bounds` plus a warning,
# so a large saving is approached in safe steps. Changes that clamping cannot make safe
# (request above limit, limit removal, memory limit decrease, limit changes under a profile
# that keeps limits, a change too small to be worth a rollout) are denied.
#
# Numbers come from input.normalized (cores, bytes); a limit set to null in the proposal
# means "remove the limit", an absent key means "leave it as it is".
package dakr.guardrails

import data.dakr.lib
import data.dakr.scope

g := scope.guardrails

resizes if lib.action in {"Rightsizing", "LiveMigration"}

# One row per container and resource, with every number the rules below need, computed
# once: the rules then only compare fields. Arithmetic is the expensive part of evaluating
# this library (OPA computes on arbitrary-precision numbers, microseconds per operation),
# so a proposal inside its bounds is taken as is and only a clamp computes. A value that
# is not a number makes the arithmetic fail, and a failing policy denies.
rows contains row if {
	some c, ct in lib.containers
	some r in ["cpu", "memory"]
	cur_req := object.get(ct, ["current", "requests", r], null)
	new_req := object.get(ct, ["proposed", "requests", r], null)
	cur_lim := object.get(ct, ["current", "limits", r], null)
	new_lim := object.get(ct, ["proposed", "limits", r], null)

	# An explicit null removes the limit; an absent key (default 0) leaves it.
	removes := object.get(ct, ["proposed", "limits", r], 0) == null
	fin := final_req(r, cur_req, new_req)
	row := {
		"container": c,
		"resource": r,
		"cur_req": cur_req,
		"new_req": new_req,
		"cur_lim": cur_lim,
		"new_lim": new_lim,
		"removes_limit": removes,
		"final_req": fin,
		"final_lim": final_lim(cur_lim, new_lim, removes),
		"clamped": clamped_to(new_req, fin),
	}
}

# Per-step factors, computed once per decision.
down := 1 - (g.maxDecreasePercent / 100)

up := 1 + (g.maxIncreasePercent / 100)

# Absolute bounds and manifest units (whole millicores, whole bytes) per resource.
abs_bounds := {"cpu": [g.minCpuCores, g.maxCpuCores], "memory": [g.minMemoryBytes, g.maxMemoryBytes]}

units := {"cpu": 1000, "memory": 1}

# The request the container will run with: the current one when none is proposed, the
# proposal when it is inside every bound, else the proposal clamped.
final_req(r, cur, new) := cur if {
	new == null
} else := new if {
	b := abs_bounds[r]
	new >= b[0]
	new <= b[1]
	step_ok(cur, new)
} else := clamp(r, cur, new)

# No current request: no per-step limit.
step_ok(cur, _) if not cur > 0

step_ok(cur, new) if {
	cur > 0
	new >= cur * down
	new <= cur * up
}

# Per step first, then the absolute bounds, rounded up to a manifest unit (the epsilon
# keeps float noise, 0.2 * 0.9 = 0.18000000000000002, from adding a whole unit).
clamp(r, cur, new) := ceil((max([b[0], min([b[1], step_clamped(cur, new)])]) * units[r]) - 0.000001) / units[r] if {
	b := abs_bounds[r]
}

step_clamped(cur, new) := max([cur * down, min([cur * up, new])]) if cur > 0 else := new

# The limit the container will run with: the proposed one, else the one it keeps.
final_lim(cur, new, removes) := new if new != null else := null if removes else := cur

# The value a clamp moved the proposal to, or null when the proposal stands.
clamped_to(new, fin) := fin if {
	new != null
	new != fin
} else := null

clamps contains {"container": row.container, "resource": row.resource, "from": row.new_req, "to": row.clamped} if {
	some row in rows
	row.clamped != null
}

clamped_containers := {x.container | some x in clamps}

bounds := {"containers": {c: {"requests": {x.resource: x.to | some x in clamps; x.container == c}} |
	some c in clamped_containers
}} if {
	count(clamps) > 0
} else := {}

warnings contains sprintf(
	"%s %s request clamped from %s to %s by the %s guardrails",
	[x.container, x.resource, lib.fmt_res(x.resource, x.from), lib.fmt_res(x.resource, x.to), scope.settings.profile],
) if {
	some x in clamps
}

deny contains lib.denial("RequestAboveLimit", sprintf(
	"%s %s request %s would exceed its limit %s",
	[row.container, row.resource, lib.fmt_res(row.resource, req), lib.fmt_res(row.resource, lim)],
)) if {
	some row in rows
	req := row.final_req
	lim := row.final_lim
	is_number(req)
	is_number(lim)
	req > lim
}

deny contains lib.denial("LimitRemoval", sprintf("%s %s limit would be removed", [row.container, row.resource])) if {
	some row in rows
	row.removes_limit
	row.cur_lim != null
	not g.allowLimitRemoval
}

deny contains lib.denial("MemoryLimitDecrease", sprintf(
	"%s memory limit would drop from %s to %s; set allowMemoryLimitDecrease to allow it",
	[row.container, lib.fmt_res("memory", row.cur_lim), lib.fmt_res("memory", row.new_lim)],
)) if {
	some row in rows
	row.resource == "memory"
	row.new_lim != null
	row.cur_lim != null
	row.new_lim < row.cur_lim
	not g.allowMemoryLimitDecrease
}

deny contains lib.denial("LimitChange", sprintf(
	"%s %s limit would change but the %s profile keeps limits unchanged",
	[row.container, row.resource, scope.settings.profile],
)) if {
	g.allowLimitChanges == false
	some row in rows
	limit_changes(row)
}

limit_changes(row) if {
	row.new_lim != null
	row.new_lim != row.cur_lim
}

limit_changes(row) if row.removes_limit

# Whether a row moves enough to be worth a rollout (setting or removing a value always is).
significant(row) if {
	row.new_req != null
	row.cur_req == null
}

significant(row) if {
	row.new_req != null
	row.cur_req != null
	lib.pct_change(row.cur_req, row.final_req) + 0.000001 >= g.minChangePercent
}

significant(row) if {
	row.new_lim != null
	row.cur_lim == null
}

significant(row) if {
	row.new_lim != null
	row.cur_lim != null
	lib.pct_change(row.cur_lim, row.new_lim) + 0.000001 >= g.minChangePercent
}

significant(row) if {
	row.removes_limit
	row.cur_lim != null
}

touched(row) if row.new_req != null

touched(row) if row.new_lim != null

touched(row) if row.removes_limit

any_touched if {
	some row in rows
	touched(row)
}

any_significant if {
	some row in rows
	significant(row)
}

# The largest relative move (after clamping), in percent, for the MinimumChange message:
# only computed when no row is significant, so every touched value has a current one.
largest_change := max([pct |
	some row in rows
	touched(row)
	some pct in [req_change(row), lim_change(row)]
])

req_change(row) := 0 if row.new_req == null else := lib.pct_change(row.cur_req, row.final_req)

lim_change(row) := 0 if row.new_lim == null else := lib.pct_change(row.cur_lim, row.new_lim)

deny contains lib.denial("MinimumChange", sprintf(
	"largest change is %.1f%%, below the %v%% worth a rollout",
	[largest_change, g.minChangePercent],
)) if {
	resizes
	any_touched
	not any_significant
}

deny contains lib.denial("NoResources", "the recommendation changes no container resources") if {
	resizes
	not any_touched
}

# A container the target does not have cannot be resized; the pipeline marks it.
deny contains lib.denial("UnknownContainer", sprintf("%s/%s has no container %s", [lib.target_kind, lib.name, c])) if {
	input.target != null
	some c, ct in lib.containers
	ct.found == false
}
