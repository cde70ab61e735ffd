"""The live-migration admission webhook (`reconciler webhook`, runtime/webhook.py) as the
API server meets it: the real server over real TLS (certificates from a trustme CA, the
client verifying them with `requests`), AdmissionReview documents POSTed to /mutate, the
index fed from a real store.

Cases:
- SQLite store: /readyz is ready once the first list is done, /healthz answers; an Applied
  live migration's values are patched onto a new pod of its Deployment (decoded and
  checked), keep-alive connections answer review after review; a status write that
  changes nothing it reads keeps it; the recommendation moving to RolledBack stops the
  mutation, and Applied again (a second recommendation, on other fields, merged with the
  first) starts it; persist `template` never mutates, nor a Superseded one;
- Kube store against the test API server (CRDs installed): the same through list and
  watch, and deleting the custom resource stops the mutation; /readyz says not ready while
  the list fails (the API answering 503), and reviews are still answered, allowed and
  unpatched; ready once the list succeeds;
- the test API server calling the webhook (tests/fakes/kubeapi/admission.py) through a
  MutatingWebhookConfiguration as the chart writes it (url + caBundle, failurePolicy
  Ignore, timeoutSeconds 2, namespaceSelector excluding the release namespace and
  kube-system): a pod created through the official client with a generateName is stored
  with the recommended resources; a pod of another Deployment and a pod in kube-system are
  stored as sent (the latter without a call); after the rollback a new pod keeps its
  template's values;
- HTTP: a body that is not JSON, not an AdmissionReview, or not sent as application/json is
  a 400, a body over the limit a 413, an unknown path a 404; the connection stays usable
  after a 400, and a 413 or a POST to an unknown path (body left unread) says
  `Connection: close`, so the client's next request never meets a closed socket;
- metrics on the TLS port and on the plain --metrics-addr: requests by result, patches by
  kind, the latency histogram's count, the indexed workloads, the store's lists;
- certificates: TLS 1.2 or later only (the context's minimum); rotated as a Secret volume
  rotates them (the ..data symlink swapped) the new certificate is served, the old CA no
  longer verifies, the reload is counted; files that change into something unloadable keep
  the previous certificate serving and count an error;
- the log: each mutation names the pod (namespace/generateName*), the workload, the
  recommendation and the values; nothing of the request body (a secret-looking env value,
  the image) appears;
- the CLI: missing, unreadable (a directory) and mismatched certificate files exit 2 naming
  the file; `reconciler webhook` as its own process, configured by DAKR_WEBHOOK_* variables,
  serves reviews and /metrics and exits 0 on SIGTERM.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import trustme

from reconciler import wiring
from reconciler.adapters.store import port as store_port
from reconciler.cli import main as cli
from reconciler.config import settings
from reconciler.domain import admission, model
from reconciler.runtime import webhook
from tests import crds
from tests.fakes.kubeapi.admission import mutating_configuration, mutating_webhook
from tests.fakes.kubeapi.handle import KubeApi, typed_api
from tests.integration.run_support import free_port, get, samples, value
from tests.integration.runtime.operator_support import wait_for

NS = "shop"
HASH = "5d8f7c9b4"
WORKLOAD = model.WORKLOAD
SECRET = "hunter2-do-not-log"


# --------------------------------------------------------------------------- certificates


class SecretVolume:
    """tls.crt and tls.key as a Kubernetes Secret volume holds them: symlinks through
    ``..data`` to a timestamped directory, all swapped at once on rotation."""

    def __init__(self, root: Path, cert: trustme.LeafCert) -> None:
        self.root = root
        root.mkdir(parents=True)
        self._n = 0
        self.write(cert)
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(Path("..data") / name)

    @property
    def cert(self) -> str:
        return str(self.root / "tls.crt")

    @property
    def key(self) -> str:
        return str(self.root / "tls.key")

    def write(self, cert: trustme.LeafCert | None, *, raw: bytes | None = None) -> None:
        self._n += 1
        data = self.root / f"..2025_01_01_00_00_{self._n:02d}"
        data.mkdir()
        if cert is not None:
            for i, pem in enumerate(cert.cert_chain_pems):
                pem.write_to_path(str(data / "tls.crt"), append=i > 0)
            cert.private_key_pem.write_to_path(str(data / "tls.key"))
        else:
            (data / "tls.crt").write_bytes(raw or b"")
            (data / "tls.key").write_bytes(raw or b"")
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.root / "..data")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def volume(ca: trustme.CA, tmp_path: Path) -> SecretVolume:
    return SecretVolume(tmp_path / "tls", ca.issue_cert("127.0.0.1", "localhost"))


# --------------------------------------------------------------------------- the webhook


Start = Callable[..., webhook.Webhook]


@pytest.fixture
def start_webhook(volume: SecretVolume) -> Iterator[Start]:
    """Start webhooks (closed, threads joined, at the end of the test)."""
    started: list[webhook.Webhook] = []

    def start(store: str, **options: Any) -> webhook.Webhook:
        cfg = settings.WebhookSettings(tls_cert=volume.cert, tls_key=volume.key, port=0,
                                       address="127.0.0.1", store=store,
                                       reload_interval=0.05, **options)
        hook = webhook.Webhook(cfg).start()
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.close()


def new_session(verify: str) -> requests.Session:
    """A client that verifies with ``verify`` (and not with REQUESTS_CA_BUNDLE, which
    requests would let win over a session's ``verify``), without proxies."""
    s = requests.Session()
    s.trust_env = False
    s.verify = verify
    return s


@pytest.fixture
def session(ca_file: str) -> Iterator[requests.Session]:
    with new_session(ca_file) as s:
        yield s


def url(hook: webhook.Webhook, path: str = "/mutate") -> str:
    return f"https://127.0.0.1:{hook.port}{path}"


def pod(name: str = "web", *, namespace: str = NS, cpu: str = "500m",
        generate: bool = True) -> dict[str, Any]:
    """A pod as its ReplicaSet creates it for Deployment ``name``."""
    meta: dict[str, Any] = {
        "namespace": namespace,
        "labels": {"app": name, "pod-template-hash": HASH},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": f"{name}-{HASH}", "uid": f"uid-{name}",
                             "controller": True, "blockOwnerDeletion": True}]}
    if generate:
        meta["generateName"] = f"{name}-{HASH}-"
    else:
        meta["name"] = f"{name}-{HASH}-x1"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{
        "name": "app", "image": "registry.example/app:1",
        "env": [{"name": "DB_PASSWORD", "value": SECRET}],
        "resources": {"requests": {"cpu": cpu, "memory": "256Mi"},
                      "limits": {"memory": "512Mi"}}}]}}


def review(obj: dict[str, Any], uid: str = "uid-1") -> dict[str, Any]:
    kind = {"group": "", "version": "v1", "kind": "Pod"}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": kind, "resource": resource, "requestKind": kind,
        "requestResource": resource, "name": "", "namespace": obj["metadata"]["namespace"],
        "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:kube-system:"
                                                        "replicaset-controller"},
        "object": obj, "oldObject": None, "dryRun": False}}


def ask(s: requests.Session, hook: webhook.Webhook, obj: dict[str, Any],
        uid: str = "uid-1") -> dict[str, Any]:
    """POST one review; the response's ``response`` with its patch decoded (``ops``)."""
    r = s.post(url(hook) + "?timeout=2s", json=review(obj, uid), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert (doc["apiVersion"], doc["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    resp: dict[str, Any] = doc["response"]
    assert resp["uid"] == uid and resp["allowed"] is True
    resp["ops"] = json.loads(base64.b64decode(resp["patch"])) if "patch" in resp else []
    if resp["ops"]:
        assert resp["patchType"] == "JSONPatch"
    return resp


def cpu_op(value: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/spec/containers/0/resources/requests/cpu",
             "value": value}]


# --------------------------------------------------------------------------- records


def live_spec(rid: str, target: str = "web") -> dict[str, Any]:
    return {"recommendationId": rid, "action": "LiveMigration", "confidence": 0.9,
            "targetRef": {"kind": "Deployment", "name": target},
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "200m"}}}]}


def live_status(phase: str, values: dict[str, Any], target: str = "web",
                persist: str = "webhook") -> dict[str, Any]:
    return {"phase": phase, "observedGeneration": 1,
            "previous": {"containers": {"app": {"requests": {"cpu": "500m"}}},
                         "set": {"containers": values},
                         "target": {"kind": "Deployment", "namespace": NS, "name": target}},
            "liveMigration": {"persist": persist, "fallback": "none"}}


def put(st: store_port.Store, rid: str, phase: str = "Applied",
        values: dict[str, Any] | None = None, target: str = "web",
        persist: str = "webhook", message: str = "") -> None:
    """A live migration as the executor leaves it: stored, then its status written."""
    if st.get(WORKLOAD, rid) is None:
        st.upsert(WORKLOAD, rid, NS, rid, live_spec(rid, target))
    rec = st.get(WORKLOAD, rid)
    assert rec is not None
    status = live_status(phase, values or {"app": {"requests": {"cpu": "200m"}}}, target,
                         persist)
    if message:
        status["message"] = message
    st.update_status(WORKLOAD, rid, status, rec.resource_version)


def hook_cache_record(hook: webhook.Webhook, rid: str) -> store_port.Record | None:
    """The record as the webhook's informer last saw it."""
    assert hook.informer is not None
    return hook.informer.cache.get(WORKLOAD, rid)


def ops_become(s: requests.Session, hook: webhook.Webhook, want: list[dict[str, Any]],
               obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer once its patch is ``want`` (the informer brings a change in a moment)."""
    got: dict[str, Any] = {}

    def check() -> bool:
        got.update(ask(s, hook, obj or pod()))
        return bool(got["ops"] == want)

    wait_for(check, timeout=20)
    return got


# --------------------------------------------------------------------------- SQLite


def test_sqlite_store_feeds_the_index(start_webhook: Start, session: requests.Session,
                                      tmp_path: Path) -> None:
    path = tmp_path / "state" / "reconciler.db"
    st = wiring.open_store(f"sqlite:{path}")
    try:
        hook = start_webhook(f"sqlite:{path}")
        wait_for(lambda: session.get(url(hook, "/readyz"), timeout=5).status_code == 200)
        assert session.get(url(hook, "/healthz"), timeout=5).text == "ok\n"
        assert ask(session, hook, pod())["ops"] == []  # nothing indexed yet

        put(st, "rec-1")
        ops_become(session, hook, cpu_op("200m"))
        for i in range(20):  # review after review on the session's one connection
            assert ask(session, hook, pod(), uid=f"u-{i}")["ops"] == cpu_op("200m")
        assert ask(session, hook, pod(cpu="200m"))["ops"] == []  # already has it
        assert ask(session, hook, pod("api"))["ops"] == []        # another Deployment

        # A status write that changes nothing the webhook reads, then the rollback.
        put(st, "rec-1", message="3 of 3 pods resized")
        wait_for(lambda: st.get(WORKLOAD, "rec-1") == hook_cache_record(hook, "rec-1"))
        put(st, "rec-1", "RolledBack")
        ops_become(session, hook, [])

        put(st, "rec-2", values={"app": {"limits": {"memory": "1Gi"}}})
        memory = [{"op": "add", "path": "/spec/containers/0/resources/limits/memory",
                   "value": "1Gi"}]
        ops_become(session, hook, memory)
        put(st, "rec-1", "Applied")  # both now: different fields, merged
        ops_become(session, hook, cpu_op("200m") + memory)
        assert hook.index.ids[(NS, "Deployment", "web")] == ("rec-1", "rec-2")

        put(st, "rec-3", target="cart", persist="template")
        put(st, "rec-4", target="cart", phase="Applied")
        ops_become(session, hook, cpu_op("200m"), pod("cart"))
        put(st, "rec-4", target="cart", phase="Superseded")
        ops_become(session, hook, [], pod("cart"))
    finally:
        st.close()


# --------------------------------------------------------------------------- Kube


@pytest.fixture
def kube_store(kubeapi: KubeApi) -> Iterator[store_port.Watchable]:
    crds.install_crds(kubeapi)
    kubeapi.ensure_namespace(NS)
    st = wiring.open_store("kube", settings.KubeSettings(kubeconfig=kubeapi.kubeconfig_path))
    yield st
    st.close()


def kube_options(kubeapi: KubeApi) -> dict[str, Any]:
    return {"kube": settings.KubeSettings(kubeconfig=kubeapi.kubeconfig_path)}


def test_kube_store_list_watch_and_delete(start_webhook: Start, session: requests.Session,
                                          kubeapi: KubeApi,
                                          kube_store: store_port.Watchable) -> None:
    put(kube_store, "rec-listed")  # there before the webhook starts: found by the list
    hook = start_webhook("kube", **kube_options(kubeapi))
    wait_for(lambda: session.get(url(hook, "/readyz"), timeout=5).status_code == 200)
    assert ask(session, hook, pod())["ops"] == cpu_op("200m")

    put(kube_store, "rec-listed", "RolledBack")  # seen through the watch
    ops_become(session, hook, [])

    put(kube_store, "rec-watched", values={"app": {"requests": {"cpu": "250m"}}})
    ops_become(session, hook, cpu_op("250m"))
    custom = typed_api(kubernetes.client.CustomObjectsApi, kubeapi.api_client())
    custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, NS,
                                           "workloadrecommendations", "rec-watched")
    ops_become(session, hook, [])
    assert len(hook.index) == 0


def test_not_ready_until_the_first_list(start_webhook: Start, session: requests.Session,
                                        kubeapi: KubeApi,
                                        kube_store: store_port.Watchable) -> None:
    put(kube_store, "rec-1")
    rule = kubeapi.faults.fail_next(10**6, 503, verb="list",
                                    resource="workloadrecommendations")
    hook = start_webhook("kube", **kube_options(kubeapi))
    wait_for(lambda: rule.hits >= 1)
    r = session.get(url(hook, "/readyz"), timeout=5)
    assert r.status_code == 503 and "not listed yet" in r.text
    assert ask(session, hook, pod())["ops"] == []  # answered all the same, unpatched
    kubeapi.faults.clear()
    wait_for(lambda: session.get(url(hook, "/readyz"), timeout=5).status_code == 200)
    assert ask(session, hook, pod())["ops"] == cpu_op("200m")


# --------------------------------------------------------------------------- API server


def test_the_api_server_calls_the_webhook(start_webhook: Start, kubeapi: KubeApi,
                                          kube_store: store_port.Watchable,
                                          ca: trustme.CA, session: requests.Session) -> None:
    put(kube_store, "rec-1")
    hook = start_webhook("kube", **kube_options(kubeapi))
    wait_for(lambda: session.get(url(hook, "/readyz"), timeout=5).status_code == 200)
    kubeapi.ensure_namespace("kube-system")
    registration = typed_api(kubernetes.client.AdmissionregistrationV1Api,
                             kubeapi.api_client())
    registration.create_mutating_webhook_configuration(mutating_configuration(
        "dakr-live-migration", mutating_webhook(
            "live-migration.dakr.devzero.io", url(hook), ca.cert_pem.bytes(),
            failure_policy="Ignore", timeout_seconds=2, reinvocation_policy="Never",
            namespace_selector={"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["dakr-system", "kube-system"]}]})))
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())

    def create(obj: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(obj)
        ns = body["metadata"].pop("namespace")
        created = core.create_namespaced_pod(ns, body)
        return kubeapi.get("v1", "Pod", created.metadata.name, ns)

    def cpu_of(stored: dict[str, Any]) -> str:
        return str(stored["spec"]["containers"][0]["resources"]["requests"]["cpu"])

    stored = create(pod())
    assert stored["metadata"]["name"].startswith(f"web-{HASH}-")
    assert cpu_of(stored) == "200m"
    assert stored["spec"]["containers"][0]["resources"]["limits"] == {"memory": "512Mi"}
    (call,) = kubeapi.admission.calls
    assert call.patched and call.error is None

    assert cpu_of(create(pod("api"))) == "500m"  # another Deployment: called, not patched
    assert cpu_of(create(pod(namespace="kube-system"))) == "500m"  # not even called
    assert len(kubeapi.admission.calls) == 2

    put(kube_store, "rec-1", "RolledBack")
    wait_for(lambda: (NS, "Deployment", "web") not in hook.index.entries)
    assert cpu_of(create(pod())) == "500m"


# --------------------------------------------------------------------------- HTTP


def test_http_errors(start_webhook: Start, session: requests.Session, tmp_path: Path) -> None:
    hook = start_webhook(f"sqlite:{tmp_path / 'r.db'}", max_body=4096)
    post = session.post
    for body, ctype, code in (
            (b"{not json", "application/json", 400),
            (json.dumps({"kind": "TokenReview"}).encode(), "application/json", 400),
            (json.dumps(review(pod())).encode(), "text/plain", 400),
            (json.dumps([review(pod())]).encode(), "application/json", 400)):
        r = post(url(hook), data=body, headers={"Content-Type": ctype}, timeout=5)
        assert r.status_code == code, (body[:20], r.text)
    assert ask(session, hook, pod())["ops"] == []  # the same connection goes on
    big = json.dumps(review(pod()) | {"padding": "x" * 5000}).encode()
    r = post(url(hook), data=big, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 413
    assert r.headers["Connection"] == "close"  # its body is left unread: said, not guessed
    assert session.get(url(hook, "/nope"), timeout=5).status_code == 404
    r = post(url(hook, "/validate"), json={}, timeout=5)
    assert r.status_code == 404 and r.headers["Connection"] == "close"
    scrape = samples(session.get(url(hook, "/metrics"), timeout=5).text)
    assert value(scrape, "dakr_webhook_requests_total", result="bad_request") == 5
    assert value(scrape, "dakr_webhook_requests_total", result="ignored") == 1


# --------------------------------------------------------------------------- metrics


def test_metrics(start_webhook: Start, session: requests.Session, tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    st = wiring.open_store(f"sqlite:{path}")
    mport = free_port()
    try:
        put(st, "rec-1")
        hook = start_webhook(f"sqlite:{path}", metrics_addr=f"127.0.0.1:{mport}")
        ops_become(session, hook, cpu_op("200m"))
        for _ in range(3):
            ask(session, hook, pod())
        ask(session, hook, pod(cpu="200m"))
        ask(session, hook, pod("api"))
        plain_code, plain = get(f"http://127.0.0.1:{mport}/metrics")
        tls = session.get(url(hook, "/metrics"), timeout=5).text
    finally:
        st.close()
    assert plain_code == 200
    for text in (tls, plain):
        m = samples(text)
        patched = value(m, "dakr_webhook_requests_total", result="patched")
        assert patched >= 4  # ops_become's last answer, and three more
        assert value(m, "dakr_webhook_patches_total", kind="Deployment") == patched
        assert value(m, "dakr_webhook_requests_total", result="unchanged") == 1
        assert value(m, "dakr_webhook_requests_total", result="ignored") == 1
        assert value(m, "dakr_webhook_request_duration_seconds_count") == patched + 2
        assert value(m, "dakr_webhook_indexed_workloads") == 1
        assert value(m, "dakr_informer_lists_total", kind=WORKLOAD) == 1
    assert get(f"http://127.0.0.1:{mport}/healthz")[0] == 404  # metrics only there


# --------------------------------------------------------------------------- certificates


def test_tls_1_2_or_later(start_webhook: Start, ca_file: str, tmp_path: Path) -> None:
    hook = start_webhook(f"sqlite:{tmp_path / 'r.db'}")
    assert hook.tls is not None
    assert hook.tls.context().minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", hook.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.2"
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")


def test_certificate_rotation(start_webhook: Start, volume: SecretVolume, tmp_path: Path,
                              ca_file: str) -> None:
    hook = start_webhook(f"sqlite:{tmp_path / 'r.db'}")
    new_ca = trustme.CA()
    new_ca_file = tmp_path / "new-ca.pem"
    new_ca.cert_pem.write_to_path(str(new_ca_file))

    def healthz(cafile: Path | str) -> int:
        with new_session(str(cafile)) as s:  # a new connection each time: a handshake
            try:
                return s.get(url(hook, "/healthz"), timeout=5).status_code
            except requests.exceptions.SSLError:
                return 0

    assert healthz(ca_file) == 200 and healthz(new_ca_file) == 0
    volume.write(new_ca.issue_cert("127.0.0.1"))
    wait_for(lambda: healthz(new_ca_file) == 200)
    assert healthz(ca_file) == 0

    def reloads(result: str) -> float:
        return value(samples(hook.metrics.exposition().decode()),
                     "dakr_webhook_certificate_reloads_total", result=result)

    assert reloads("ok") == 1 and reloads("error") == 0
    volume.write(None, raw=b"-----BEGIN CERTIFICATE-----\nnot one\n")
    wait_for(lambda: reloads("error") == 1)
    assert healthz(new_ca_file) == 200  # the previous certificate goes on serving
    assert reloads("ok") == 1


# --------------------------------------------------------------------------- the log


def test_mutations_are_logged_without_the_request(start_webhook: Start,
                                                  session: requests.Session, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.db"
    st = wiring.open_store(f"sqlite:{path}")
    try:
        put(st, "rec-1", values={"app": {"requests": {"cpu": "200m"},
                                         "limits": {"memory": "1Gi"}}})
        with caplog.at_level(logging.INFO, logger="reconciler.runtime.webhook"):
            hook = start_webhook(f"sqlite:{path}")
            wait_for(lambda: (NS, "Deployment", "web") in hook.index.entries)
            assert ask(session, hook, pod())["ops"]
            guaranteed = pod()
            guaranteed["spec"]["containers"][0]["resources"] = {
                "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1",
                                                                    "memory": "1Gi"}}
            skipped = ask(session, hook, guaranteed)
    finally:
        st.close()
    assert skipped["ops"] == [] and "QoS class" in skipped["warnings"][0]
    lines = [r.getMessage() for r in caplog.records]
    assert (f"pod {NS}/web-{HASH}-* of Deployment {NS}/web: set app: limits memory=1Gi; "
            "requests cpu=200m (recommendation rec-1)") in lines
    assert any("not changed (recommendation rec-1)" in ln and "QoS class" in ln
               for ln in lines)
    assert SECRET not in caplog.text and "registry.example" not in caplog.text


# --------------------------------------------------------------------------- the CLI


def test_cli_refuses_bad_certificate_files(tmp_path: Path, ca: trustme.CA,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    other = SecretVolume(tmp_path / "other", ca.issue_cert("127.0.0.1"))
    mine = SecretVolume(tmp_path / "mine", ca.issue_cert("127.0.0.1"))
    missing = str(tmp_path / "missing.crt")
    base = ["webhook", "--store", f"sqlite:{tmp_path / 'r.db'}", "--port", "0"]
    for cert, key, says in (
            (missing, mine.key, f"--tls-cert {missing}: no such file"),
            (mine.cert, str(tmp_path), f"--tls-key {tmp_path}: cannot be read"),
            (mine.cert, other.key, "not a PEM certificate and its private key")):
        assert cli.main([*base, "--tls-cert", cert, "--tls-key", key]) == 2
        err = capsys.readouterr().err
        assert says in err, err
    assert cli.main([*base]) == 2
    assert "--tls-cert and --tls-key" in capsys.readouterr().err


def test_cli_process(tmp_path: Path, volume: SecretVolume, ca_file: str) -> None:
    path = tmp_path / "state" / "reconciler.db"
    st = wiring.open_store(f"sqlite:{path}")
    put(st, "rec-1")
    st.close()
    port, mport = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DAKR_WEBHOOK_PORT": str(port),
           "DAKR_WEBHOOK_TLS_CERT": volume.cert, "DAKR_WEBHOOK_TLS_KEY": volume.key,
           "DAKR_METRICS_ADDR": f"127.0.0.1:{mport}", "DAKR_WORK_DIR": str(path.parent),
           "DAKR_LOG_LEVEL": "info"}
    log_path = tmp_path / "webhook.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "webhook", "--store",
                                 "sqlite"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        with new_session(ca_file) as s:
            base = f"https://127.0.0.1:{port}"

            def ready() -> bool:
                with contextlib.suppress(requests.exceptions.ConnectionError):
                    return s.get(f"{base}/readyz", timeout=5).status_code == 200
                assert proc.poll() is None, log_path.read_text()
                return False

            wait_for(ready, timeout=60)
            r = s.post(f"{base}/mutate", json=review(pod()), timeout=5).json()["response"]
        assert json.loads(base64.b64decode(r["patch"])) == cpu_op("200m")
        assert value(samples(get(f"http://127.0.0.1:{mport}/metrics")[1]),
                     "dakr_webhook_requests_total", result=admission.PATCHED) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    logs = log_path.read_text()
    assert rc == 0, logs
    assert "set app: requests cpu=200m (recommendation rec-1)" in logs
    assert SECRET not in logs
