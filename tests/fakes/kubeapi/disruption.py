"""PodDisruptionBudget arithmetic, and a recorder of every moment a budget was broken.

The arithmetic is the disruption controller's (healthy = Running, Ready and not being
deleted; expectedPods from the pods' controllers; desiredHealthy from minAvailable or
maxUnavailable, percentages rounded up). The eviction subresource uses it to refuse an
eviction; the recorder uses the same numbers after every write, so that a test can assert
the product's promise: "at no instant does a workload have fewer available pods than its
PodDisruptionBudget allows". A refused eviction cannot break a budget, but a pod restarted
by an in-place resize, a delete, or a node drained without the eviction API can.

Everything here reads the store's objects directly and must run under the store lock: the
recorder is called from inside the store's write path (`Store.listeners`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tests.fakes.kubeapi import selectors

if TYPE_CHECKING:
    from tests.fakes.kubeapi import store

JSON = dict[str, Any]

PODS = ("", "pods")
PDBS = ("policy", "poddisruptionbudgets")
_WORKLOADS = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")}
_CONTROLLER_KINDS = {"ReplicaSet": ("apps", "replicasets"),
                     "StatefulSet": ("apps", "statefulsets"),
                     "Deployment": ("apps", "deployments")}

# ---------------------------------------------------------------------- who is writing

_acting = threading.local()


@contextlib.contextmanager
def acting(cause: str) -> Iterator[None]:
    """Attribute the store writes made by this thread in the block to `cause`.

    The HTTP handler wraps each request ("PATCH /api/v1/.../resize"), the simulated kubelet
    each of its steps. Writes outside any block (seeding from a test) have no cause: they
    set the scene and are never counted as breaches.
    """
    previous = getattr(_acting, "cause", None)
    _acting.cause = cause
    try:
        yield
    finally:
        _acting.cause = previous


def current_cause() -> str | None:
    return getattr(_acting, "cause", None)


# ---------------------------------------------------------------------- arithmetic


def pod_healthy(pod: JSON) -> bool:
    """Counts toward a budget: Running, Ready, and not being deleted."""
    st = pod.get("status") or {}
    if st.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in st.get("conditions") or [])


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


def desired_healthy(spec: JSON, expected: int) -> int:
    """The disruption controller's desiredHealthy (percentages round up)."""
    if spec.get("maxUnavailable") is not None:
        return max(0, expected - _scaled(spec["maxUnavailable"], expected))
    if spec.get("minAvailable") is not None:
        return _scaled(spec["minAvailable"], expected)
    return expected


def _controller_scale(objects: Any, pod: JSON) -> tuple[str, int] | None:
    ns = pod["metadata"]["namespace"]
    owner = next((o for o in pod["metadata"].get("ownerReferences") or []
                  if o.get("controller")), None)
    if owner is None or owner.get("kind") not in _CONTROLLER_KINDS:
        return None
    obj = objects[_CONTROLLER_KINDS[owner["kind"]]].get((ns, owner.get("name")))
    if obj is None:
        return None
    if owner["kind"] == "ReplicaSet":
        parent = next((o for o in obj["metadata"].get("ownerReferences") or []
                       if o.get("controller") and o.get("kind") == "Deployment"), None)
        if parent is not None:
            obj = objects[("apps", "deployments")].get((ns, parent.get("name"))) or obj
    return obj["metadata"]["uid"], int((obj.get("spec") or {}).get("replicas", 1))


def expected_count(objects: Any, spec: JSON, pods: list[JSON]) -> int:
    """The disruption controller's expectedPods.

    An integer minAvailable counts the matching pods; maxUnavailable and percentages use
    the scale of the pods' controllers (Deployment via ReplicaSet, StatefulSet,
    ReplicaSet), so evicted pods still count until a controller replaces them. Pods
    without a known controller fall back to being counted themselves (the real
    controller would refuse to compute a budget for them).
    """
    min_available = spec.get("minAvailable")
    if spec.get("maxUnavailable") is None and (
            min_available is None or not str(min_available).endswith("%")):
        return len(pods)
    scales: dict[str, int] = {}
    loose = 0
    for pod in pods:
        found = _controller_scale(objects, pod)
        if found is None:
            loose += 1
        else:
            scales[found[0]] = found[1]
    return sum(scales.values()) + loose if scales else len(pods)


@dataclasses.dataclass
class Budget:
    """A PodDisruptionBudget's numbers at one instant (what its status would say)."""

    healthy: int
    desired: int
    expected: int

    @property
    def allowed(self) -> int:
        return max(0, self.healthy - self.desired)


def budget(objects: Any, pdb: JSON) -> Budget:
    """The budget of `pdb` over the pods in `objects` (the store's `objects` mapping).

    Pods being deleted are neither healthy nor expected (the controller drops them).
    """
    ns = pdb["metadata"]["namespace"]
    spec = pdb.get("spec") or {}
    selected = [p for (pns, _), p in objects[PODS].items()
                if pns == ns and not p["metadata"].get("deletionTimestamp")
                and selectors.match_label_selector(spec.get("selector"),
                                                   p["metadata"].get("labels") or {})]
    healthy = sum(1 for p in selected if pod_healthy(p))
    expected = expected_count(objects, spec, selected)
    return Budget(healthy, desired_healthy(spec, expected), expected)


def budgets_for(objects: Any, namespace: str, labels: dict[str, str]) -> list[JSON]:
    """The PDBs of `namespace` whose selector matches `labels`, in name order."""
    return [p for (ns, _), p in sorted(objects[PDBS].items())
            if ns == namespace and selectors.match_label_selector(
                (p.get("spec") or {}).get("selector"), labels)]


# ---------------------------------------------------------------------- recorder


class Recorder:
    """Watches every store write and records each budget that a write pushed below desired.

    `breaches`: one dict per write that took a budget from met to broken, with `pdb`,
    `namespace`, `healthy`, `desired` and `after` (the request or kubelet step that made
    the write, e.g. "PATCH /api/v1/namespaces/default/pods/web-0/resize" or
    "kubelet: default/web-0 resize (restarting app)"). A budget already broken stays one
    entry until it recovers; a budget that starts broken (seeded that way) or is created or
    tightened while pods are missing is not a breach: no one disrupted anything.
    `min_healthy[(namespace, pdb)]`: the fewest healthy pods the budget had after any
    request or kubelet step (seeding does not count).
    """

    def __init__(self) -> None:
        self.breaches: list[JSON] = []
        self.min_healthy: dict[tuple[str, str], int] = {}
        self._broken: dict[tuple[str, str], bool] = {}

    def observe(self, objects: Any, ev: store.Event, cause: str | None) -> None:
        """Re-evaluate the budgets a store write can have moved (`objects`: the store's
        objects, already holding the write; called under the store lock)."""
        key, namespace, obj, prev = ev.key, ev.namespace, ev.obj, ev.prev
        if key == PDBS:
            name = obj["metadata"]["name"]
            if ev.type == "DELETED":
                self._broken.pop((namespace, name), None)
                return
            pdbs = [objects[PDBS][(namespace, name)]]
        elif key == PODS:
            if not any(ns == namespace for ns, _ in objects[PDBS]):
                return
            pdbs = budgets_for(objects, namespace, obj["metadata"].get("labels") or {})
            if prev is not None:
                names = {p["metadata"]["name"] for p in pdbs}
                pdbs += [p for p in budgets_for(objects, namespace,
                                                prev["metadata"].get("labels") or {})
                         if p["metadata"]["name"] not in names]
        elif key in _WORKLOADS:
            pdbs = [p for (ns, _), p in sorted(objects[PDBS].items()) if ns == namespace]
        else:
            return
        for pdb in pdbs:
            name = pdb["metadata"]["name"]
            b = budget(objects, pdb)
            broken = b.healthy < b.desired
            before = self._broken.get((namespace, name))
            self._broken[(namespace, name)] = broken
            if cause is None:
                continue
            low = self.min_healthy.get((namespace, name))
            self.min_healthy[(namespace, name)] = b.healthy if low is None else min(
                low, b.healthy)
            if broken and before is False and key != PDBS:
                self.breaches.append({"pdb": name, "namespace": namespace,
                                      "healthy": b.healthy, "desired": b.desired,
                                      "after": cause})
