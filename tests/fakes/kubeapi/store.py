"""In-memory object storage with the metadata semantics of the real API server.

One cluster-wide resourceVersion counter (like etcd's revision), a bounded window of watch
events (older starting points get 410 Expired), generation bumped only on spec changes,
status/spec isolation for kinds with a status subresource, finalizers holding a deleted
object until the last one is removed, and CRDs that add and remove served types.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import random
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from tests.fakes.kubeapi import resources, schema, status, validation

JSON = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

# Kinds whose DELETE answers with the object rather than a Status (ReturnDeletedObject).
_RETURNS_OBJECT = {("", "pods"), ("", "namespaces"), ("", "nodes"),
                   ("apiextensions.k8s.io", "customresourcedefinitions")}


# What a freshly created object's status serializes to: Go drops empty omitempty fields but
# keeps the required integers, and the client's models insist on them.
_EMPTY_STATUS: dict[str, JSON] = {
    "HorizontalPodAutoscaler": {"currentReplicas": 0, "desiredReplicas": 0},
    "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                            "expectedPods": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "ReplicaSet": {"replicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                  "desiredNumberScheduled": 0, "numberReady": 0},
}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: tuple[str, str]
    namespace: str
    obj: JSON
    prev: JSON | None


class Store:
    """Thread-safe object storage; every method takes the one lock."""

    def __init__(self, history: int = 1000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 100
        self.history = history
        self.events: collections.deque[Event] = collections.deque()
        self.compacted_rv = 0  # watches from an rv below this get 410
        # Pods deleted with a grace period linger (deletionTimestamp set) until the kubelet
        # would have stopped them; 0 deletes them at once. Removal happens lazily, on the
        # next store access after the deadline.
        self.pod_grace_seconds = 0.0
        self._terminating: dict[ObjKey, float] = {}
        # Called with each Event as it is recorded, under the lock (the server's kubelet and
        # disruption recorder): they must not write to the store themselves.
        self.listeners: list[Callable[[Event], None]] = []
        self.objects: dict[tuple[str, str], dict[ObjKey, JSON]] = collections.defaultdict(dict)
        self.types: dict[tuple[str, str, str], resources.ResourceType] = {}
        for t in resources.builtin_types():
            self.types[(t.group, t.version, t.plural)] = t
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._raw_put(self.type_for("", "v1", "namespaces"), {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    # ---------------------------------------------------------------- type registry

    def type_for(self, group: str, version: str, plural: str) -> resources.ResourceType:
        with self.lock:
            t = self.types.get((group, version, plural))
        if t is None:
            raise status.ApiError(404, "the server could not find the requested resource",
                                  "NotFound", {})
        return t

    def find_type(self, api_version: str, kind: str) -> resources.ResourceType:
        group, _, version = api_version.rpartition("/")
        with self.lock:
            for t in self.types.values():
                if t.group == group and t.version == version and t.kind == kind:
                    return t
        raise KeyError(f"no resource type for {api_version} {kind}")

    def group_versions(self) -> dict[str, dict[str, list[resources.ResourceType]]]:
        out: dict[str, dict[str, list[resources.ResourceType]]] = {}
        with self.lock:
            for t in self.types.values():
                out.setdefault(t.group, {}).setdefault(t.version, []).append(t)
        return out

    # ---------------------------------------------------------------- low level

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, type_: str, rt: resources.ResourceType, obj: JSON,
                prev: JSON | None) -> None:
        ns = obj["metadata"].get("namespace", "")
        event = Event(int(obj["metadata"]["resourceVersion"]), type_, rt.key, ns,
                      copy.deepcopy(obj), copy.deepcopy(prev) if prev else None)
        self.events.append(event)
        while len(self.events) > self.history:
            self.compacted_rv = self.events.popleft().rv
        for listener in self.listeners:
            listener(event)
        self.changed.notify_all()

    def compact(self) -> None:
        """Forget every past event: a watch from any older resourceVersion now gets 410."""
        with self.lock:
            self.events.clear()
            self.compacted_rv = self.rv

    def _raw_put(self, rt: resources.ResourceType, obj: JSON) -> JSON:
        """Store an object as given (no validation, status kept): the seeding path."""
        with self.lock:
            obj = copy.deepcopy(obj)
            obj["apiVersion"] = rt.api_version
            obj["kind"] = rt.kind
            meta = obj.setdefault("metadata", {})
            if not rt.namespaced:
                meta.pop("namespace", None)
            elif not meta.get("namespace"):
                meta["namespace"] = "default"
            key = (meta.get("namespace", ""), meta["name"])
            prev = self.objects[rt.key].get(key)
            if prev is None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now())
                meta.setdefault("generation", 1)
            else:
                meta["uid"] = prev["metadata"]["uid"]
                meta["creationTimestamp"] = prev["metadata"]["creationTimestamp"]
                meta.setdefault("generation", prev["metadata"].get("generation", 1))
            meta["resourceVersion"] = str(self._next_rv())
            self.objects[rt.key][key] = obj
            self._record("ADDED" if prev is None else "MODIFIED", rt, obj, prev)
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._install_crd(obj)
            return copy.deepcopy(obj)

    def _install_crd(self, crd: JSON) -> None:
        group = (crd.get("spec") or {}).get("group", "")
        plural = ((crd.get("spec") or {}).get("names") or {}).get("plural", "")
        for k in [k for k, t in self.types.items() if t.custom and t.key == (group, plural)]:
            del self.types[k]
        for t in resources.types_from_crd(crd):
            self.types[(t.group, t.version, t.plural)] = t
        crd.setdefault("status", {})
        crd["status"]["conditions"] = [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now()},
        ]
        names = (crd.get("spec") or {}).get("names") or {}
        crd["status"]["acceptedNames"] = copy.deepcopy(names)
        crd["status"]["storedVersions"] = [
            v.get("name") for v in (crd.get("spec") or {}).get("versions") or []
            if v.get("storage")
        ]

    def _uninstall_crd(self, crd: JSON) -> None:
        group = (crd.get("spec") or {}).get("group", "")
        plural = ((crd.get("spec") or {}).get("names") or {}).get("plural", "")
        for k in [k for k, t in self.types.items() if t.custom and t.key == (group, plural)]:
            rt = self.types.pop(k)
            for key in list(self.objects[rt.key]):
                self._remove(rt, key)

    def _remove(self, rt: resources.ResourceType, key: ObjKey) -> JSON:
        prev = self.objects[rt.key].pop(key)
        gone = copy.deepcopy(prev)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record("DELETED", rt, gone, prev)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._uninstall_crd(prev)
        if rt.key == ("", "namespaces"):
            for (g, p), objs in list(self.objects.items()):
                other = next((t for t in self.types.values() if t.key == (g, p)), None)
                if other is None or not other.namespaced:
                    continue
                for k in [k for k in objs if k[0] == key[1]]:
                    self._remove(other, k)
        return gone

    # ---------------------------------------------------------------- reads

    def sweep(self) -> None:
        """Finish graceful pod deletions whose grace period has passed."""
        if not self._terminating:
            return
        with self.lock:
            moment = time.monotonic()
            pods = self.types[("", "v1", "pods")]
            for key, deadline in list(self._terminating.items()):
                if deadline > moment:
                    continue
                del self._terminating[key]
                obj = self.objects[pods.key].get(key)
                if obj is not None and obj["metadata"].get("deletionTimestamp") and not obj[
                        "metadata"].get("finalizers"):
                    self._remove(pods, key)

    def get(self, rt: resources.ResourceType, namespace: str, name: str) -> JSON:
        self.sweep()
        with self.lock:
            obj = self.objects[rt.key].get((namespace if rt.namespaced else "", name))
            if obj is None:
                raise status.not_found(rt.plural, rt.group, name)
            return self._as_version(rt, obj)

    def _as_version(self, rt: resources.ResourceType, obj: JSON) -> JSON:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        return out

    def select(self, rt: resources.ResourceType, namespace: str | None,
               pred: Callable[[JSON], bool] | None = None, *,
               after: tuple[str, str] | None = None, limit: int = 0
               ) -> tuple[list[JSON], int, int]:
        """Objects in list order ((namespace, name)), those after ``after`` only, at most
        ``limit`` of them (0: all); the current version; how many more matched. Only what
        is returned is copied: a paged list of ten thousand objects costs what its pages
        hold, not ten thousand copies per page."""
        self.sweep()
        with self.lock:
            items: list[JSON] = []
            more = 0
            for key, o in sorted(self.objects[rt.key].items()):
                if (after is not None and key <= after) or (
                        namespace is not None and key[0] != namespace) or (
                        pred is not None and not pred(o)):
                    continue
                if limit and len(items) == limit:
                    more += 1
                else:
                    items.append(self._as_version(rt, o))
            return items, self.rv, more

    def all_objects(self, rt: resources.ResourceType, namespace: str | None) -> Iterator[JSON]:
        with self.lock:
            for (ns, _), o in sorted(self.objects[rt.key].items()):
                if namespace is None or ns == namespace:
                    yield copy.deepcopy(o)

    # ---------------------------------------------------------------- writes

    def _check_namespace(self, rt: resources.ResourceType, namespace: str) -> None:
        if rt.namespaced and ("", namespace) not in self.objects[("", "namespaces")]:
            raise status.namespace_not_found(namespace)

    def _validate(self, rt: resources.ResourceType, obj: JSON, old: JSON | None,
                  subresource: str = "") -> None:
        name = (obj.get("metadata") or {}).get("name") or ""
        if rt.custom:
            if rt.schema:
                schema.default_and_prune(obj, rt.schema, root=True)
                causes = schema.validate(obj, rt.schema)
                if causes:
                    raise status.invalid(rt.kind, rt.group, name, causes)
            return
        validation.check_quantities(obj)
        causes = validation.validate_builtin(obj, old, subresource)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            causes.extend(_crd_causes(obj))
        if causes:
            raise status.invalid(rt.kind, rt.group, name, causes)

    def create(self, rt: resources.ResourceType, namespace: str, body: JSON,
               dry_run: bool = False) -> JSON:
        with self.lock:
            obj = copy.deepcopy(body)
            if not isinstance(obj, dict):
                raise status.bad_request("the body of the request was in an unknown format")
            obj["apiVersion"] = rt.api_version
            obj["kind"] = rt.kind
            meta = obj.setdefault("metadata", {})
            if rt.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise status.bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request")
                meta["namespace"] = namespace
                self._check_namespace(rt, namespace)
            else:
                meta.pop("namespace", None)
            if not meta.get("name") and meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = meta["generateName"] + suffix
            for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "managedFields"):
                meta.pop(k, None)
            if rt.has_status and rt.custom:
                obj.pop("status", None)
            elif rt.has_status:
                obj["status"] = copy.deepcopy(_EMPTY_STATUS.get(rt.kind, {}))
            if rt.key == ("", "pods"):
                spec = obj.get("spec") or {}
                obj["status"] = {"phase": "Pending", "qosClass": validation.qos_class(spec)}
            if rt.key == ("", "namespaces"):
                obj["status"] = {"phase": "Active"}
            self._validate(rt, obj, None)
            key = (meta.get("namespace", ""), meta["name"])
            if key in self.objects[rt.key]:
                raise status.already_exists(rt.plural, rt.group, meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
            if dry_run:
                meta["resourceVersion"] = ""
                meta.pop("resourceVersion")
                return self._as_version(rt, obj)
            meta["resourceVersion"] = str(self._next_rv())
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._install_crd(obj)
            self.objects[rt.key][key] = obj
            self._record("ADDED", rt, obj, None)
            return self._as_version(rt, obj)

    def update(self, rt: resources.ResourceType, namespace: str, name: str, body: JSON,
               subresource: str = "", dry_run: bool = False,
               check_rv: bool = True) -> JSON:
        """PUT semantics; PATCH computes the full object and comes through here too."""
        with self.lock:
            key = (namespace if rt.namespaced else "", name)
            old = self.objects[rt.key].get(key)
            if old is None:
                raise status.not_found(rt.plural, rt.group, name)
            new = copy.deepcopy(body)
            if not isinstance(new, dict):
                raise status.bad_request("the body of the request was in an unknown format")
            meta = new.setdefault("metadata", {})
            if meta.get("name") and meta["name"] != name:
                raise status.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the "
                    f"URL ({name})")
            wanted_rv = meta.get("resourceVersion")
            if check_rv and wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise status.stale(rt.plural, rt.group, name)
            if check_rv and not wanted_rv and rt.custom and not subresource:
                raise status.invalid(rt.kind, rt.group, name, [status.invalid_value(
                    "metadata.resourceVersion", "0x0", "must be specified for an update")])
            new["apiVersion"] = rt.api_version
            new["kind"] = rt.kind
            if subresource == "status":
                merged = copy.deepcopy(old)
                if "status" in new:
                    merged["status"] = new["status"]
                else:
                    merged.pop("status", None)
                if not rt.custom:
                    # Built-in status strategies keep labels/annotations edits out too.
                    pass
                new = merged
                meta = new["metadata"]
            else:
                if rt.has_status and subresource != "resize":
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
                # Immutable / server-owned metadata.
                for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                          "deletionGracePeriodSeconds"):
                    if k in old["metadata"]:
                        meta[k] = old["metadata"][k]
                    else:
                        meta.pop(k, None)
                meta["name"] = name
                if rt.namespaced:
                    meta["namespace"] = namespace
                else:
                    meta.pop("namespace", None)
                if old["metadata"].get("deletionTimestamp"):
                    added = set(meta.get("finalizers") or []) - set(
                        old["metadata"].get("finalizers") or [])
                    if added:
                        raise status.forbidden(
                            rt.plural, rt.group, name,
                            "no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)}")
            self._validate(rt, new, old, subresource)
            if rt.key == ("", "pods") and subresource != "status":
                new.setdefault("status", {})["qosClass"] = validation.qos_class(
                    new.get("spec") or {})
            if _spec_changed(rt, old, new):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            meta.pop("resourceVersion", None)
            if _strip_rv(new) == _strip_rv(old):
                # A no-op write: the real server stores nothing and keeps the rv.
                return self._as_version(rt, old)
            if dry_run:
                meta["resourceVersion"] = old["metadata"]["resourceVersion"]
                return self._as_version(rt, new)
            meta["resourceVersion"] = str(self._next_rv())
            if old["metadata"].get("deletionTimestamp") and not meta.get("finalizers"):
                self.objects[rt.key][key] = new
                return self._as_version(rt, self._remove(rt, key))
            self.objects[rt.key][key] = new
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._install_crd(new)
            self._record("MODIFIED", rt, new, old)
            return self._as_version(rt, new)

    def delete(self, rt: resources.ResourceType, namespace: str, name: str,
               options: JSON | None = None, dry_run: bool = False) -> tuple[JSON, bool]:
        """Returns (object after the call, still_present)."""
        with self.lock:
            key = (namespace if rt.namespaced else "", name)
            old = self.objects[rt.key].get(key)
            if old is None:
                raise status.not_found(rt.plural, rt.group, name)
            pre = (options or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise status.conflict(
                    rt.plural, rt.group, name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {old['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"][
                    "resourceVersion"]:
                raise status.conflict(
                    rt.plural, rt.group, name,
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{old['metadata']['resourceVersion']}")
            grace = (options or {}).get("gracePeriodSeconds")
            grace = self.pod_grace_seconds if grace is None else float(grace)
            phase = (old.get("status") or {}).get("phase")
            if (rt.key == ("", "pods") and grace > 0 and phase not in ("Succeeded", "Failed")
                    and not old["metadata"].get("deletionTimestamp")):
                new = copy.deepcopy(old)
                stamp = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
                new["metadata"]["deletionTimestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
                new["metadata"]["deletionGracePeriodSeconds"] = int(grace)
                if dry_run:
                    return self._as_version(rt, new), True
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self.objects[rt.key][key] = new
                self._record("MODIFIED", rt, new, old)
                self._terminating[key] = time.monotonic() + grace
                return self._as_version(rt, new), True
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return self._as_version(rt, old), True
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if dry_run:
                    return self._as_version(rt, new), True
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self.objects[rt.key][key] = new
                self._record("MODIFIED", rt, new, old)
                return self._as_version(rt, new), True
            if dry_run:
                return self._as_version(rt, old), False
            return self._as_version(rt, self._remove(rt, key)), False

    @staticmethod
    def returns_object(rt: resources.ResourceType) -> bool:
        return rt.custom or rt.key in _RETURNS_OBJECT

    # ---------------------------------------------------------------- watch support

    def events_since(self, rv: int) -> list[Event]:
        self.sweep()
        with self.lock:
            if rv < self.compacted_rv:
                raise status.gone(f"too old resource version: {rv} ({self.compacted_rv + 1})")
            return [e for e in self.events if e.rv > rv]


def _strip_rv(obj: JSON) -> JSON:
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("managedFields", None)
    return out


def _spec_changed(rt: resources.ResourceType, old: JSON, new: JSON) -> bool:
    """generation moves when anything but metadata (and status, if a subresource) changes."""
    skip = {"metadata", "status"} if rt.has_status else {"metadata"}
    if not rt.custom and not rt.has_status:
        skip = {"metadata", "status"}
    a = {k: v for k, v in old.items() if k not in skip | {"apiVersion", "kind"}}
    b = {k: v for k, v in new.items() if k not in skip | {"apiVersion", "kind"}}
    return a != b


def _crd_causes(crd: JSON) -> list[JSON]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[JSON] = []
    if not spec.get("group"):
        causes.append(status.required("spec.group"))
    if not names.get("plural"):
        causes.append(status.required("spec.names.plural"))
    if not names.get("kind"):
        causes.append(status.required("spec.names.kind"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(status.not_supported("spec.scope", spec.get("scope", ""),
                                           ["Cluster", "Namespaced"]))
    if not spec.get("versions"):
        causes.append(status.required("spec.versions"))
    name = (crd.get("metadata") or {}).get("name", "")
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        causes.append(status.invalid_value(
            "metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    return causes
