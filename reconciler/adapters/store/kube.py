"""The recommendation store as custom resources in the cluster.

``WorkloadRecommendation`` objects are namespaced (the namespace of their target),
``NodeGroupRecommendation`` objects cluster-scoped; group ``dakr.devzero.io/v1alpha1``.
The object name is the recommendation id itself (ids are DNS-1123 subdomains already), or,
for an id that is not, a readable prefix plus a hash of the id, so ``get(kind, id)`` never
needs an index: the name is a function of the id. ``spec.recommendationId`` keeps the id.

Semantics map onto the API server's own: ``resource_version`` is the object's
resourceVersion, ``generation`` the server's (bumped on spec changes only), status is written
through the status subresource with the resourceVersion read (compare-and-swap: a stale one
is a 409, raised as ``ConflictError``), and ``watch`` is a Kubernetes watch from a
resourceVersion. Every request goes through ``kube.Kube`` (rate limit, retries, error
translation).

Creation order (what ``list`` sorts by) is ``metadata.creationTimestamp`` refined by the
``dakr.devzero.io/created`` annotation (microseconds, written at creation): the server's
timestamp only has second resolution.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.domain import clock, errors, model

GROUP = "dakr.devzero.io"
VERSION = "v1alpha1"
PLURALS = {model.WORKLOAD: "workloadrecommendations",
           model.NODE_GROUP: "nodegrouprecommendations"}
NAMESPACED = {model.WORKLOAD: True, model.NODE_GROUP: False}
CREATED_ANNOTATION = f"{GROUP}/created"
ID_LABEL = f"{GROUP}/recommendation-id"
JSON = dict[str, Any]
# Aliases: inside KubeStore the name ``list`` is the Store method.
_Anys = list[Any]
_Kinds = list[str]
_Seen = list[tuple[int, store.Change]]

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def object_name(rec_id: str) -> str:
    """The object name for a recommendation id: the id when it is a valid name, else a safe
    prefix of it plus 10 hex digits of its SHA-256 (different ids never share a name in
    practice, and the same id always maps to the same name)."""
    if len(rec_id) <= 253 and _DNS1123_SUBDOMAIN.match(rec_id):
        return rec_id
    safe = re.sub(r"[^a-z0-9.-]+", "-", rec_id.lower())
    safe = re.sub(r"[-.]{2,}", "-", safe).strip("-.")[:200]
    digest = hashlib.sha256(rec_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}" if safe else f"rec-{digest}"


def _plural(kind: str) -> str:
    try:
        return PLURALS[kind]
    except KeyError:
        raise errors.PermanentError(
            f"unknown recommendation kind {kind!r}: expected one of {', '.join(PLURALS)}"
        ) from None


def to_record(obj: JSON) -> store.Record:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return store.Record(
        kind=str(obj.get("kind", "")), id=str(spec.get("recommendationId", meta.get("name"))),
        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name", "")),
        spec=spec, status=obj.get("status") or {},
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation", 1)),
        created_at=str(meta.get("creationTimestamp", "")),
        finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
        uid=str(meta.get("uid", "")), deleting=bool(meta.get("deletionTimestamp")))


def _order(obj: JSON) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("creationTimestamp", "")),
            str((meta.get("annotations") or {}).get(CREATED_ANNOTATION, "")),
            str(meta.get("name", "")))


class KubeStore:
    """``store.Store`` over WorkloadRecommendation / NodeGroupRecommendation objects."""

    def __init__(self, api: kube.Kube, *, namespace: str | None = None,
                 owns_client: bool = False) -> None:
        """``namespace``: keep namespaced records to this one namespace (an operator
        installed per namespace); None reads and watches them across the cluster."""
        self.kube = api
        self.namespace = namespace
        self._owns_client = owns_client
        self._ns: dict[str, str] = {}  # id -> namespace of WorkloadRecommendations seen

    # ------------------------------------------------------------------ helpers

    def _list_objects(self, kind: str, **query: Any) -> tuple[list[JSON], str]:
        plural = _plural(kind)
        c = self.kube.custom
        if NAMESPACED[kind] and self.namespace:
            answer = self.kube.call(f"list {plural}", c.list_namespaced_custom_object,
                                    GROUP, VERSION, self.namespace, plural, **query)
        else:
            answer = self.kube.call(f"list {plural}", c.list_cluster_custom_object,
                                    GROUP, VERSION, plural, **query)
        items = list(answer.get("items") or [])
        for it in items:
            it.setdefault("kind", kind)
            it.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        rv = str((answer.get("metadata") or {}).get("resourceVersion", ""))
        return items, rv

    def _get_object(self, kind: str, rec_id: str) -> JSON | None:
        plural, name = _plural(kind), object_name(rec_id)
        c = self.kube.custom
        if not NAMESPACED[kind]:
            try:
                obj: JSON = self.kube.call(f"get {plural} {name}", c.get_cluster_custom_object,
                                           GROUP, VERSION, plural, name)
            except errors.NotFoundError:
                return None
            return obj
        ns = self._ns.get(rec_id) or self.namespace
        if ns:
            try:
                obj = self.kube.call(f"get {plural} {ns}/{name}",
                                     c.get_namespaced_custom_object, GROUP, VERSION, ns,
                                     plural, name)
            except errors.NotFoundError:
                return None
            return obj
        # Unknown namespace: one list across namespaces, by name.
        items, _ = self._list_objects(kind, field_selector=f"metadata.name={name}")
        items = [o for o in items if (o.get("spec") or {}).get("recommendationId") == rec_id]
        if not items:
            return None
        self._ns[rec_id] = items[0]["metadata"]["namespace"]
        return items[0]

    def _remember(self, rec: store.Record) -> store.Record:
        if rec.kind == model.WORKLOAD:
            self._ns[rec.id] = rec.namespace
        return rec

    # ------------------------------------------------------------------ Store protocol

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        obj = self._get_object(kind, rec_id)
        return None if obj is None else self._remember(to_record(obj))

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        kinds = [kind] if kind is not None else list(PLURALS)
        objs: list[JSON] = []
        for k in kinds:
            objs.extend(self._list_objects(k)[0])
        objs.sort(key=_order)
        out = [self._remember(to_record(o)) for o in objs]
        return [r for r in out if phase is None or r.phase == phase]

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (),
               current: Any = store.UNREAD) -> store.UpsertResult:
        """Create, or replace a changed spec (the status is kept); the same spec is a replay
        and sends no write. ``name`` is ignored: the object name derives from the id.

        ``current``: the record as the caller last read it (None: known absent), which
        saves the read; a wrong guess only costs a conflict and a re-read.
        ``finalizers``: set on the object when this call creates it (direct mode's rollback
        finalizer, so that applying later needs no separate metadata write).
        """
        plural = _plural(kind)
        for attempt in range(5):
            if attempt == 0 and current is not store.UNREAD:
                cur = None if current is None else self._guess(kind, current)
            else:
                cur = self._get_object(kind, rec_id)
            if cur is None:
                try:
                    created = self._create(kind, rec_id, namespace, spec, finalizers)
                except kube.Conflict:  # created meanwhile by another writer: compare
                    continue
                return store.UpsertResult(self._remember(to_record(created)), True, True)
            rec = self._remember(to_record(cur))
            if rec.spec == spec:
                return store.UpsertResult(rec, False, False)
            body = dict(cur)
            body["spec"] = spec
            try:
                if NAMESPACED[kind]:
                    new = self.kube.call(
                        f"update {plural} {rec.namespace}/{rec.name}",
                        self.kube.custom.replace_namespaced_custom_object, GROUP, VERSION,
                        rec.namespace, plural, rec.name, body)
                else:
                    new = self.kube.call(
                        f"update {plural} {rec.name}",
                        self.kube.custom.replace_cluster_custom_object, GROUP, VERSION,
                        plural, rec.name, body)
            except errors.ConflictError:
                continue  # changed since read: read again and compare again
            return store.UpsertResult(self._remember(to_record(new)), False, True)
        raise errors.ConflictError(f"{kind} {rec_id} keeps changing: upsert gave up")

    @staticmethod
    def _guess(kind: str, rec: store.Record) -> JSON:
        meta: JSON = {"name": rec.name, "resourceVersion": rec.resource_version,
                      "generation": rec.generation, "creationTimestamp": rec.created_at}
        if rec.namespace:
            meta["namespace"] = rec.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta,
                "spec": rec.spec, "status": rec.status}

    def _create(self, kind: str, rec_id: str, namespace: str, spec: dict[str, Any],
                finalizers: Sequence[str] = ()) -> JSON:
        plural = _plural(kind)
        now = clock.rfc3339(micro=True)
        meta: JSON = {"name": object_name(rec_id), "annotations": {CREATED_ANNOTATION: now}}
        if finalizers:
            meta["finalizers"] = list(finalizers)
        if _LABEL_VALUE.match(rec_id) and len(rec_id) <= 63:
            meta["labels"] = {ID_LABEL: rec_id}
        body: JSON = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta,
                      "spec": spec}
        c = self.kube.custom
        if NAMESPACED[kind]:
            ns = namespace or self.namespace or "default"
            meta["namespace"] = ns
            out: JSON = self.kube.call(f"create {plural} {ns}/{meta['name']}",
                                       c.create_namespaced_custom_object, GROUP, VERSION, ns,
                                       plural, body)
        else:
            out = self.kube.call(f"create {plural} {meta['name']}",
                                 c.create_cluster_custom_object, GROUP, VERSION, plural, body)
        return out

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        plural = _plural(kind)
        ns = self._ns.get(rec_id, self.namespace or "") if NAMESPACED[kind] else ""
        if NAMESPACED[kind] and not ns:
            cur = self._get_object(kind, rec_id)
            if cur is None:
                raise errors.NotFoundError(f"{kind} {rec_id} not found")
            ns = cur["metadata"]["namespace"]
        name = object_name(rec_id)
        meta: JSON = {"name": name, "resourceVersion": resource_version}
        if ns:
            meta["namespace"] = ns
        body: JSON = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta,
                      "status": status}
        c = self.kube.custom
        try:
            if ns:
                new: JSON = self.kube.call(
                    f"update {plural}/status {ns}/{name}",
                    c.replace_namespaced_custom_object_status, GROUP, VERSION, ns, plural,
                    name, body)
            else:
                new = self.kube.call(f"update {plural}/status {name}",
                                     c.replace_cluster_custom_object_status, GROUP, VERSION,
                                     plural, name, body)
        except errors.NotFoundError as e:
            raise errors.NotFoundError(f"{kind} {rec_id} not found: {e}") from e
        except kube.Conflict as e:
            cur = self._get_object(kind, rec_id)
            current = cur["metadata"]["resourceVersion"] if cur else "(deleted)"
            raise errors.ConflictError(
                f"{kind} {rec_id}: status written from resourceVersion {resource_version}, "
                f"but the object is at {current} (another writer got there first)") from e
        return self._remember(to_record(new))

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> store.Record | None:
        """See ``store.Store.set_finalizers``: a JSON Patch guarded on the resourceVersion
        (our own object's metadata, so the version is the right guard). None when the
        server deleted the object (the last finalizer of an object being deleted went)."""
        plural, name = _plural(kind), object_name(rec_id)
        ns = ""
        if NAMESPACED[kind]:
            ns = self._ns.get(rec_id, self.namespace or "")
            if not ns:
                cur = self._get_object(kind, rec_id)
                if cur is None:
                    raise errors.NotFoundError(f"{kind} {rec_id} not found")
                ns = cur["metadata"]["namespace"]
        ops: _Anys = [{"op": "test", "path": "/metadata/resourceVersion",
                       "value": resource_version},
                      {"op": "add", "path": "/metadata/finalizers", "value": list(finalizers)}]
        c = self.kube.custom
        kw: JSON = {"_content_type": "application/json-patch+json"}
        if ns:
            new: JSON = self.kube.call(
                f"patch {plural} {ns}/{name} finalizers", c.patch_namespaced_custom_object,
                GROUP, VERSION, ns, plural, name, ops, guarded=True, **kw)
        else:
            new = self.kube.call(f"patch {plural} {name} finalizers",
                                 c.patch_cluster_custom_object, GROUP, VERSION, plural, name,
                                 ops, guarded=True, **kw)
        if not new.get("metadata") or new.get("kind") == "Status":
            return None
        new.setdefault("kind", kind)
        return self._remember(to_record(new))

    # ------------------------------------------------------------------ watch

    def watch(self, since: str = "", timeout: float = 0.0) -> Iterator[store.Change]:
        """Changes after ``since`` in resourceVersion order, across both kinds.

        What is already there is read up to the newest object version seen by one LIST per
        kind (so the call knows when it has caught up instead of waiting on a quiet stream);
        when nothing is, it waits up to ``timeout`` for the first new change. ``since=""``
        replays the server's whole event history, or, when the server no longer holds it
        (410 Gone), reports the current objects as ADDED, as an informer would.
        Resource versions are compared as integers, which holds for etcd revisions.
        """
        start = since or "1"
        lists = {k: self._list_objects(k) for k in PLURALS}
        newest = {k: max((int(o["metadata"]["resourceVersion"]) for o in objs), default=0)
                  for k, (objs, _) in lists.items()}
        list_rv = max(int(rv or 0) for _, rv in lists.values())
        pending = [k for k in PLURALS if newest[k] > int(start)]
        seen: _Seen = []
        if pending:
            try:
                seen = self._catch_up(pending, start, newest)
            except errors.ReconcilerError as e:
                text = str(e).lower()
                if since or ("too old" not in text and "expired" not in text):
                    raise
                seen = [(int(o["metadata"]["resourceVersion"]),
                         store.Change("ADDED", to_record(o)))
                        for objs, _ in lists.values() for o in objs]
                seen.sort(key=lambda p: _order_key(p[1]))
                for _, ch in seen:
                    yield ch
                return
        seen.sort(key=lambda p: p[0])
        if seen:
            for _, ch in seen:
                yield ch
            return
        if timeout <= 0:
            return
        yield from self._wait_first(str(max(list_rv, int(start))), timeout)

    def _stream(self, kind: str, rv: str, timeout: float, out: queue.Queue[Any],
                stop: threading.Event, opened: _Anys) -> None:
        plural = _plural(kind)
        c = self.kube.custom
        try:
            fn: Any = c.list_cluster_custom_object
            args: tuple[str, ...] = (GROUP, VERSION, plural)
            if NAMESPACED[kind] and self.namespace:
                fn = c.list_namespaced_custom_object
                args = (GROUP, VERSION, self.namespace, plural)

            def on_open(resp: Any) -> None:
                opened.append(resp)
                if stop.is_set():
                    kube.close_stream(resp)

            for ev in self.kube.watch_lines(f"watch {plural}", fn, *args, timeout=timeout,
                                            on_open=on_open, resource_version=rv):
                if stop.is_set():
                    break
                out.put(("event", kind, ev))
        except Exception as e:  # reported to the consuming thread, which raises it
            out.put(("error", kind, e))
        out.put(("end", kind, None))

    def _run_streams(self, kinds: _Kinds, rv: str, timeout: float,
                     ) -> tuple[queue.Queue[Any], _Streams]:
        q: queue.Queue[Any] = queue.Queue()
        streams = _Streams()
        streams.threads = [
            threading.Thread(target=self._stream,
                             args=(k, rv, timeout, q, streams.stop, streams.opened),
                             daemon=True, name=f"kubestore-watch-{k}") for k in kinds]
        for t in streams.threads:
            t.start()
        return q, streams

    def _catch_up(self, kinds: _Kinds, start: str, newest: dict[str, int]) -> _Seen:
        q, streams = self._run_streams(kinds, start, 30.0)
        got: _Seen = []
        open_kinds: set[str] = set(kinds)
        deadline = time.monotonic() + 30.0
        try:
            while open_kinds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.TemporaryError("watch did not catch up within 30s")
                what, kind, payload = q.get(timeout=left)
                if what == "error":
                    raise payload
                if what == "end":
                    open_kinds.discard(kind)
                    continue
                change = _change(payload)
                if change is None:
                    continue
                rv = change[0]
                if rv > int(start):
                    got.append(change)
                if rv >= newest[kind]:
                    open_kinds.discard(kind)
        except queue.Empty:
            raise errors.TemporaryError("watch did not catch up within 30s") from None
        finally:
            streams.close()
        return got

    def _wait_first(self, rv: str, timeout: float) -> Iterator[store.Change]:
        q, streams = self._run_streams(list(PLURALS), rv, timeout)
        deadline = time.monotonic() + timeout
        found: _Seen = []
        ended: set[str] = set()
        try:
            while not found and len(ended) < len(PLURALS):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    what, kind, payload = q.get(timeout=left)
                except queue.Empty:
                    break
                if what == "error":
                    raise payload
                if what == "end":
                    ended.add(kind)
                    continue
                change = _change(payload)
                if change is not None:
                    found.append(change)
            while True:  # whatever else already arrived with it
                try:
                    what, kind, payload = q.get_nowait()
                except queue.Empty:
                    break
                change = _change(payload) if what == "event" else None
                if change is not None:
                    found.append(change)
        finally:
            streams.close()
        found.sort(key=lambda p: p[0])
        for _, ch in found:
            yield ch

    def close(self) -> None:
        if self._owns_client:
            self.kube.api_client.close()


class _Streams:
    """The watch threads of one ``watch`` call, closed together."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.opened: list[Any] = []
        self.threads: list[threading.Thread] = []

    def close(self) -> None:
        self.stop.set()
        for resp in list(self.opened):
            kube.close_stream(resp)
        for t in self.threads:
            t.join(5)


def _order_key(ch: store.Change) -> tuple[str, str]:
    return (ch.record.created_at, ch.record.name)


def _change(ev: JSON) -> tuple[int, store.Change] | None:
    """A watch event as a store change; None for bookmarks and deletions (the store has no
    delete). A watch ERROR event (410 Gone, ...) raises."""
    typ = ev.get("type")
    obj = ev.get("object") or {}
    if typ == "ERROR":
        raise errors.TemporaryError(f"watch failed: {obj.get('message', obj)}")
    if typ not in ("ADDED", "MODIFIED"):
        return None
    return int(obj["metadata"]["resourceVersion"]), store.Change(str(typ), to_record(obj))
