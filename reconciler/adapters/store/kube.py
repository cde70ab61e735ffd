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
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.domain import clock, errors, model, retry

GROUP = "dakr.devzero.io"
VERSION = "v1alpha1"
PLURALS = {model.WORKLOAD: "workloadrecommendations",
           model.NODE_GROUP: "nodegrouprecommendations"}
NAMESPACED = {model.WORKLOAD: True, model.NODE_GROUP: False}
CREATED_ANNOTATION = f"{GROUP}/created"
ID_LABEL = f"{GROUP}/recommendation-id"
JSON = dict[str, Any]
# An alias: inside KubeStore the name ``list`` is the Store method.
_Anys = list[Any]
_Records = list[store.Record]
_Objects = list[JSON]

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
        # (kind, id) -> (namespace, name) of every object seen: an object may have any
        # valid name (created with kubectl, say), so the id alone does not locate it.
        self._where: dict[tuple[str, str], tuple[str, str]] = {}

    # ------------------------------------------------------------------ helpers

    def _list_objects(self, kind: str, namespace: str = "",
                      **query: Any) -> tuple[list[JSON], str]:
        items, rv, _ = self._list_page(kind, namespace, **query)
        return items, rv

    def _list_page(self, kind: str, namespace: str = "",
                   **query: Any) -> tuple[list[JSON], str, str]:
        """One LIST answer: its items, its resourceVersion and its continue token."""
        plural = _plural(kind)
        c = self.kube.custom
        ns = (namespace or self.namespace or "") if NAMESPACED[kind] else ""
        if ns:
            answer = self.kube.call(f"list {plural} in {ns}", c.list_namespaced_custom_object,
                                    GROUP, VERSION, ns, plural, **query)
        else:
            answer = self.kube.call(f"list {plural}", c.list_cluster_custom_object,
                                    GROUP, VERSION, plural, **query)
        items = list(answer.get("items") or [])
        for it in items:
            it.setdefault("kind", kind)
            it.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        meta = answer.get("metadata") or {}
        return items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or "")

    def _get_object(self, kind: str, rec_id: str, namespace: str = "") -> JSON | None:
        """The object whose ``spec.recommendationId`` is ``rec_id``, found by what it is:
        where it was last seen, else under the name derived from the id, else by the id
        label this store sets, else by scanning the kind's objects (one created with
        kubectl may have any name and no label). ``namespace``: where it must be, when
        known (a WorkloadRecommendation lives in its target's namespace)."""
        plural, c = _plural(kind), self.kube.custom
        ns_hint = (namespace or self.namespace or "") if NAMESPACED[kind] else ""
        where = self._where.get((kind, rec_id))
        if where is None and (ns_hint or not NAMESPACED[kind]):
            where = (ns_hint, object_name(rec_id))
        if where is not None:
            ns, name = where
            try:
                if ns:
                    obj: JSON = self.kube.call(f"get {plural} {ns}/{name}",
                                               c.get_namespaced_custom_object, GROUP, VERSION,
                                               ns, plural, name)
                else:
                    obj = self.kube.call(f"get {plural} {name}", c.get_cluster_custom_object,
                                         GROUP, VERSION, plural, name)
            except errors.NotFoundError:
                obj = {}
            if (obj.get("spec") or {}).get("recommendationId", rec_id) == rec_id and obj:
                obj.setdefault("kind", kind)
                return obj
            self._where.pop((kind, rec_id), None)
        queries: list[dict[str, Any]] = []
        if _LABEL_VALUE.match(rec_id) and len(rec_id) <= 63:
            queries.append({"label_selector": f"{ID_LABEL}={rec_id}"})
        if NAMESPACED[kind] and not ns_hint:
            queries.append({"field_selector": f"metadata.name={object_name(rec_id)}"})
        queries.append({})  # named otherwise and unlabelled (kubectl): look at them all
        for query in queries:
            items, _ = self._list_objects(kind, namespace=ns_hint, **query)
            found = [o for o in items if (o.get("spec") or {}).get("recommendationId") == rec_id]
            if found:
                found.sort(key=_order)
                self._remember(to_record(found[0]))
                return found[0]
        return None

    def _remember(self, rec: store.Record) -> store.Record:
        self._where[(rec.kind, rec.id)] = (rec.namespace, rec.name)
        return rec

    def _locate(self, kind: str, rec_id: str) -> tuple[str, str]:
        """(namespace, name) of the record's object, read when not yet known."""
        where = self._where.get((kind, rec_id))
        if where is not None:
            return where
        cur = self._get_object(kind, rec_id)
        if cur is None:
            raise errors.NotFoundError(f"{kind} {rec_id} not found")
        return str(cur["metadata"].get("namespace") or ""), str(cur["metadata"]["name"])

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
        and sends no write. A new object is named after the id (``name`` is not used); an
        existing one is found by its id, whatever its name.

        ``current``: the record as the caller last read it (None: known absent), which
        saves the read; a wrong guess only costs a conflict and a re-read.
        ``finalizers``: set on the object when this call creates it (direct mode's rollback
        finalizer, so that applying later needs no separate metadata write).
        """
        plural = _plural(kind)

        def write(attempt: int) -> store.UpsertResult:
            if attempt == 0 and current is not store.UNREAD:
                cur = None if current is None else self._guess(kind, current)
            else:
                cur = self._get_object(kind, rec_id, namespace)
            if cur is None:
                # Created meanwhile by another writer: a conflict, read and compare again.
                created = self._create(kind, rec_id, namespace, spec, finalizers)
                return store.UpsertResult(self._remember(to_record(created)), True, True)
            rec = self._remember(to_record(cur))
            if rec.spec == spec:
                return store.UpsertResult(rec, False, False)
            body = dict(cur)
            body["spec"] = spec
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
            return store.UpsertResult(self._remember(to_record(new)), False, True)

        return retry.on_conflict(write, f"{kind} {rec_id} (upsert)")

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
        ns, name = self._locate(kind, rec_id)
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
        plural = _plural(kind)
        ns, name = self._locate(kind, rec_id)
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

    def _pages(self, kind: str, page_size: int) -> Iterator[tuple[_Objects, str]]:
        """LIST with ``limit`` and ``continue``, as client-go's pager does: each answer's
        objects and the list's resourceVersion. An expired continue token (410) raises
        ``errors.ExpiredError``: list again from the start."""
        query: dict[str, Any] = {"limit": page_size}
        while True:
            items, rv, token = self._list_page(kind, **query)
            yield items, rv
            if not token:
                return
            query["_continue"] = token

    def list_records(self, kind: str) -> tuple[_Records, str]:
        """See ``store.Store.list_records``: every page, and the list's resourceVersion."""
        items: _Objects = []
        rv = ""
        for page, page_rv in self._pages(kind, store.PAGE_SIZE):
            items.extend(page)
            rv = page_rv
        items.sort(key=_order)
        return [self._remember(to_record(o)) for o in items], rv

    def list_record_pages(self, kind: str, page_size: int = store.PAGE_SIZE
                          ) -> Iterator[tuple[_Records, str]]:
        """See ``store.Watchable.list_record_pages``: ``_pages``, so ten thousand objects
        never sit in memory as one answer; each page in creation order."""
        for items, rv in self._pages(kind, page_size):
            items.sort(key=_order)
            yield [self._remember(to_record(o)) for o in items], rv

    def watch_records(self, kind: str, since: str, timeout: float) -> _KubeWatch:
        """See ``store.Store.watch_records``: a Kubernetes watch from ``since`` with
        bookmarks, which the server ends after ``timeout``; a connection silent for longer
        than that (a stalled watch) ends with a read timeout instead of hanging. 410 Gone
        raises ``errors.ExpiredError``."""
        plural = _plural(kind)
        c = self.kube.custom
        fn: Any = c.list_cluster_custom_object
        args: tuple[str, ...] = (GROUP, VERSION, plural)
        if NAMESPACED[kind] and self.namespace:
            fn = c.list_namespaced_custom_object
            args = (GROUP, VERSION, self.namespace, plural)
        return _KubeWatch(self, kind, lambda on_open: self.kube.watch_lines(
            f"watch {plural}", fn, *args, timeout=timeout, on_open=on_open,
            resource_version=since))

    def close(self) -> None:
        if self._owns_client:
            self.kube.api_client.close()


class _KubeWatch:
    """One watch request's events as store events; ``close`` ends the stream at once."""

    def __init__(self, st: KubeStore, kind: str,
                 start: Callable[[Callable[[Any], None]], Iterator[JSON]]) -> None:
        self._store, self._kind, self._start = st, kind, start
        self._resp: Any = None
        self._closed = threading.Event()

    def _opened(self, resp: Any) -> None:
        self._resp = resp
        if self._closed.is_set():
            kube.close_stream(resp)

    def close(self) -> None:
        self._closed.set()
        if self._resp is not None:
            kube.close_stream(self._resp)

    def __iter__(self) -> Iterator[store.Event]:
        for ev in self._start(self._opened):
            if self._closed.is_set():
                return
            typ = str(ev.get("type", ""))
            obj = ev.get("object") or {}
            if typ == "ERROR":
                if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                    why = obj.get("message", "resource version too old")
                    raise errors.ExpiredError(f"watch {self._kind}: {why}")
                raise errors.TemporaryError(f"watch {self._kind} failed: "
                                            f"{obj.get('message', obj)}")
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            if typ == store.BOOKMARK:
                yield store.Event(store.BOOKMARK, None, rv)
            elif typ in (store.ADDED, store.MODIFIED, store.DELETED):
                obj.setdefault("kind", self._kind)
                rec = to_record(obj)
                if typ == store.DELETED:
                    self._store._where.pop((rec.kind, rec.id), None)
                else:
                    self._store._remember(rec)
                yield store.Event(typ, rec, rv)
