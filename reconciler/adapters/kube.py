"""The one place that talks to the Kubernetes API (the official ``kubernetes`` client).

Everything Kubernetes-facing goes through ``Kube.call``: a shared client-side rate limit
(token bucket), bounded retries with exponential backoff and full jitter for what may
succeed later (429, 5xx, timeouts, dropped connections), and the translation of every
``ApiException`` / transport error into ``reconciler.errors`` types. Callers therefore only
decide between three outcomes: it worked, someone else wrote first (``ConflictError``:
re-read and re-decide, never blindly retry), or it cannot work (``PermanentError``, with
the server's message and field causes).

Reads go through a per-instance cache: the first read of a kind in a namespace LISTs it once,
later reads of that kind and namespace are answered from memory, and every write answer
replaces the cached object. A stale cache entry cannot cause a lost update because every
workload write is a JSON Patch guarded by ``test`` operations on the values the plan read:
the server refuses it (422) and the caller re-reads through ``refresh``.

Responses are read as raw JSON (``_preload_content=False``): policy and the planner see the
object exactly as the server sends it, not the client's model classes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3

from reconciler.adapters import http
from reconciler.domain import clock, errors

log = logging.getLogger(__name__)

JSON = dict[str, Any]
FIELD_MANAGER = "dakr-reconciler"
WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                    "DaemonSet": "daemonsets"}
SCALABLE = ("Deployment", "StatefulSet")  # DaemonSets have no scale subresource
HPA = "HorizontalPodAutoscaler"


# --------------------------------------------------------------------------- errors


class _ApiDetails:
    """What the server said: HTTP code, Status reason and field causes."""

    code: int = 0
    reason: str = ""
    causes: list[JSON]

    def _set(self, code: int, reason: str, causes: list[JSON] | None) -> None:
        self.code, self.reason, self.causes = code, reason, list(causes or [])


class Conflict(errors.ConflictError, _ApiDetails):
    """409: another writer changed the object (stale resourceVersion) or it already exists."""

    def __init__(self, message: str, code: int = 409, reason: str = "Conflict",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


class TestFailed(errors.ConflictError, _ApiDetails):
    """A JSON Patch ``test`` operation failed: the values we read are no longer there."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, message: str, code: int = 422, reason: str = "Invalid",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


class Unavailable(errors.TemporaryError, _ApiDetails):
    """429, 5xx, a timeout or a broken connection, still failing after the bounded retries."""

    def __init__(self, message: str, code: int = 0, reason: str = "",
                 causes: list[JSON] | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)
        self.retry_after = retry_after


class Forbidden(errors.PermanentError, _ApiDetails):
    def __init__(self, message: str, code: int = 403, reason: str = "Forbidden",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


class NotFound(errors.NotFoundError, _ApiDetails):
    def __init__(self, message: str, code: int = 404, reason: str = "NotFound",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


class Expired(errors.ExpiredError, _ApiDetails):
    """410 Gone: the resourceVersion asked for is older than the history the server keeps."""

    def __init__(self, message: str, code: int = 410, reason: str = "Expired",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


class Invalid(errors.PermanentError, _ApiDetails):
    """422 (or another 4xx): the server refuses the request itself; causes name the fields."""

    def __init__(self, message: str, code: int = 422, reason: str = "Invalid",
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self._set(code, reason, causes)


def _status_body(e: kubernetes.client.ApiException) -> JSON:
    try:
        body = json.loads(e.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def translate(e: BaseException, what: str, *, guarded: bool = False) -> errors.ReconcilerError:
    """Map a client or transport error to a reconciler error; ``what`` names the request.

    ``guarded``: the request was a JSON Patch with ``test`` operations, so a 422 without
    field causes (the generic answer the server gives for a failed operation) means a test
    failed: a concurrent change, not an invalid request.
    """
    if isinstance(e, kubernetes.client.ApiException):
        body = _status_body(e)
        code = int(e.status or 0)
        reason = str(body.get("reason") or e.reason or "")
        message = str(body.get("message") or e.reason or "")
        causes = list((body.get("details") or {}).get("causes") or [])
        text = f"{what}: {message}" if message else f"{what}: HTTP {code}"
        if causes:
            text += " (" + "; ".join(
                f"{c.get('field', '')}: {c.get('message', c.get('reason', ''))}".lstrip(": ")
                for c in causes) + ")"
        if code == 409:
            return Conflict(text, code, reason, causes)
        if code == 422 and guarded and not causes:
            return TestFailed(text, code, reason, causes)
        if code == 429 or code >= 500 or code == 0:
            return Unavailable(text, code, reason, causes, _retry_after(e))
        if code == 403:
            return Forbidden(text, code, reason, causes)
        if code == 404:
            return NotFound(text, code, reason, causes)
        if code == 410:
            return Expired(text, code, reason, causes)
        return Invalid(text, code, reason, causes)
    if isinstance(e, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return Unavailable(f"{what}: {type(e).__name__}: {e}")
    raise e


def _retry_after(e: kubernetes.client.ApiException) -> float | None:
    """The server's ``Retry-After``, uncapped: the callers bound the wait themselves."""
    return http.retry_after((e.headers or {}).get("Retry-After"), cap=float("inf"))


# --------------------------------------------------------------------------- rate limit


def _decode(data: bytes, what: str) -> Any:
    """An answer's JSON; one nested deeper than Python can build (only a free-form field
    such as status.previous could be) is a permanent error for that request, never a
    RecursionError loose in a worker or an informer."""
    if not data:
        return {}
    try:
        return json.loads(data)
    except RecursionError as e:
        raise errors.PermanentError(f"{what}: the answer is nested too deeply to read") from e


class RateLimiter:
    """Token bucket: ``burst`` requests at once, then ``qps`` per second, thread-safe."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if qps <= 0 or burst < 1:
            raise errors.ConfigError(f"rate limit needs qps > 0 and burst >= 1 (got {qps}, "
                                     f"{burst})")
        self.qps, self.burst = float(qps), int(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the time waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.qps
        if wait > 0:
            self._sleep(wait)
        return wait


_limiters: dict[tuple[float, int], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(qps: float, burst: int) -> RateLimiter:
    """One limiter per (qps, burst) per process: every writer of the process shares it."""
    with _limiters_lock:
        lim = _limiters.get((qps, burst))
        if lim is None:
            lim = _limiters[(qps, burst)] = RateLimiter(qps, burst)
        return lim


# --------------------------------------------------------------------------- client


def load_client(kubeconfig: str | None = None, context: str | None = None, *,
                in_cluster: bool = False) -> Any:
    """An ApiClient from a kubeconfig (file, or $KUBECONFIG / ~/.kube/config) and context,
    or the mounted service account when ``in_cluster`` (``config.env.in_cluster``) and no
    kubeconfig or context is given."""
    cfg = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and context is None and in_cluster:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg)
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=cfg,
                persist_config=False)
    except (kubernetes.config.ConfigException, OSError, ValueError) as e:
        raise errors.ConfigError(f"cannot load the Kubernetes configuration: {e}") from e
    return kubernetes.client.ApiClient(cfg)


@dataclass(frozen=True)
class Options:
    qps: float = 50.0
    burst: int = 100
    retries: int = 5              # extra attempts for temporary failures
    backoff: float = 0.1          # first backoff, seconds; doubles each time (full jitter)
    backoff_max: float = 5.0
    timeout: float = 15.0         # per-request read timeout, seconds
    field_manager: str = FIELD_MANAGER
    service_account: str = ""     # who the audit log names besides the field manager
    # How long what was read (workloads, HPAs, PDBs, nodes, pods) may be served from memory:
    # None for one batch (a command), seconds for a long-lived operator, whose decisions
    # must see an HPA created since; a patch is guarded by `test` operations either way.
    cache_ttl: float | None = None
    # Read a workload by listing its namespace once (a batch touching many workloads of a
    # namespace), or by one GET each (an operator: a cluster's workloads are not kept in
    # its memory, only the few it works on are read).
    list_workloads: bool = True


EVICTION_DONE = "evicted"        # the server accepted the eviction (the pod terminates)
EVICTION_GONE = "gone"           # 404: no pod of that name any more
EVICTION_REPLACED = "replaced"   # 409 on the uid precondition: a new pod has the name
EVICTION_BLOCKED = "blocked"     # 429: a PodDisruptionBudget allows no disruption now


@dataclass(frozen=True)
class Eviction:
    """What one eviction request came to; ``retry_after`` only when the server sent one."""

    outcome: str
    message: str = ""
    retry_after: float | None = None


class Kube:
    """The Kubernetes adapter: rate-limited, retried, translated requests and a read cache."""

    def __init__(self, api_client: Any, options: Options | None = None,
                 limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api_client = api_client
        self.options = options or Options()
        self.limiter = limiter or shared_limiter(self.options.qps, self.options.burst)
        self.field_manager = self.options.field_manager
        # The identity the audit log records: the field manager, and the service account
        # when running in a cluster.
        sa = self.options.service_account
        self.who = f"{self.field_manager} ({sa})" if sa else self.field_manager
        self._sleep = sleep
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.autoscaling = kubernetes.client.AutoscalingV2Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.policy = kubernetes.client.PolicyV1Api(api_client)
        self.apiextensions = kubernetes.client.ApiextensionsV1Api(api_client)
        self._cache: dict[tuple[str, str], dict[str, JSON]] = {}
        # Cluster facts for policy (PDBs per namespace, pods per node, nodes by name): read
        # once per instance like the workload cache, cleared by forget().
        self._pdb_cache: dict[str, list[JSON]] = {}
        self._node_pods_cache: dict[str, list[JSON]] = {}
        self._node_cache: dict[str, JSON | None] = {}
        self._lock = threading.Lock()
        self._cached_at = time.monotonic()
        self.requests = 0  # requests sent (retries included): what the benchmark reports

    # ------------------------------------------------------------------ the one call site

    def call(self, what: str, fn: Callable[..., Any], *args: Any, guarded: bool = False,
             retry: bool = True, **kwargs: Any) -> Any:
        """Send one request (raw JSON answer), retrying temporary failures with backoff.

        Conflicts are never retried here: the caller must re-read and decide again.
        """
        kwargs.setdefault("_request_timeout", (5.0, self.options.timeout))
        attempts = 1 + (self.options.retries if retry else 0)
        for attempt in range(attempts):
            self.limiter.acquire()
            self.requests += 1
            try:
                resp = fn(*args, _preload_content=False, **kwargs)
                try:
                    data = resp.data
                finally:
                    resp.release_conn()  # back to the pool: keep-alive across requests
                return _decode(data, what)
            except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError,
                    OSError) as e:
                err = translate(e, what, guarded=guarded)
                if not isinstance(err, Unavailable) or attempt == attempts - 1:
                    raise err from e
                delay = min(self.options.backoff_max, self.options.backoff * 2 ** attempt)
                delay = random.uniform(0, delay)  # full jitter: writers do not retry in step
                if err.retry_after is not None:  # the server said when: wait at least that
                    delay = max(delay, min(err.retry_after, self.options.backoff_max))
                log.info("retrying %s in %.2fs: %s", what, delay, err)
                self._sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ reads (cached)

    def _list_fn(self, kind: str) -> Callable[..., Any]:
        if kind == HPA:
            return self.autoscaling.list_namespaced_horizontal_pod_autoscaler
        plural = WORKLOAD_PLURALS.get(kind)
        if plural is None:
            raise errors.PermanentError(
                f"unsupported target kind {kind!r}: expected one of "
                f"{', '.join(WORKLOAD_PLURALS)}")
        return getattr(self.apps, "list_namespaced_" + _snake(kind))  # type: ignore

    def _read_fn(self, kind: str) -> Callable[..., Any]:
        if kind == HPA:
            return self.autoscaling.read_namespaced_horizontal_pod_autoscaler
        return getattr(self.apps, "read_namespaced_" + _snake(kind))  # type: ignore

    def _patch_fn(self, kind: str) -> Callable[..., Any]:
        if kind == HPA:
            return self.autoscaling.patch_namespaced_horizontal_pod_autoscaler
        return getattr(self.apps, "patch_namespaced_" + _snake(kind))  # type: ignore

    def _expire(self) -> None:
        """Drop every cached read once it is older than ``cache_ttl``."""
        ttl = self.options.cache_ttl
        if ttl is not None and time.monotonic() - self._cached_at > ttl:
            self.forget()

    def _objects(self, kind: str, namespace: str) -> dict[str, JSON]:
        self._expire()
        with self._lock:
            cached = self._cache.get((kind, namespace))
        if cached is not None:
            return cached
        answer = self.call(f"list {kind} in {namespace}", self._list_fn(kind), namespace)
        api_version = "autoscaling/v2" if kind == HPA else "apps/v1"
        objs = {item["metadata"]["name"]: item for item in _items(answer, api_version, kind)}
        with self._lock:
            self._cache[(kind, namespace)] = objs
        return objs

    def workload(self, kind: str, namespace: str, name: str) -> JSON | None:
        """The live workload (from the cache, or read alone: ``list_workloads``), or None
        when it does not exist."""
        if not self.options.list_workloads:
            return self.refresh(kind, namespace, name)
        obj = self._objects(kind, namespace).get(name)
        return copy.deepcopy(obj) if obj is not None else None

    def refresh(self, kind: str, namespace: str, name: str) -> JSON | None:
        """Read one object again from the server (after a conflict) and update the cache."""
        try:
            obj: JSON = self.call(f"get {kind} {namespace}/{name}", self._read_fn(kind),
                                  name, namespace)
        except errors.NotFoundError:
            with self._lock:
                self._cache.get((kind, namespace), {}).pop(name, None)
            return None
        self._remember(kind, namespace, obj)
        return copy.deepcopy(obj)

    def _remember(self, kind: str, namespace: str, obj: JSON) -> None:
        with self._lock:
            objs = self._cache.get((kind, namespace))
            if objs is not None:
                objs[obj["metadata"]["name"]] = obj

    def hpa_for(self, kind: str, namespace: str, name: str) -> JSON | None:
        """The HorizontalPodAutoscaler whose scaleTargetRef is this workload, if any."""
        for hpa in self._objects(HPA, namespace).values():
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == kind and ref.get("name") == name and str(
                    ref.get("apiVersion", "apps/v1")).startswith("apps/"):
                return copy.deepcopy(hpa)
        return None

    def forget(self) -> None:
        with self._lock:
            self._cached_at = time.monotonic()
            self._cache.clear()
            self._pdb_cache.clear()
            self._node_pods_cache.clear()
            self._node_cache.clear()

    # ------------------------------------------------------------------ cluster facts (cached)

    def pdbs(self, namespace: str) -> list[JSON]:
        """The PodDisruptionBudgets (policy/v1) of a namespace: one LIST per namespace."""
        self._expire()
        with self._lock:
            cached = self._pdb_cache.get(namespace)
        if cached is None:
            answer = self.call(f"list PodDisruptionBudget in {namespace}",
                               self.policy.list_namespaced_pod_disruption_budget, namespace)
            cached = _items(answer, "policy/v1", "PodDisruptionBudget")
            with self._lock:
                self._pdb_cache[namespace] = cached
        return copy.deepcopy(cached)

    def pods_on_node(self, node: str) -> list[JSON]:
        """The pods bound to a node, all namespaces: one LIST (field selector) per node."""
        self._expire()
        with self._lock:
            cached = self._node_pods_cache.get(node)
        if cached is not None:
            return copy.deepcopy(cached)
        return self.refresh_pods_on_node(node)

    def node(self, name: str) -> JSON | None:
        """The Node, or None when it does not exist (remembered too: one GET per name)."""
        self._expire()
        with self._lock:
            if name in self._node_cache:
                obj = self._node_cache[name]
                return copy.deepcopy(obj) if obj is not None else None
        return self.refresh_node(name)

    def refresh_node(self, name: str) -> JSON | None:
        """Read a Node again from the server (a cordon decides on the value it just read) and
        update the cache; None when it does not exist."""
        try:
            got: JSON = self.call(f"get Node {name}", self.core.read_node, name)
        except errors.NotFoundError:
            with self._lock:
                self._node_cache[name] = None
            return None
        got.setdefault("apiVersion", "v1")
        got.setdefault("kind", "Node")
        with self._lock:
            self._node_cache[name] = got
        return copy.deepcopy(got)

    def list_nodes(self, label_selector: str) -> tuple[list[JSON], str]:
        """The Nodes carrying a label (one LIST, not cached: the nodes a consolidation
        marked, never the whole cluster's) and the list's resourceVersion."""
        answer = self.call(f"list Node {label_selector}", self.core.list_node,
                           label_selector=label_selector)
        return (_items(answer, "v1", "Node"),
                str((answer.get("metadata") or {}).get("resourceVersion") or ""))

    def watch_nodes(self, label_selector: str, since: str, timeout: float,
                    on_open: Callable[[Any], None] | None = None) -> Iterator[JSON]:
        """Watch the Nodes carrying a label from ``since`` (``watch_lines``); a node that
        loses the label arrives as DELETED, as the API server's watch cache sends it."""
        return self.watch_lines(f"watch Node {label_selector}", self.core.list_node,
                                timeout=timeout, on_open=on_open,
                                label_selector=label_selector, resource_version=since)

    def refresh_pods_on_node(self, node: str) -> list[JSON]:
        """List the pods bound to a node again (a drain polls until they are gone), bypassing
        the cache and replacing its entry with the fresh answer."""
        if not _NODE_NAME.fullmatch(node):
            # A comma or '=' would change the meaning of the field selector.
            raise errors.PermanentError(f"invalid node name {node!r}")
        answer = self.call(f"list Pod on node {node}", self.core.list_pod_for_all_namespaces,
                           field_selector=f"spec.nodeName={node}")
        fresh = _items(answer, "v1", "Pod")
        with self._lock:
            self._node_pods_cache[node] = fresh
        return copy.deepcopy(fresh)

    # ------------------------------------------------------------------ pods of a workload

    def pods_of(self, target: Mapping[str, Any]) -> tuple[list[JSON], str]:
        """The pods a workload owns (Deployment -> ReplicaSet -> Pod, StatefulSet and
        DaemonSet -> Pod, by controller UID, not by labels alone: another workload's pods
        may carry the same labels), fresh from the server, and the resourceVersion of the
        pod list (where a watch of them starts). Two LISTs for a Deployment, one else."""
        meta = target.get("metadata") or {}
        ns, uid = str(meta.get("namespace") or ""), str(meta.get("uid") or "")
        selector = label_selector((target.get("spec") or {}).get("selector"))
        owners = {uid}
        if target.get("kind") == "Deployment":
            answer = self.call(f"list ReplicaSet in {ns}", self.apps.list_namespaced_replica_set,
                               ns, label_selector=selector)
            owners = {str((rs.get("metadata") or {}).get("uid"))
                      for rs in answer.get("items") or [] if _controller_uid(rs) == uid}
        answer = self.call(f"list Pod in {ns}", self.core.list_namespaced_pod, ns,
                           label_selector=selector)
        pods = [p for p in _items(answer, "v1", "Pod") if _controller_uid(p) in owners]
        return pods, str((answer.get("metadata") or {}).get("resourceVersion") or "")

    def pod(self, namespace: str, name: str) -> JSON | None:
        """One pod fresh from the server, or None when it is gone."""
        try:
            got: JSON = self.call(f"get Pod {namespace}/{name}",
                                  self.core.read_namespaced_pod, name, namespace)
        except errors.NotFoundError:
            return None
        got.setdefault("apiVersion", "v1")
        got.setdefault("kind", "Pod")
        return got

    def resize_pod(self, namespace: str, name: str, ops: Sequence[Mapping[str, Any]], *,
                   dry_run: bool = False) -> JSON:
        """JSON Patch a pod's container resources through ``pods/{name}/resize`` (Kubernetes
        1.33+). ``test`` operations make it fail with TestFailed when the pod changed since
        it was read. A cluster without the subresource answers 404, as for a pod that is
        gone: the caller tells them apart (``pod``)."""
        kwargs: dict[str, Any] = {"field_manager": self.field_manager,
                                  "_content_type": "application/json-patch+json"}
        if dry_run:
            kwargs["dry_run"] = "All"
        got: JSON = self.call(f"{'dry-run ' if dry_run else ''}resize Pod {namespace}/{name}",
                              self.core.patch_namespaced_pod_resize, name, namespace,
                              [dict(op) for op in ops], guarded=True, **kwargs)
        return got

    # ------------------------------------------------------------------ writes

    def json_patch(self, kind: str, namespace: str, name: str, ops: Sequence[Mapping[str, Any]],
                   *, dry_run: bool = False) -> JSON:
        """Apply a JSON Patch (RFC 6902). ``test`` operations make it fail with TestFailed
        when the values changed since they were read; nothing is written then."""
        guarded = any(op.get("op") == "test" for op in ops)
        kwargs: dict[str, Any] = {"field_manager": self.field_manager,
                                  "_content_type": "application/json-patch+json"}
        if dry_run:
            kwargs["dry_run"] = "All"
        obj: JSON = self.call(
            f"{'dry-run ' if dry_run else ''}patch {kind} {namespace}/{name}",
            self._patch_fn(kind), name, namespace, [dict(op) for op in ops],
            guarded=guarded, **kwargs)
        if not dry_run:
            self._remember(kind, namespace, obj)
        return obj

    def scale(self, kind: str, namespace: str, name: str, old: int | None, new: int, *,
              dry_run: bool = False) -> JSON:
        """Set ``spec.replicas`` through the scale subresource, guarded on the value read."""
        if kind not in SCALABLE:
            raise errors.PermanentError(f"{kind} has no scale subresource: cannot set replicas")
        ops: list[JSON] = []
        if old is not None:
            ops.append({"op": "test", "path": "/spec/replicas", "value": old})
        ops.append({"op": "replace" if old is not None else "add", "path": "/spec/replicas",
                    "value": new})
        fn = getattr(self.apps, f"patch_namespaced_{_snake(kind)}_scale")
        kwargs: dict[str, Any] = {"field_manager": self.field_manager,
                                  "_content_type": "application/json-patch+json"}
        if dry_run:
            kwargs["dry_run"] = "All"
        out: JSON = self.call(f"{'dry-run ' if dry_run else ''}scale {kind} {namespace}/{name}",
                              fn, name, namespace, ops, guarded=old is not None, **kwargs)
        if not dry_run:
            with self._lock:
                cached = self._cache.get((kind, namespace), {}).get(name)
                if cached is not None:
                    cached.setdefault("spec", {})["replicas"] = new
                    rv = (out.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        cached["metadata"]["resourceVersion"] = rv
        return out

    def patch_node(self, name: str, ops: Sequence[Mapping[str, Any]]) -> JSON:
        """JSON Patch a Node (cordon / uncordon); ``test`` operations make it fail with
        TestFailed when the node changed since it was read."""
        guarded = any(op.get("op") == "test" for op in ops)
        obj: JSON = self.call(f"patch Node {name}", self.core.patch_node, name,
                              [dict(op) for op in ops], guarded=guarded,
                              field_manager=self.field_manager,
                              _content_type="application/json-patch+json")
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Node")
        with self._lock:
            self._node_cache[name] = obj
        return copy.deepcopy(obj)

    def apply_crd(self, crd: Mapping[str, Any], field_manager: str) -> JSON:
        """Server-side apply of a CustomResourceDefinition the platform sent.

        ``force=True``: the operator owns the CRDs it is told to install, so a field
        another manager set is taken over rather than turned into a conflict nobody would
        resolve. Temporary failures are retried here like every other request.
        """
        name = crd["metadata"]["name"]
        out: JSON = self.call(f"apply CustomResourceDefinition {name}",
                              self.apiextensions.patch_custom_resource_definition, name,
                              dict(crd), field_manager=field_manager, force=True,
                              _content_type="application/apply-patch+yaml")
        return out

    def evict(self, namespace: str, name: str, uid: str | None, *,
              grace_period_seconds: int | None = None, dry_run: bool = False) -> Eviction:
        """POST a policy/v1 Eviction for one pod; the outcome says what the server decided.

        A 429 is NOT retried here: it is how the server says a PodDisruptionBudget allows no
        disruption now, and only the drain knows how long it may wait (its own interval and
        timeout). 404 means the pod is already gone; a 409 on the ``uid`` precondition means
        the name now belongs to another pod, which must not be evicted in its place. Other
        temporary failures raise Unavailable (the caller retries on its schedule), and the
        "more than one PodDisruptionBudget" 500 raises Invalid: retrying cannot fix it.
        """
        options: JSON = {}
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = int(grace_period_seconds)
        if dry_run:
            options["dryRun"] = ["All"]
        body: JSON = {"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": name, "namespace": namespace}}
        if options:
            body["deleteOptions"] = options
        what = f"{'dry-run ' if dry_run else ''}evict Pod {namespace}/{name}"
        try:
            self.call(what, self.core.create_namespaced_pod_eviction, name, namespace, body,
                      retry=False)
        except NotFound:
            return Eviction(EVICTION_GONE, f"pod {namespace}/{name} is already gone")
        except Conflict as e:
            return Eviction(EVICTION_REPLACED, str(e))
        except Unavailable as e:
            detail = "; ".join(str(c.get("message")) for c in e.causes if c.get("message"))
            if e.code == 429:
                return Eviction(EVICTION_BLOCKED, detail or str(e), e.retry_after)
            if e.code == 500 and "more than one PodDisruptionBudget" in str(e):
                raise Invalid(str(e), e.code, e.reason, e.causes) from e
            raise
        return Eviction(EVICTION_DONE, f"evicted pod {namespace}/{name}")

    def event(self, involved: Mapping[str, Any], reason: str, message: str, *,
              type_: str = "Normal", namespace: str = "default") -> None:
        """Record a core/v1 Event about ``involved`` (best effort: an Event is a report, and
        failing to write one must not undo or fail the change it reports)."""
        meta = involved.get("metadata") or {}
        ns = meta.get("namespace") or namespace
        now = clock.rfc3339(micro=True)
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": ns},
            "involvedObject": {"apiVersion": involved.get("apiVersion"),
                               "kind": involved.get("kind"), "name": meta.get("name"),
                               "namespace": meta.get("namespace") or None,
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": self.field_manager},
            "reportingComponent": self.field_manager, "reportingInstance": self.field_manager,
            "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z", "count": 1,
        }
        try:
            self.call(f"create event {reason} on {involved.get('kind')}/{meta.get('name')}",
                      self.core.create_namespaced_event, ns, body)
        except errors.ReconcilerError as e:
            log.warning("could not record the event %s: %s", reason, e)

    # ------------------------------------------------------------------ watch

    def watch_lines(self, what: str, fn: Callable[..., Any], *args: Any,
                    timeout: float, on_open: Callable[[Any], None] | None = None,
                    **kwargs: Any) -> Iterator[JSON]:
        """Stream the events of one watch request (raw JSON), ending after ``timeout``.

        ``on_open`` receives the open response, so that another thread can end the stream
        early with ``close_stream``.
        """
        self.limiter.acquire()
        self.requests += 1
        try:
            resp = fn(*args, watch=True, timeout_seconds=max(1, int(timeout + 0.999)),
                      allow_watch_bookmarks=True, _preload_content=False,
                      _request_timeout=(5.0, timeout + 5.0), **kwargs)
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e, what) from e
        if on_open is not None:
            on_open(resp)
        try:
            buf = b""
            for chunk in resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except RecursionError:
                        # One object nobody can read: skip its event, keep the watch.
                        log.warning("%s: skipped an event nested too deeply to read", what)
                        continue
                    yield event
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if getattr(resp, "_dakr_closed", False):
                return  # ended on purpose by close_stream
            raise translate(e, what) from e
        finally:
            resp.release_conn()


    # ------------------------------------------------------------------ checkpoint / restore
    # (moving a pod with its process state: reconciler/direct/move.py)

    @property
    def batch(self) -> Any:
        """batch/v1: the Jobs that build checkpoint images and remove archives."""
        return kubernetes.client.BatchV1Api(self.api_client)

    def checkpoint(self, node: str, namespace: str, pod: str, container: str, *,
                   timeout: int, grace: float = 30.0) -> CheckpointAnswer:
        """Ask the kubelet of ``node`` for a checkpoint of one container, through the API
        server's node proxy: ``POST /api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/
        {container}?timeout=N`` (KEP-2008).

        The generated ``connect_post_node_proxy_with_path`` cannot send it: it takes no
        query parameter but ``path`` (so no ``timeout``), and it escapes the slashes of its
        path argument (``%2F``). The request is built by the same client instead
        (``param_serialize``: its host, TLS and credentials), each path segment escaped on
        its own. Never retried: every success writes an archive, and a failure may have
        written one. Each HTTP answer comes back as it came, the kubelet's plain text or the
        API server's own Status (``api_server``), for the caller to classify
        (``domain.checkpoint.classify``); no answer within ``timeout`` + ``grace`` seconds is
        ``timed_out``."""
        what = f"checkpoint {namespace}/{pod}/{container} on node {node}"
        client = self.api_client

        def send(_preload_content: bool = False, _request_timeout: Any = None) -> Any:
            params = client.param_serialize(
                method="POST",
                resource_path="/api/v1/nodes/{node}/proxy/checkpoint/{ns}/{pod}/{container}",
                path_params={"node": node, "ns": namespace, "pod": pod,
                             "container": container},
                query_params=[("timeout", str(int(timeout)))],
                header_params={"Accept": "application/json, */*"},
                auth_settings=["BearerToken"])
            resp = client.call_api(*params, _request_timeout=_request_timeout)
            if not 200 <= resp.status <= 299:
                resp.read()
                raise kubernetes.client.ApiException(http_resp=resp)
            return resp.response

        try:
            got = self.call(what, send, retry=False,
                            _request_timeout=(5.0, float(timeout) + grace))
        except errors.ReconcilerError as e:
            cause = e.__cause__
            if isinstance(cause, kubernetes.client.ApiException):
                doc = _status_body(cause)
                if doc.get("kind") == "Status":
                    return CheckpointAnswer(int(cause.status or 0), (),
                                            str(doc.get("message") or ""), api_server=True)
                body = cause.body
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(
                    body or cause.reason or "")
                return CheckpointAnswer(int(cause.status or 0), (), text.strip())
            if isinstance(cause, urllib3.exceptions.MaxRetryError):
                cause = cause.reason
            return CheckpointAnswer(0, (), str(e), timed_out=isinstance(
                cause, (urllib3.exceptions.TimeoutError, TimeoutError)))
        except ValueError as e:  # a 200 whose body is not JSON
            return CheckpointAnswer(200, (), f"{what}: the answer is not JSON ({e})")
        items = got.get("items") if isinstance(got, dict) else None
        paths = tuple(str(p) for p in items or [] if isinstance(p, str))
        if not paths:
            return CheckpointAnswer(200, (), f"{what}: the answer names no archive")
        return CheckpointAnswer(200, paths)

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        """Create a batch/v1 Job (never retried: a timed-out create may have happened)."""
        name = (body.get("metadata") or {}).get("name", "")
        got: JSON = self.call(f"create Job {namespace}/{name}",
                              self.batch.create_namespaced_job, namespace, dict(body),
                              field_manager=self.field_manager, retry=False)
        return got

    def job(self, namespace: str, name: str) -> JSON | None:
        """One Job fresh from the server, or None when it is gone."""
        try:
            got: JSON = self.call(f"get Job {namespace}/{name}",
                                  self.batch.read_namespaced_job, name, namespace)
        except errors.NotFoundError:
            return None
        return got

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete a Job and its pods (background propagation); False when already gone."""
        try:
            self.call(f"delete Job {namespace}/{name}", self.batch.delete_namespaced_job,
                      name, namespace, propagation_policy="Background")
        except errors.NotFoundError:
            return False
        return True

    def watch_job(self, namespace: str, name: str, since: str, timeout: float,
                  on_open: Callable[[Any], None] | None = None) -> Iterator[JSON]:
        """Watch one Job from ``since`` (``watch_lines``)."""
        return self.watch_lines(f"watch Job {namespace}/{name}", self.batch.list_namespaced_job,
                                namespace, timeout=timeout, on_open=on_open,
                                field_selector=f"metadata.name={name}", resource_version=since)

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> JSON:
        """Create a Pod (never retried: a timed-out create may have happened; the caller
        looks it up by name)."""
        name = (body.get("metadata") or {}).get("name", "")
        got: JSON = self.call(f"create Pod {namespace}/{name}",
                              self.core.create_namespaced_pod, namespace, dict(body),
                              field_manager=self.field_manager, retry=False)
        got.setdefault("apiVersion", "v1")
        got.setdefault("kind", "Pod")
        return got

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a Pod (only the one with ``uid`` when given: a pod recreated under the
        same name is never deleted in its place); False when it is gone or replaced. This
        is no eviction: it is for pods we created ourselves and that nothing counts on."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.call(f"delete Pod {namespace}/{name}", self.core.delete_namespaced_pod,
                      name, namespace, body=body)
        except (errors.NotFoundError, Conflict):
            return False
        return True

    def patch_pod(self, namespace: str, name: str, ops: Sequence[Mapping[str, Any]]) -> JSON:
        """JSON Patch a Pod's metadata (labels, ownerReferences); ``test`` operations make
        it fail with TestFailed when the pod changed since it was read."""
        guarded = any(op.get("op") == "test" for op in ops)
        got: JSON = self.call(f"patch Pod {namespace}/{name}", self.core.patch_namespaced_pod,
                              name, namespace, [dict(op) for op in ops], guarded=guarded,
                              field_manager=self.field_manager,
                              _content_type="application/json-patch+json")
        return got

    def watch_pod(self, namespace: str, name: str, since: str, timeout: float,
                  on_open: Callable[[Any], None] | None = None) -> Iterator[JSON]:
        """Watch one Pod from ``since`` (``watch_lines``)."""
        return self.watch_lines(f"watch Pod {namespace}/{name}", self.core.list_namespaced_pod,
                                namespace, timeout=timeout, on_open=on_open,
                                field_selector=f"metadata.name={name}", resource_version=since)

    def watch_pods(self, namespace: str, selector: str, since: str, timeout: float,
                   on_open: Callable[[Any], None] | None = None) -> Iterator[JSON]:
        """Watch the pods a label selector picks (a workload's) from ``since``."""
        return self.watch_lines(f"watch Pod in {namespace}", self.core.list_namespaced_pod,
                                namespace, timeout=timeout, on_open=on_open,
                                label_selector=selector, resource_version=since)

    def replica_set(self, namespace: str, name: str) -> JSON | None:
        """One ReplicaSet fresh from the server (to find its Deployment), or None."""
        try:
            got: JSON = self.call(f"get ReplicaSet {namespace}/{name}",
                                  self.apps.read_namespaced_replica_set, name, namespace)
        except errors.NotFoundError:
            return None
        got.setdefault("apiVersion", "apps/v1")
        got.setdefault("kind", "ReplicaSet")
        return got


def close_stream(resp: Any) -> None:
    """End a watch stream from another thread (its reader sees the end of the stream)."""
    resp._dakr_closed = True
    # Fails when the stream already ended and its connection went back to the pool.
    with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
        resp.shutdown()


_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _items(answer: JSON, api_version: str, kind: str) -> list[JSON]:
    """The items of a LIST answer with apiVersion and kind set (list items carry neither)."""
    out: list[JSON] = []
    for item in answer.get("items") or []:
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
        out.append(item)
    return out


def _controller_uid(obj: Mapping[str, Any]) -> str:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def label_selector(selector: Any) -> str:
    """A LabelSelector object as the ``labelSelector`` query string. Only its matchLabels
    and set-based expressions the query language can say; a workload's selector is
    immutable and always one of those."""
    if not isinstance(selector, Mapping):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), sorted(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _snake(kind: str) -> str:
    return {"Deployment": "deployment", "StatefulSet": "stateful_set",
            "DaemonSet": "daemon_set", HPA: "horizontal_pod_autoscaler"}[kind]


@dataclass(frozen=True)
class CheckpointAnswer:
    """What one checkpoint request came to: 200 with the archive paths, or the HTTP code and
    the words of whoever answered (the kubelet's text, or the API server's Status message:
    ``api_server``); code 0 when nothing answered (``timed_out``: within the deadline)."""

    code: int
    paths: tuple[str, ...] = ()
    message: str = ""
    api_server: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.code == 200 and bool(self.paths)
