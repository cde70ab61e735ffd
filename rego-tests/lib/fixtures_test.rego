# Small constructors shared by the Rego tests. Inputs start from the samples in
# rego-tests/data/samples.json (data.samples), which the Python tests read too, and change
# one field with a JSON patch, so each test says only what is special about it.
package fixtures

import data.samples

# Coverage is opt-in (scope.rego). The area tests judge their own rule on a covered
# workload, so decision() opts every namespace in, as a team's
# config.scope.includeNamespaceRegex [".*"] would; the scope tests use shipped(), which
# evaluates the library's data as it ships.
decision(inp) := d if {
	d := data.dakr.decision with input as inp with data.config.scope.includeNamespaceRegex as [".*"]
}

shipped(inp) := d if {
	d := data.dakr.decision with input as inp
}

shipped_rules(inp) := {d.rule | some d in shipped(inp).deny}

rules(inp) := {d.rule | some d in decision(inp).deny}

denies(inp, rule) if rule in rules(inp)

allows(inp) if decision(inp).allow

mode(inp) := decision(inp).mode

bounds(inp) := object.get(decision(inp), "bounds", {})

execution(inp) := object.get(decision(inp), "execution", {})

warned(inp, fragment) if {
	some w in decision(inp).warnings
	contains(w, fragment)
}

set(inp, path, value) := json.patch(inp, [{"op": "add", "path": path, "value": value}])

# JSON pointer escaping for label keys such as "argocd.argoproj.io/instance".
key(k) := replace(replace(k, "~", "~0"), "/", "~1")

rightsizing := samples.rightsizing

live_migration := samples.live_migration

replica_scaling := samples.replica_scaling

hpa_scaling := samples.hpa_scaling

nodegroup := samples.nodegroup

# -- workload constructors ---------------------------------------------------

in_namespace(ns) := set(rightsizing, "/recommendation/metadata/namespace", ns)

named(name) := set(rightsizing, "/recommendation/spec/targetRef/name", name)

of_kind(kind) := set(rightsizing, "/recommendation/spec/targetRef/kind", kind)

labelled(k, v) := set(rightsizing, concat("/", ["/target/metadata/labels", key(k)]), v)

annotated(k, v) := set(rightsizing, concat("/", ["/target/metadata/annotations", key(k)]), v)

spec(k, v) := set(rightsizing, concat("/", ["/recommendation/spec", k]), v)

cluster(k, v) := set(rightsizing, concat("/", ["/cluster", k]), v)

at(now) := set(rightsizing, "/now", now)

applied_at(t) := set(rightsizing, "/history/lastApplied", {"recommendationId": "rec-0", "at": t})

# Container "server" of the rightsizing sample; current is 200m/128Mi, limits 400m/256Mi.
proposed(kind, res, v) := set(rightsizing, sprintf("/normalized/containers/server/proposed/%s/%s", [kind, res]), v)

current(kind, res, v) := set(rightsizing, sprintf("/normalized/containers/server/current/%s/%s", [kind, res]), v)

# -- replica constructors (current 2 replicas) -------------------------------

replicas(n) := set(set(replica_scaling, "/normalized/replicas/proposed", n), "/recommendation/spec/replicas", n)

hpa_bounds(lo, hi) := set(hpa_scaling, "/recommendation/spec/hpa", {"minReplicas": lo, "maxReplicas": hi})

# -- node constructors (node-a, node-b of five; group minimum 2) --------------

removing(nodes) := set(nodegroup, "/recommendation/spec/nodesToRemove", nodes)

node_pod(i, j, k, v) := set(nodegroup, sprintf("/cluster/nodes/%d/pods/%d/%s", [i, j, k]), v)

mib(n) := n * 1048576
