"""A Kubernetes API server for tests, spoken to only through the official `kubernetes` client.

No kube-apiserver binary can be installed where these tests run, so this package serves the
parts of the Kubernetes API the product uses, over real HTTP on loopback, with the real
server's semantics: discovery (and just enough OpenAPI v3 and server-side Tables for
kubectl); core/v1 pods, nodes, namespaces, events, configmaps, secrets, services; apps/v1
workloads; batch/v1 Jobs; autoscaling/v2 (and v1) HPAs; policy/v1 PDBs;
coordination.k8s.io/v1 leases; rbac.authorization.k8s.io/v1; CRDs and their custom resources
(openAPIV3Schema defaulting, pruning, validation including a CEL subset); resourceVersion,
generation, finalizers; label/field selectors and paging; JSON, merge, strategic merge and
(simplified) apply patches; dryRun; status, scale, eviction (PodDisruptionBudgets), resize
and node-proxy checkpoint subresources; watches with bookmarks and 410 Expired; `Status` error
bodies; optional RBAC; stand-in workload controllers; fault injection and request counters;
mutating admission webhooks (MutatingWebhookConfiguration, called over HTTPS on creates).

A server has a Kubernetes version (`KubeApiServer(version=(1, 33))`, default 1.34): /version
reports it, pods/resize exists from 1.33 (404 and absent from discovery before), 1.33
refuses memory limit decreases under resizePolicy NotRequired, 1.34 puts observedGeneration
on pod conditions. A simulated kubelet (`KubeApi.kubelet`) carries resizes out on a
background thread as real status writes (PodResizePending Deferred/Infeasible,
PodResizeInProgress and its Error, container restarts for RestartContainer, node
allocatable checked), answers the node-proxy checkpoint API in modes (ok, gate-off,
unsupported, forbidden, slow) and runs created Jobs to Complete or Failed. A disruption
recorder (`KubeApi.disruptions`) notes every PodDisruptionBudget a request or kubelet step
pushed below its desiredHealthy. The kubelet starts no pods unless told to
(`kubelet.run_pods = True`: created pods are placed on a node and become Running and Ready,
or stay not Ready with `kubelet.fail_pods(pattern, reason)`; otherwise they stay Pending),
Jobs finish without any, and it reads a pod's memory usage from its
`kubeapi.test/memory-usage` annotation.

Modules: `server` (HTTP, routing, subresources), `store` (objects, versions, events),
`status` (error bodies), `patch`, `selectors`, `schema` + `cel` (custom resources),
`validation` (built-in rules), `faults` (injection, counters), `rbac`, `tables`,
`kubelet` (resizes, checkpoints, Jobs), `disruption` (budget arithmetic, breach recorder),
`admission` (webhook calls, recorded in `KubeApi.admission.calls`),
`handle` (`KubeApi`, `serve()`), `fixtures` (pytest plugin: `kubeapi`, `kubeapi_factory`).
Standalone: `python -m tests.fakes.kubeapi --port N --kubeconfig-out FILE [--seed objects.yaml]`.

Known differences from a real cluster: no protobuf bodies (`kubectl create deployment`
sends protobuf and gets 415; `kubectl apply -f` works), server-side apply merges without
field ownership or conflicts, pods are deleted at once (no kubelet grace period; use
finalizers to keep one around), no garbage collection of owned objects, CEL transition
rules (oldSelf) are not evaluated, admission webhooks see creates only (no UPDATE/DELETE,
no validating webhooks, matchConditions not evaluated).
"""
