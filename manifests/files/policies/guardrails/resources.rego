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

# (scope.guardrails, read from the derived view directly where there is one: a rule
# referring to a rule costs steps.)
g := v if {
	v := scope.view.guardrails
} else := scope.guardrails

resizes if input.recommendation.spec.action in {"Rightsizing", "LiveMigration"}

# One row per container and resource, with every number the rules below need, computed
# once: the rules then only compare values. Arithmetic is the expensive part of evaluating
# this library (OPA computes on arbitrary-precision numbers, microseconds per operation),
# so a proposal inside its bounds is taken as is and only a clamp computes. A value that
# is not a number makes the arithmetic fail, and a failing policy denies.
#
# A row is an array, read by destructuring (a step per element, where a field lookup
# costs four), its flags first so that a rule about rows with a flag set skips the others
# at their first element:
#   [check, clamped, container, resource, requests, limits]
#   check     the proposal sets a limit other than the current one or removes one, or the
#             final request compares above the final limit (as it does above no limit):
#             the only rows the limit rules need to look at
#   clamped   the final request differs from the proposed one (with one proposed)
#   requests  [current, proposed, final]: final is what the container will run with
#   limits    [current, proposed, final, removes]: final is the proposed limit, null when
#             the proposal removes it (an explicit null), else the current one (an
#             absent key)
# (The lookups pass their result as object.get's last argument: half the steps of
# `x := object.get(...)`, in the rule every container and resource goes through.)
rows contains [[[new_lim, removes] != [cur_lim, false], fin > fin_lim] != [false, false], new_req != fin, c, r, [cur_req, new_req, fin], [cur_lim, new_lim, fin_lim, removes]] if {
	some c, ct in input.normalized.containers
	some r, b in per_resource
	object.get(ct, ["current", "requests", r], null, cur_req)
	object.get(ct, ["proposed", "requests", r], null, new_req)
	object.get(ct, ["current", "limits", r], null, cur_lim)
	object.get(ct, ["proposed", "limits", r], null, new_lim)
	object.get(ct, ["proposed", "limits", r], cur_lim, fin_lim)

	# An explicit null removes the limit; an absent key (default 0) leaves it.
	removes := object.get(ct, ["proposed", "limits", r], 0) == null
	final_req(b, cur_req, new_req, fin)
}

# Per resource: [min, max, unit, down, up], the absolute bounds, the manifest unit (whole
# millicores, whole bytes) and the per-step factors; [min, max, unit] when the profile sets
# no per-step limit (then only the absolute bounds apply); null without bounds (then only
# an unchanged request has a final value). It depends on the configuration alone:
# computed once per policy load where the engine can (scope.view), else per decision.
default per_resource := {"cpu": null, "memory": null}

per_resource := v if {
	v := scope.view.per_resource
} else := resource_bounds(g)

resource_bounds(g) := {
	"cpu": [g.minCpuCores, g.maxCpuCores, 1000, down, up],
	"memory": [g.minMemoryBytes, g.maxMemoryBytes, 1, down, up],
} if {
	down := 1 - (g.maxDecreasePercent / 100)
	up := 1 + (g.maxIncreasePercent / 100)
} else := {
	"cpu": [g.minCpuCores, g.maxCpuCores, 1000],
	"memory": [g.minMemoryBytes, g.maxMemoryBytes, 1],
}

# The request the container will run with: the proposal when it is inside every bound
# (with no current request, no per-step limit), else the proposal clamped: per step
# first, then the absolute bounds, rounded up to a manifest unit (the epsilon keeps float
# noise, 0.2 * 0.9 = 0.18000000000000002, from adding a whole unit); the current one when
# none is proposed (last: a null proposal fails every bound before). `cur <= 0` is
# `not cur > 0`: comparison orders every value.
final_req([lo, hi, unit, down, up], cur, new) := new if {
	cur > 0
	new >= cur * down
	new <= cur * up
	new >= lo
	new <= hi
} else := ceil((max([lo, min([hi, max([cur * down, min([cur * up, new])])])]) * unit) - 0.000001) / unit if {
	cur > 0
	new != null
} else := new if {
	new >= lo
	new <= hi
	cur <= 0
} else := ceil((max([lo, min([hi, new])]) * unit) - 0.000001) / unit if {
	new != null
} else := cur if {
	new == null
}

final_req([lo, hi, unit], cur, new) := new if {
	new >= lo
	new <= hi
	cur <= 0
} else := ceil((max([lo, min([hi, new])]) * unit) - 0.000001) / unit if {
	new != null
} else := cur if {
	new == null
}

# Without bounds (a profile and guardrails that set none) only an unchanged request has a
# final value.
final_req(null, cur, null) := cur

# The requests a clamp moved, by container: the `bounds` the planner must use.
clamped[c].requests[r] := to if {
	some [_, true, c, r, [_, from, to], _] in rows
	from != null
}

bounds := {"containers": c} if {
	c := clamped
	count(c) > 0
} else := {}

# The decision's `bounds` key as a resize has it (dakr/decision.rego): bounds, when not
# empty, without a function call to wrap it.
bounds_doc := {"bounds": {"containers": c}} if {
	c := clamped
	count(c) > 0
} else := {}

# lib.fmt_res, one resource per rule.
warnings contains sprintf(
	"%s cpu request clamped from %dm to %dm by the %s guardrails",
	[c, round(from * 1000), round(to * 1000), scope.settings.profile],
) if {
	some [_, true, c, "cpu", [_, from, to], _] in rows
	from != null
}

warnings contains sprintf(
	"%s memory request clamped from %dMi to %dMi by the %s guardrails",
	[c, round(from / 1048576), round(to / 1048576), scope.settings.profile],
) if {
	some [_, true, c, "memory", [_, from, to], _] in rows
	from != null
}

# The limit rules (limit_denial, one function per rule) look only at the rows with check
# set, found in one pass over the rows: a row without it costs three steps once, not three
# at each of the four rules.
deny contains limit_denial(k, c, r, req, lim) if {
	some [true, _, c, r, req, lim] in rows
	some k in ["RequestAboveLimit", "LimitRemoval", "MemoryLimitDecrease", "LimitChange"]
}

limit_denial("RequestAboveLimit", c, r, [_, _, req], [_, _, lim, _]) := {"rule": "RequestAboveLimit", "msg": sprintf(
	"%s %s request %s would exceed its limit %s",
	[c, r, lib.fmt_res(r, req), lib.fmt_res(r, lim)],
)} if {
	req > lim
	is_number(lim)
	is_number(req)
}

limit_denial("LimitRemoval", c, r, _, [cur, _, _, true]) := {"rule": "LimitRemoval", "msg": sprintf("%s %s limit would be removed", [c, r])} if {
	cur != null
	not g.allowLimitRemoval
}

limit_denial("MemoryLimitDecrease", c, "memory", _, [cur, new, _, _]) := {"rule": "MemoryLimitDecrease", "msg": sprintf(
	"%s memory limit would drop from %s to %s; set allowMemoryLimitDecrease to allow it",
	[c, lib.fmt_res("memory", cur), lib.fmt_res("memory", new)],
)} if {
	new < cur
	new != null
	not g.allowMemoryLimitDecrease
}

limit_denial("LimitChange", c, r, _, lim) := {"rule": "LimitChange", "msg": sprintf(
	"%s %s limit would change but the %s profile keeps limits unchanged",
	[c, r, scope.settings.profile],
)} if {
	g.allowLimitChanges == false
	limit_changes(lim)
}

limit_changes([cur, new, _, _]) if {
	new != null
	new != cur
}

limit_changes([_, _, _, true])

# Whether a row moves enough to be worth a rollout (setting or removing a value always
# is): lib.pct_change inline where the current value is not 0.
any_significant if {
	some [_, _, _, _, [cur, new, fin], _] in rows
	new != null
	cur != null
	cur != 0
	abs(((fin - cur) * 100) / cur) + 0.000001 >= g.minChangePercent
}

any_significant if {
	some [_, _, _, _, [cur, new, _], _] in rows
	new != null
	cur == null
}

any_significant if {
	some [_, _, _, _, _, [cur, new, _, _]] in rows
	new != null
	cur != null
	lib.pct_change(cur, new) + 0.000001 >= g.minChangePercent
}

any_significant if {
	some [true, _, _, _, _, [cur, new, _, _]] in rows
	new != null
	cur == null
}

any_significant if {
	some [true, _, _, _, _, [cur, _, _, true]] in rows
	cur != null
}

any_significant if {
	some [_, _, _, _, [0, new, fin], _] in rows
	new != null
	lib.pct_change(0, fin) + 0.000001 >= g.minChangePercent
}

# Whether a row sets a request or a limit, or removes a limit.
touched([_, _, _, _, [_, new, _], [_, new_lim, _, removes]]) if [new, new_lim, removes] != [null, null, false]

any_touched if {
	some row in rows
	touched(row)
}

# The largest relative move (after clamping), in percent, for the MinimumChange message:
# only computed when no row is significant, so every touched value has a current one.
largest_change := max([pct |
	some row in rows
	touched(row)
	some pct in [req_change(row), lim_change(row)]
])

req_change([_, _, _, _, [cur, new, fin], _]) := 0 if new == null else := lib.pct_change(cur, fin)

lim_change([_, _, _, _, _, [cur, new, _, _]]) := 0 if new == null else := lib.pct_change(cur, new)

# Nothing significant: a change too small to be worth a rollout, or no change at all
# (whatever is significant is touched).
deny contains no_change if {
	input.recommendation.spec.action in {"Rightsizing", "LiveMigration"}
	not any_significant
}

no_change := {"rule": "MinimumChange", "msg": sprintf(
	"largest change is %.1f%%, below the %v%% worth a rollout",
	[largest_change, g.minChangePercent],
)} if {
	any_touched
} else := {"rule": "NoResources", "msg": "the recommendation changes no container resources"} if {
	not any_touched
}

# A container the target does not have cannot be resized; the pipeline marks it.
deny contains {"rule": "UnknownContainer", "msg": sprintf("%s/%s has no container %s", [lib.target_kind, lib.name, c])} if {
	some c, ct in input.normalized.containers
	ct.found == false
	input.target != null
}
