# A yardstick for bench/bench_policy.py, never a policy to load: the default library's
# decision for the benchmark's common case (a rightsizing of a workload in scope, under
# the opted-in data.yaml with no scoped rule, maintenance window or history) written as
# one straight-line body, with none of the library's generality: no rule areas, no scoped
# settings, no approval routing, no limit, minimum-change, container or PDB rules (none
# fires on those inputs). It is undefined on every other input. The bench times it only on
# the inputs where its decision is the library's, key for key, so its figures are what
# the same answers cost without the library's structure.
package dakr

decision := object.union(
	{
		"allow": count(dn) == 0,
		"mode": input.cluster.operatorMode,
		"deny": [{"rule": p[0], "msg": p[1]} | some p in sort([[d.rule, d.msg] | some d in dn])],
		"warnings": sort(ws),
	},
	{"bounds": {"containers": clamped} | count(clamped) > 0},
) if {
	input.recommendation.kind == "WorkloadRecommendation"
	input.recommendation.spec.action == "Rightsizing"
	input.recommendation.spec.targetRef.name != ""
	is_object(input.cluster)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, input.now)
	input.history.lastApplied == null
	ns := input.recommendation.metadata.namespace
	not ns in data.config.systemNamespaces
	ns != input.cluster.operatorNamespace
	regex.match(data.config.scope.includeNamespaceRegex[0], ns)
	input.recommendation.spec.targetRef.kind in data.config.scope.kinds
	rows := [[c, r, cur, new, fin] |
		some c, ct in input.normalized.containers
		some r, b in data.dakr_derived.per_resource
		cur := ct.current.requests[r]
		new := ct.proposed.requests[r]
		fin := final_req(b, cur, new)
	]
	clamped := {c: {"requests": req} |
		some [c, _, _, _, _] in rows
		req := {r: fin | some [c, r, _, new, fin] in rows; new != fin}
		count(req) > 0
	}
	conf := input.recommendation.spec.confidence
	minc := data.config.defaults.timing.minConfidence
	pcts := [abs(((fin - cur) * 100) / cur) | some [_, _, cur, _, fin] in rows]
	least := data.dakr_derived.min_change
	dn := {{"rule": "MinimumConfidence", "msg": sprintf("confidence %v is below the minimum %v (timing.minConfidence)", [conf, minc])} | conf < minc} | {{"rule": "MinimumChange", "msg": sprintf("largest change is %.1f%%, below the %v%% worth a rollout", [max(pcts), least])} | every p in pcts { p + 0.000001 < least }}
	profile := data.config.defaults.profile
	ws := {warning(c, r, new, fin, profile) | some [c, r, _, new, fin] in rows; new != fin}
}

warning(c, "cpu", from, to, p) := sprintf("%s cpu request clamped from %dm to %dm by the %s guardrails", [c, round(from * 1000), round(to * 1000), p])

warning(c, "memory", from, to, p) := sprintf("%s memory request clamped from %dMi to %dMi by the %s guardrails", [c, round(from / 1048576), round(to / 1048576), p])

final_req([lo, hi, unit, down, up], cur, new) := new if {
	new >= cur * down
	new <= cur * up
	new >= lo
	new <= hi
} else := ceil((max([lo, min([hi, max([cur * down, min([cur * up, new])])])]) * unit) - 0.000001) / unit

batch := [d | some item in input.items; d := decision with input as item]

# What depends on the data alone, computed once per load as the library's is.
derived := {"min_change": g.minChangePercent, "per_resource": {
	"cpu": [g.minCpuCores, g.maxCpuCores, 1000, 1 - (g.maxDecreasePercent / 100), 1 + (g.maxIncreasePercent / 100)],
	"memory": [g.minMemoryBytes, g.maxMemoryBytes, 1, 1 - (g.maxDecreasePercent / 100), 1 + (g.maxIncreasePercent / 100)],
}} if {
	g := object.union(data.config.profiles[data.config.defaults.profile], data.config.defaults.guardrails)
}
