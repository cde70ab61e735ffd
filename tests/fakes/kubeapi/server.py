"""A Kubernetes API server for tests, spoken to over real HTTP by the official client.

No kube-apiserver binary can run on the test machines, so this stands in for it: same
paths, verbs, status codes, `Status` bodies, watch streaming and metadata semantics for
everything the product touches (see the package docstring). It is plain standard library
(`http.server`) so it starts in milliseconds and shuts down without leaking threads or sockets.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from tests.fakes.kubeapi import admission as admission_mod
from tests.fakes.kubeapi import disruption as disruption_mod
from tests.fakes.kubeapi import faults as faults_mod
from tests.fakes.kubeapi import kubelet as kubelet_mod
from tests.fakes.kubeapi import patch as patch_mod
from tests.fakes.kubeapi import rbac, resources, selectors, status, store, tables, validation

JSON = dict[str, Any]

DEFAULT_TOKEN = "kubeapi-test-token"
ADMIN_USER = "kubernetes-admin"

DEFAULT_VERSION = (1, 34)
RESIZE_SINCE = (1, 33)  # pods/resize: beta and on by default (alpha, off, before)


def version_info(version: tuple[int, int] = DEFAULT_VERSION) -> JSON:
    """What GET /version answers for a server of this (major, minor) version."""
    major, minor = version
    return {
        "major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "kubeapi-test", "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc",
        "platform": "linux/amd64",
    }


VERSION_INFO: JSON = version_info()

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
MULTIPLE_PDBS = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
    "support."
)
PDB_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."



def _list_key(obj: JSON) -> tuple[str, str]:
    """Where an object sits in a list: lists are ordered by namespace, then name."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

class _Route:
    """A parsed resource URL."""

    def __init__(self, rt: resources.ResourceType, namespace: str | None, name: str,
                 subresource: str, rest: list[str]) -> None:
        self.rt = rt
        self.namespace = namespace  # None: across all namespaces (or cluster-scoped)
        self.name = name
        self.subresource = subresource
        self.rest = rest  # path after the subresource (node proxy)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], api: KubeApiServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)


class KubeApiServer:
    """The server object: storage, faults, counters, and the HTTP listener around them."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", history: int = 1000,
                 bookmark_interval: float = 1.0, token: str = DEFAULT_TOKEN,
                 controllers: bool = True, pod_grace_seconds: float = 0.0,
                 version: tuple[int, int] = DEFAULT_VERSION) -> None:
        self.store = store.Store(history=history)
        self.store.pod_grace_seconds = pod_grace_seconds
        self.faults = faults_mod.Faults()
        self.requests = faults_mod.Requests()
        self.admission = admission_mod.Admission(self.store, {ADMIN_USER})
        self.tokens: dict[str, str] = {token: ADMIN_USER}
        self.token = token
        self.require_auth = False
        self.authorizer: Any = None  # callable(user, RequestInfo) -> error message | None
        self.bookmark_interval = bookmark_interval
        # Stand-in for the workload controllers: after a spec write to a Deployment,
        # StatefulSet or ReplicaSet, status converges at once (observedGeneration, replicas
        # updated/ready/available). Set False to leave status as seeded (a stuck rollout).
        self.controllers = controllers
        self.closing = threading.Event()
        # The Kubernetes version served (/version, resize rules); the nodes' kubelet, which
        # carries out resizes, answers checkpoints and runs Jobs; the budget recorder.
        self.version = version
        self.kubelet = kubelet_mod.Kubelet(self.store, version, self.closing)
        self.checkpoints = self.kubelet.checkpoints
        self.jobs_created = self.kubelet.jobs_created
        self.disruptions = disruption_mod.Recorder()
        self.store.listeners.append(self._observe)
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="kubeapi-server", daemon=True)
        self._thread.start()
        return self

    @property
    def serves_resize(self) -> bool:
        """Whether pods/resize exists: 1.33+ (older servers answer 404 for it)."""
        return self.version >= RESIZE_SINCE

    def _observe(self, ev: store.Event) -> None:
        """Every store write, under the store lock: budgets and the kubelet look at it."""
        cause = disruption_mod.current_cause()
        self.disruptions.observe(self.store.objects, ev, cause)
        self.kubelet.observe(ev, cause)

    def stop(self) -> None:
        """Stop accepting, end watches and idle keep-alive connections, join every thread."""
        self.closing.set()
        self.kubelet.stop()
        with self.store.changed:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._httpd.conn_lock:
            conns = list(self._httpd.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def enable_rbac(self) -> None:
        """Enforce the stored Roles/ClusterRoles and bindings; the default token stays admin.

        Unknown or missing tokens get 401; tokens added with `tokens[t] = user` are
        authorized by the RBAC objects in the store (seed them like any other object).
        """
        self.require_auth = True
        self.authorizer = rbac.Authorizer(self.store, {ADMIN_USER})

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token that authenticates as system:serviceaccount:<namespace>:<name>."""
        token = f"sa-{namespace}-{name}"
        self.tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token

    def kubeconfig(self, user: str = "test-user", token: str | None = None) -> JSON:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kubeapi",
            "clusters": [{"name": "kubeapi", "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": {"token": token or self.token}}],
            "contexts": [{"name": "kubeapi",
                          "context": {"cluster": "kubeapi", "user": user,
                                      "namespace": "default"}}],
            "preferences": {},
        }

    def write_kubeconfig(self, path: str, token: str | None = None) -> None:
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.kubeconfig(token=token), f, sort_keys=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits ~40 ms for
    # the client's delayed ACK on every keep-alive response.
    disable_nagle_algorithm = True
    server: _HTTPServer
    _late_timeout: faults_mod.Rule | None = None

    # ------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    @property
    def api(self) -> KubeApiServer:
        return self.server.api

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", "kubeapi-test")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, err: status.ApiError) -> None:
        self._send_json(err.code, err.body(), err.headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks += self.rfile.read(size)
                self.rfile.readline()
            return chunks
        return self.rfile.read(length) if length else b""

    # ------------------------------------------------------------------ entry

    def _serve(self, method: str) -> None:
        self._late_timeout = None
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        raw = self._read_body()
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        try:
            user = self._authenticate()
            if self._discovery(method, parts):
                return
            route = self._route(parts)
            info = self._info(method, parsed.path, route, query)
            info.user = user
            info.content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            self.api.requests.record(info)
            self._authorize(user, info)
            if self._inject(info):
                return
            with disruption_mod.acting(f"{method} {parsed.path}"):
                self._dispatch(method, route, info, query, raw)
        except status.ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            self._send_error(status.internal(f"{type(e).__name__}: {e}"))

    def _authenticate(self) -> str:
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):].strip()
            user = self.api.tokens.get(token)
            if user is None and self.api.require_auth:
                raise status.unauthorized()
            return user or "system:anonymous"
        if self.api.require_auth:
            raise status.unauthorized()
        return "system:anonymous"

    def _authorize(self, user: str, info: faults_mod.RequestInfo) -> None:
        if self.api.authorizer is None:
            return
        why = self.api.authorizer(user, info)
        if why:
            resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
            raise status.forbidden(resource, info.group, info.name, why)

    def _inject(self, info: faults_mod.RequestInfo) -> bool:
        rule = self.api.faults.take(info)
        if rule is None:
            return False
        if rule.kind == "delay":
            self.api.closing.wait(rule.seconds)
            return False
        if rule.kind == "reset":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if rule.kind == "timeout":
            if rule.after_apply:
                self._late_timeout = rule  # perform the write, then hang: see _dispatch
                return False
            self.api.closing.wait(rule.seconds)
            self.close_connection = True
            return True
        self._send_error(_fault_error(rule, info))
        return True

    # ------------------------------------------------------------------ discovery

    def _discovery(self, method: str, parts: list[str]) -> bool:
        if method != "GET":
            return False
        api = self.api
        if parts in (["healthz"], ["readyz"], ["livez"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        if parts == ["version"]:
            self._send_json(200, version_info(api.version))
            return True
        gvs = api.store.group_versions()
        if parts[:2] == ["openapi", "v3"]:
            self._send_json(200, _openapi_v3(parts[2:], gvs))
            return True
        if parts == ["api"]:
            self._send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{api.port}"}]})
            return True
        if parts == ["api", "v1"]:
            listing = resources.api_resource_list("v1", gvs.get("", {}).get("v1", []))
            if not api.serves_resize:
                listing["resources"] = [r for r in listing["resources"]
                                        if r["name"] != "pods/resize"]
            self._send_json(200, listing)
            return True
        if parts == ["apis"]:
            groups = [_api_group(g, vs) for g, vs in sorted(gvs.items()) if g]
            self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            return True
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in gvs:
                raise status.ApiError(404, "the server could not find the requested resource",
                                      "NotFound", {})
            self._send_json(200, _api_group(parts[1], gvs[parts[1]]))
            return True
        if len(parts) == 3 and parts[0] == "apis":
            types = gvs.get(parts[1], {}).get(parts[2])
            if not types:
                raise status.ApiError(404, "the server could not find the requested resource",
                                      "NotFound", {})
            self._send_json(200, resources.api_resource_list(f"{parts[1]}/{parts[2]}", types))
            return True
        return False

    # ------------------------------------------------------------------ routing

    def _route(self, parts: list[str]) -> _Route:
        not_found = status.ApiError(404, "the server could not find the requested resource",
                                    "NotFound", {})
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found
        if not rest:
            raise not_found
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (
            group == "" and rest[2] in ("status", "finalize")
        ):
            namespace = rest[1]
            rest = rest[2:]
        rt = self.api.store.type_for(group, version, rest[0])
        if namespace is not None and not rt.namespaced:
            raise not_found
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub == "resize" and not self.api.serves_resize:
            raise not_found
        if sub and sub not in rt.subresources and not (rt.plural == "namespaces"
                                                      and sub == "finalize"):
            raise not_found
        if rt.namespaced and name and namespace is None:
            raise not_found
        return _Route(rt, namespace, name, sub, rest[3:])

    def _info(self, method: str, path: str, route: _Route,
              query: dict[str, str]) -> faults_mod.RequestInfo:
        watching = query.get("watch") in ("true", "1", "True")
        if method == "GET":
            verb = "get" if route.name else ("watch" if watching else "list")
        elif method == "POST":
            verb = "create"
        elif method == "PUT":
            verb = "update"
        elif method == "PATCH":
            verb = "patch"
        else:
            verb = "delete" if route.name else "deletecollection"
        return faults_mod.RequestInfo(
            method=method, path=path, verb=verb, group=route.rt.group, resource=route.rt.plural,
            subresource=route.subresource, namespace=route.namespace or "", name=route.name)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, method: str, route: _Route, info: faults_mod.RequestInfo,
                  query: dict[str, str], raw: bytes) -> None:
        rt = route.rt
        dry_run = query.get("dryRun") == "All"
        if route.subresource == "proxy":
            self._node_proxy(method, route, query)
            return
        if info.verb == "list":
            self._list(route, query)
            return
        if info.verb == "watch":
            self._watch(route, query)
            return
        if info.verb == "get":
            view = self._get_view(route)
            if tables.wants_table(self.headers.get("Accept") or "") and not route.subresource:
                view = self._table(rt, [view], view["metadata"].get("resourceVersion", ""))
            self._send_json(200, view)
            return
        body = self._parse_body(raw, info.content_type, method)
        info.body = body
        if route.subresource == "eviction":
            self._evict(route, body, dry_run)
            return
        code, result = 200, None
        if info.verb == "create":
            if route.name:
                raise status.method_not_allowed()
            # Mutating admission webhooks, before validation and naming, as the real server.
            obj = self.api.admission.admit_create(rt, route.namespace or "", _obj(body),
                                                  user=info.user, dry_run=dry_run, query=query)
            code, result = 201, self.api.store.create(rt, route.namespace or "", obj, dry_run)
        elif info.verb == "update":
            result = self._put(route, _obj(body), dry_run)
        elif info.verb == "patch":
            code, result = self._patch(route, body, info.content_type, query, dry_run)
        elif info.verb == "delete":
            result = self._delete(route, body, query, dry_run)
        elif info.verb == "deletecollection":
            result = self._delete_collection(route, query, dry_run)
        if (not dry_run and info.verb in ("create", "update", "patch")
                and route.subresource in ("", "scale") and isinstance(result, dict)):
            self._reconcile_workload(rt, route.namespace or "", route.name or (
                result.get("metadata") or {}).get("name", ""))
        rule = self._late_timeout
        if rule is not None:
            self.api.closing.wait(rule.seconds)
            self.close_connection = True
            return
        self._send_json(code, result)

    def _reconcile_workload(self, rt: resources.ResourceType, ns: str, name: str) -> None:
        if not self.api.controllers or rt.key not in (
                ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")):
            return
        st = self.api.store
        with st.lock:
            try:
                obj = st.get(rt, ns, name)
            except status.ApiError:
                return
            replicas = int((obj.get("spec") or {}).get("replicas", 1))
            new = copy.deepcopy(obj)
            converged = {"observedGeneration": obj["metadata"].get("generation", 1),
                         "replicas": replicas, "updatedReplicas": replicas,
                         "readyReplicas": replicas, "availableReplicas": replicas}
            if rt.kind == "StatefulSet":
                converged["currentReplicas"] = replicas
            if rt.kind == "ReplicaSet":
                converged.pop("updatedReplicas")
            new["status"] = {**(obj.get("status") or {}), **converged}
            if rt.kind == "Deployment":
                now = store.now()
                new["status"]["conditions"] = [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": f'ReplicaSet "{name}" has successfully progressed.',
                     "lastUpdateTime": now, "lastTransitionTime": now}]
                old_conditions = (obj.get("status") or {}).get("conditions")
                if old_conditions and [c.get("type") for c in old_conditions] == [
                        "Available", "Progressing"] and all(
                        c.get("status") == "True" for c in old_conditions):
                    new["status"]["conditions"] = old_conditions
            st.update(rt, ns, name, new, "status")

    def _parse_body(self, raw: bytes, content_type: str, method: str) -> Any:
        if not raw:
            return None
        if content_type and "json" not in content_type and "yaml" not in content_type:
            raise status.ApiError(
                415, f'the body of the request was in an unknown format - accepted media types '
                     f'include: application/json, application/yaml (got "{content_type}")',
                "UnsupportedMediaType", {})
        if content_type == "application/apply-patch+yaml" or content_type.endswith("yaml"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise status.bad_request(f"error decoding YAML: {e}") from e
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            if method == "PATCH":
                raise status.bad_request(f"error decoding patch: {e}") from e
            raise status.bad_request(
                f"Object 'Kind' is missing in '{raw[:200].decode(errors='replace')}'") from e

    # ------------------------------------------------------------------ reads

    def _get_view(self, route: _Route) -> JSON:
        obj = self.api.store.get(route.rt, route.namespace or "", route.name)
        if route.subresource == "scale":
            return _scale_of(route.rt, obj)
        return obj

    def _list(self, route: _Route, query: dict[str, str]) -> None:
        rt = route.rt
        pred = _predicate(rt, query)
        rv_q = query.get("resourceVersion")
        if (rv_q and query.get("resourceVersionMatch") == "Exact" and rv_q.isdigit()
                and int(rv_q) < self.api.store.compacted_rv):
                raise status.gone(
                f"too old resource version: {rv_q} ({self.api.store.compacted_rv + 1})")
        limit = int(query.get("limit") or 0)
        after: tuple[str, str] | None = None
        list_rv: int | None = None
        if query.get("continue"):
            # As the API server: the token names the last key served and the list's
            # version; the next page starts after that key (an object deleted in between
            # does not shift what comes next, one created after it may appear).
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                after = (str(token["after"][0]), str(token["after"][1]))
                list_rv = int(token["rv"])
            except (ValueError, KeyError, TypeError, IndexError) as e:
                raise status.bad_request("continue key is not valid") from e
            if list_rv < self.api.store.compacted_rv:
                raise status.gone("The provided continue parameter is too old to display a "
                                  "consistent list result. You can start a new list without "
                                  "the continue parameter.")
        items, rv, more = self.api.store.select(rt, route.namespace, pred, after=after,
                                                limit=max(limit, 0))
        if list_rv is not None:
            rv = list_rv
        meta: JSON = {"resourceVersion": str(rv)}
        if more:
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"after": list(_list_key(items[-1])), "rv": rv}).encode()).decode()
            meta["remainingItemCount"] = more
        if tables.wants_table(self.headers.get("Accept") or ""):
            out = self._table(rt, items, meta["resourceVersion"])
            if "continue" in meta:
                out["metadata"]["continue"] = meta["continue"]
            self._send_json(200, out)
            return
        self._send_json(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                              "metadata": meta, "items": items})

    def _table(self, rt: resources.ResourceType, items: list[JSON], rv: str) -> JSON:
        columns: list[JSON] | None = None
        if rt.custom:
            crd_type = self.api.store.type_for("apiextensions.k8s.io", "v1",
                                               "customresourcedefinitions")
            try:
                crd = self.api.store.get(crd_type, "", f"{rt.plural}.{rt.group}")
                for v in (crd.get("spec") or {}).get("versions") or []:
                    if v.get("name") == rt.version:
                        columns = v.get("additionalPrinterColumns")
            except status.ApiError:
                columns = None
        return tables.table(rt, items, rv, columns)

    def _watch(self, route: _Route, query: dict[str, str]) -> None:
        api = self.api
        rt = route.rt
        pred = _predicate(rt, query)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = None if timeout is None else _monotonic() + timeout
        generation = api.faults.watch_generation
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        rv_q = query.get("resourceVersion") or ""
        initial: list[JSON] = []
        with api.store.lock:
            if rv_q in ("", "0"):
                for obj in api.store.all_objects(rt, route.namespace):
                    if pred(obj):
                        initial.append({"type": "ADDED", "object": _versioned(rt, obj)})
                last = api.store.rv
            else:
                try:
                    last = int(rv_q)
                    api.store.events_since(last)
                except ValueError:
                    self._chunk_event({"type": "ERROR", "object": status.bad_request(
                        f"invalid resource version: {rv_q}").body()})
                    self._end_chunks()
                    return
                except status.ApiError as e:
                    self._chunk_event({"type": "ERROR", "object": e.body()})
                    self._end_chunks()
                    return
        for first in initial:
            self._chunk_event(first)
        next_bookmark = _monotonic() + api.bookmark_interval
        while True:
            with api.store.changed:
                try:
                    pending = api.store.events_since(last)
                    if not pending:
                        wait = 0.2
                        if deadline is not None:
                            wait = min(wait, max(0.0, deadline - _monotonic()))
                        api.store.changed.wait(wait)
                        pending = api.store.events_since(last)
                except status.ApiError as e:
                    self._chunk_event({"type": "ERROR", "object": e.body()})
                    self._end_chunks()
                    return
                current_rv = api.store.rv
            if api.closing.is_set():
                self._end_chunks()
                return
            if api.faults.watch_generation != generation:
                if api.faults.abrupt_drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._end_chunks()
                return
            for ev in pending:
                last = ev.rv
                out = _watch_event(rt, route.namespace, pred, ev)
                if out is not None and not self._chunk_event(out):
                    return
            if deadline is not None and _monotonic() >= deadline:
                self._end_chunks()
                return
            if bookmarks and _monotonic() >= next_bookmark and not pending:
                last = max(last, current_rv)
                if not self._chunk_event({"type": "BOOKMARK", "object": {
                        "kind": rt.kind, "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(last)}}}):
                    return
                next_bookmark = _monotonic() + api.bookmark_interval

    def _chunk_event(self, event: JSON) -> bool:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _end_chunks(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    # ------------------------------------------------------------------ writes

    def _put(self, route: _Route, body: JSON, dry_run: bool) -> JSON:
        rt, st = route.rt, self.api.store
        ns = route.namespace or ""
        if route.subresource == "scale":
            with st.lock:
                return self._write_scale(route, body, dry_run)
        if route.subresource == "resize":
            with st.lock:
                old = st.get(rt, ns, route.name)
                return self._resize(route, old, body, dry_run)
        return st.update(rt, ns, route.name, body, route.subresource, dry_run)

    def _patch(self, route: _Route, body: Any, content_type: str, query: dict[str, str],
               dry_run: bool) -> tuple[int, JSON]:
        rt, st = route.rt, self.api.store
        ns = route.namespace or ""
        kind = _PATCH_TYPES.get(content_type)
        if kind is None or (kind == "strategic" and rt.custom):
            raise status.unsupported_media_type(content_type)
        with st.lock:
            if kind == "apply":
                return self._apply(route, body, query, dry_run)
            if body is None:
                raise status.bad_request("the body of the request was in an unknown format")
            current = self._get_view(route)
            patched = _apply_patch(kind, current, body)
            if route.subresource == "scale":
                return 200, self._write_scale(route, patched, dry_run)
            if route.subresource == "resize":
                old = st.get(rt, ns, route.name)
                return 200, self._resize(route, old, patched, dry_run)
            return 200, st.update(rt, ns, route.name, patched, route.subresource, dry_run)

    def _apply(self, route: _Route, body: Any, query: dict[str, str],
               dry_run: bool) -> tuple[int, JSON]:
        """Server-side apply, simplified: create, or merge the applied config in."""
        rt, st = route.rt, self.api.store
        ns = route.namespace or ""
        if not query.get("fieldManager"):
            raise status.invalid("PatchOptions", "meta.k8s.io", "", [status.field_cause(
                "FieldValueRequired", "fieldManager",
                "Required value: is required for apply patch")])
        if not isinstance(body, dict):
            raise status.bad_request("error decoding YAML: not an object")
        try:
            current = st.get(rt, ns, route.name)
        except status.ApiError as e:
            if e.code != 404 or route.subresource:
                raise
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {})["name"] = route.name
            return 201, st.create(rt, ns, obj, dry_run)
        merge = patch_mod.merge_patch if rt.custom else patch_mod.strategic_merge_patch
        patched = merge(current, body)
        return 200, st.update(rt, ns, route.name, patched, route.subresource, dry_run)

    def _write_scale(self, route: _Route, scale: JSON, dry_run: bool) -> JSON:
        rt, st = route.rt, self.api.store
        ns = route.namespace or ""
        obj = st.get(rt, ns, route.name)
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != obj["metadata"]["resourceVersion"]:
            raise status.stale(rt.plural, rt.group, route.name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise status.invalid("Scale", "autoscaling", route.name, [status.invalid_value(
                "spec.replicas", replicas, "must be greater than or equal to 0")])
        spec_path, _, _ = _scale_paths(rt)
        _set_path(obj, spec_path, replicas)
        updated = st.update(rt, ns, route.name, obj, "", dry_run)
        return _scale_of(rt, updated)

    def _resize(self, route: _Route, old: JSON, new: JSON, dry_run: bool) -> JSON:
        rt, st = route.rt, self.api.store
        causes = validation.resize_causes(new, old, self.api.version)
        if causes:
            raise status.invalid("Pod", "", route.name, causes)
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise status.stale(rt.plural, rt.group, route.name)
        merged = copy.deepcopy(old)
        merged["spec"]["containers"] = copy.deepcopy(new["spec"]["containers"])
        stored = st.update(rt, route.namespace or "", route.name, merged, "resize", dry_run)
        if not dry_run and stored["metadata"]["resourceVersion"] != old["metadata"][
                "resourceVersion"]:
            # The API server only records the desired resources; the node's kubelet
            # carries them out later and reports progress in pod conditions.
            self.api.kubelet.resized(stored)
        return stored

    def _delete(self, route: _Route, body: Any, query: dict[str, str], dry_run: bool) -> JSON:
        rt, st = route.rt, self.api.store
        options = dict(body) if isinstance(body, dict) else {}
        if query.get("gracePeriodSeconds", "").lstrip("-").isdigit():
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        obj, present = st.delete(rt, route.namespace or "", route.name, options, dry_run)
        if present or st.returns_object(rt):
            return obj
        return status.success({"name": route.name, "group": rt.group, "kind": rt.plural,
                               "uid": obj["metadata"]["uid"]})

    def _delete_collection(self, route: _Route, query: dict[str, str], dry_run: bool) -> JSON:
        rt, st = route.rt, self.api.store
        pred = _predicate(rt, query)
        with st.lock:
            items, _, _ = st.select(rt, route.namespace, pred)
            out = []
            for item in items:
                obj, _present = st.delete(rt, item["metadata"].get("namespace", ""),
                                          item["metadata"]["name"], None, dry_run)
                out.append(obj)
            return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(st.rv)}, "items": out}

    # ------------------------------------------------------------------ eviction

    def _evict(self, route: _Route, body: Any, dry_run: bool) -> None:
        st = self.api.store
        ns = route.namespace or ""
        eviction = body if isinstance(body, dict) else {}
        options = eviction.get("deleteOptions") or {}
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        with st.lock:
            pod = st.get(route.rt, ns, route.name)
            uid = (options.get("preconditions") or {}).get("uid")
            if uid and uid != pod["metadata"]["uid"]:
                raise status.ApiError(
                    409,
                    f'Operation cannot be fulfilled on Pod "{route.name}": the UID in the '
                    f"precondition ({uid}) does not match the UID in record "
                    f"({pod['metadata']['uid']}). The object might have been deleted and then "
                    "recreated", "Conflict", {"name": route.name, "kind": "Pod"})
            phase = (pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and not pod["metadata"].get(
                    "deletionTimestamp"):
                self._check_budgets(pod, dry_run)
            options = {k: v for k, v in options.items() if k != "preconditions"}
            st.delete(route.rt, ns, route.name, options, dry_run)
        self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201})

    def _check_budgets(self, pod: JSON, dry_run: bool) -> None:
        """Refuse an eviction its PodDisruptionBudget does not allow (call under the lock)."""
        st = self.api.store
        ns = pod["metadata"]["namespace"]
        pdb_type = st.type_for("policy", "v1", "poddisruptionbudgets")
        pdbs = disruption_mod.budgets_for(st.objects, ns, pod["metadata"].get("labels") or {})
        if len(pdbs) > 1:
            raise status.ApiError(500, MULTIPLE_PDBS, None, None)
        if not pdbs:
            return
        pdb = copy.deepcopy(pdbs[0])
        spec = pdb.get("spec") or {}
        b = disruption_mod.budget(st.objects, pdb)
        new_status = {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "disruptionsAllowed": b.allowed, "currentHealthy": b.healthy,
            "desiredHealthy": b.desired, "expectedPods": b.expected,
        }
        if not dry_run:
            pdb["status"] = {**(pdb.get("status") or {}), **new_status}
            st.update(pdb_type, ns, pdb["metadata"]["name"], pdb, "status")
        if not disruption_mod.pod_healthy(pod) and (
            spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow" or b.healthy >= b.desired
        ):
            return
        if b.allowed <= 0:
            raise status.too_many_requests(PDB_VIOLATION, 0, [{
                "reason": "DisruptionBudget",
                "message": f"The disruption budget {pdb['metadata']['name']} needs {b.desired} "
                           f"healthy pods and has {b.healthy} currently"}])

    # ------------------------------------------------------------------ node proxy

    def _node_proxy(self, method: str, route: _Route, query: dict[str, str]) -> None:
        """Only the kubelet checkpoint API: POST nodes/{n}/proxy/checkpoint/{ns}/{pod}/{c}.

        The API server finds the node (404 Status if missing) and passes the kubelet's
        answer through as it came (the simulated kubelet's, see kubelet.Kubelet.checkpoint).
        The proxied path is split as Go decodes it: the client escapes its slashes.
        """
        node = self.api.store.get(route.rt, "", route.name)
        rest = [p for part in route.rest for p in part.split("/") if p]
        code, content_type, body = self.api.kubelet.checkpoint(method, node, rest, query)
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


# ---------------------------------------------------------------------- helpers


def _openapi_v3(gv_path: list[str],
                gvs: dict[str, dict[str, list[resources.ResourceType]]]) -> JSON:
    """Just enough OpenAPI v3 for kubectl to see that PATCH takes `fieldValidation`.

    kubectl apply/create validate on the server when the PATCH operation of a kind lists
    that parameter, and otherwise download the full schema; this spares the schema.
    """
    if not gv_path:
        paths: JSON = {}
        for group, versions in gvs.items():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=kubeapi"}
        return {"paths": paths}
    if gv_path[0] == "api" and len(gv_path) == 2:
        group, version = "", gv_path[1]
    elif gv_path[0] == "apis" and len(gv_path) == 3:
        group, version = gv_path[1], gv_path[2]
    else:
        raise status.ApiError(404, "the server could not find the requested resource",
                              "NotFound", {})
    types = gvs.get(group, {}).get(version)
    if not types:
        raise status.ApiError(404, "the server could not find the requested resource",
                              "NotFound", {})
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    ops: JSON = {}
    for t in types:
        scope = "/namespaces/{namespace}" if t.namespaced else ""
        ops[f"{prefix}{scope}/{t.plural}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version,
                                                "kind": t.kind},
            "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                           for n in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.34.0"},
            "paths": ops}


def _monotonic() -> float:
    import time

    return time.monotonic()


def _obj(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise status.bad_request("the body of the request was in an unknown format")
    return body


def _versioned(rt: resources.ResourceType, obj: JSON) -> JSON:
    obj["apiVersion"] = rt.api_version
    return obj


def _api_group(group: str, versions: dict[str, list[resources.ResourceType]]) -> JSON:
    order = sorted(versions, key=_version_priority)
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in order]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs,
            "preferredVersion": vs[0]}


def _version_priority(v: str) -> tuple[int, int, str]:
    """Kube version ordering: GA before beta before alpha, higher numbers first."""
    import re

    m = re.match(r"^v(\d+)(alpha|beta)?(\d*)$", v)
    if not m:
        return (3, 0, v)
    major, stage, minor = m.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major) * 1000 - int(minor or 0), v)


def _predicate(rt: resources.ResourceType, query: dict[str, str]) -> Any:
    labels = selectors.parse_label_selector(query.get("labelSelector", ""))
    fields = selectors.parse_field_selector(query.get("fieldSelector", ""), rt.field_selectors)

    def pred(obj: JSON) -> bool:
        return labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)

    return pred


def _watch_event(rt: resources.ResourceType, namespace: str | None, pred: Any,
                 ev: store.Event) -> JSON | None:
    if ev.key != rt.key or (namespace is not None and ev.namespace != namespace):
        return None
    now_match = pred(ev.obj)
    was_match = ev.prev is not None and pred(ev.prev)
    kind = ev.type
    if kind == "ADDED" and not now_match:
        return None
    if kind == "MODIFIED":
        if now_match and not was_match:
            kind = "ADDED"
        elif was_match and not now_match:
            kind = "DELETED"
        elif not now_match:
            return None
    if kind == "DELETED" and ev.type == "DELETED" and not was_match:
        return None
    return {"type": kind, "object": _versioned(rt, copy.deepcopy(ev.obj))}


def _apply_patch(kind: str, current: JSON, body: Any) -> JSON:
    if kind == "json":
        try:
            return patch_mod.apply_json_patch(current, body)
        except patch_mod.JsonPatchFailed as e:
            raise status.generic(422) from e
    if not isinstance(body, dict):
        raise status.bad_request(
            "json: cannot unmarshal array into Go value of type map[string]interface {}")
    if kind == "merge":
        out = patch_mod.merge_patch(current, body)
    else:
        out = patch_mod.strategic_merge_patch(current, body)
    assert isinstance(out, dict)
    return out


def _scale_paths(rt: resources.ResourceType) -> tuple[str, str, str]:
    if rt.scale_paths:
        return (rt.scale_paths.get("specReplicasPath", ".spec.replicas"),
                rt.scale_paths.get("statusReplicasPath", ".status.replicas"),
                rt.scale_paths.get("labelSelectorPath", ""))
    return ".spec.replicas", ".status.replicas", ""


def _get_path(obj: JSON, path: str) -> Any:
    cur: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: JSON, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _selector_string(selector: JSON | None) -> str:
    if not selector:
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        key = expr.get("key")
        values = ",".join(sorted(expr.get("values") or []))
        terms.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": f"{key}", "DoesNotExist": f"!{key}"}.get(op, ""))
    return ",".join(t for t in terms if t)


def _scale_of(rt: resources.ResourceType, obj: JSON) -> JSON:
    spec_path, status_path, selector_path = _scale_paths(rt)
    meta = obj["metadata"]
    if selector_path:
        selector = _get_path(obj, selector_path) or ""
    else:
        selector = _selector_string((obj.get("spec") or {}).get("selector"))
    out_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                     "creationTimestamp") if k in meta}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": out_meta,
        "spec": {"replicas": _get_path(obj, spec_path) or 0},
        "status": {"replicas": _get_path(obj, status_path) or 0, "selector": selector},
    }


def _fault_error(rule: faults_mod.Rule, info: faults_mod.RequestInfo) -> status.ApiError:
    code = rule.code
    name = info.name or "unknown"
    if code == 409:
        if info.verb == "create":
            return status.already_exists(info.resource, info.group, name)
        return status.stale(info.resource, info.group, name)
    if code == 429:
        retry = 1 if rule.retry_after is None else rule.retry_after
        return status.too_many_requests(
            rule.message or "Too many requests, please try again later.", retry)
    if code == 404:
        return status.not_found(info.resource, info.group, name)
    if code == 403:
        return status.forbidden(info.resource, info.group, info.name,
                                rule.message or "injected fault")
    if code == 504:
        return status.timeout(rule.message or "request did not complete within requested timeout"
                              " - context deadline exceeded")
    if code == 503:
        return status.service_unavailable(rule.message or "the server is currently unable to "
                                          "handle the request")
    if code == 422:
        return status.invalid("Object", info.group, name, [status.invalid_value(
            "spec", "injected", rule.message or "injected fault")])
    if code >= 500:
        return status.internal(rule.message or "injected fault")
    return status.ApiError(code, rule.message or "injected fault", None, {})
