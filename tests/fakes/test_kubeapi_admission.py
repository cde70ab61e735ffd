"""Mutating admission webhooks called by the test API server, proved with a real HTTPS webhook.

Each test runs a small webhook (http.server over TLS, certificate from a trustme CA), registers
it with a MutatingWebhookConfiguration through the official client and creates objects through
CoreV1Api, as a product's webhook would be tested.

Cases:
- a JSONPatch is applied: the returned and the stored pod carry it; the AdmissionReview sent
  has the real shape (uid, kind/resource, requestKind/requestResource, name, namespace,
  CREATE, userInfo, object, oldObject null, dryRun, CreateOptions, `?timeout=10s`); the call
  is recorded in `kubeapi.admission.calls`;
- generateName: the webhook sees an empty name and no metadata.name (names are generated
  after admission), the stored pod has a generated name and the patch;
- allowed:false -> the webhook's code (below 400 -> 400) and `admission webhook "<name>"
  denied the request: <message>` (or `without explanation`); nothing stored;
- objectSelector and namespaceSelector exclude (namespace labels, and the
  kubernetes.io/metadata.name label every namespace carries);
- rules: operations, apiGroups, resources, scope that do not match (a ConfigMap create, a rule
  for UPDATE, for apps, for pods/status, for cluster scope) do not call it; wildcards do;
- failurePolicy Ignore with the webhook down, a wrong CA, a webhook slower than
  timeoutSeconds, a response uid mismatch, a non-JSON or HTTP 500 answer, a service
  clientConfig -> the pod is created unmutated and the failure recorded;
- failurePolicy Fail (the default) with the same failures -> 500 `Internal error occurred:
  failed calling webhook "<name>": ...` and nothing stored;
- a patch that does not apply -> 500 whatever the failurePolicy;
- dryRun: a sideEffects None webhook is called with dryRun true and nothing is stored; one with
  sideEffects Some (which v1 refuses to store: 422) is not called and the request fails 400;
- webhooks run in configuration-name order; an IfNeeded webhook is reinvoked after a later
  webhook changed the object; a configuration is stored with the API's defaults.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest
import trustme

from tests.fakes.kubeapi.admission import (
    json_patch_response,
    mutating_configuration,
    mutating_webhook,
)
from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException
JSON = dict[str, Any]
Answer = Callable[[JSON], JSON | tuple[int, bytes]]

HOOK = "inject.example.com"


# ---------------------------------------------------------------------- a real webhook


class _WebhookServer(ThreadingHTTPServer):
    # Joined on close, so no handler thread outlives the test.
    daemon_threads = False
    block_on_close = True
    hook: Webhook


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        hook = self.server.hook
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        hook.received.append({"path": self.path, "review": review})
        out = hook.answer(review)
        code, data = (200, json.dumps(out).encode()) if isinstance(out, dict) else out
        # The API server may have given up (timeout): writing then fails, which is fine.
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class Webhook:
    """An HTTPS admission webhook on loopback; `answer(review)` makes each response."""

    def __init__(self, ca: trustme.CA, answer: Answer) -> None:
        self.answer = answer
        self.received: list[JSON] = []
        self.release = threading.Event()  # ends the waits of slow answers at stop()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        self._httpd = _WebhookServer(("127.0.0.1", 0), _WebhookHandler)
        self._httpd.hook = self
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="test-webhook")
        self._thread.start()
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}/mutate"

    @property
    def reviews(self) -> list[JSON]:
        return [r["review"] for r in self.received]

    def stop(self) -> None:
        if self._thread is None:
            return
        self.release.set()
        self._httpd.shutdown()
        self._thread.join()
        self._thread = None
        self._httpd.server_close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def webhooks(ca: trustme.CA) -> Iterator[Callable[[Answer], Webhook]]:
    """Start webhooks signed by `ca`; every one is stopped (threads joined) at the end."""
    started: list[Webhook] = []

    def start(answer: Answer) -> Webhook:
        hook = Webhook(ca, answer)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.stop()


# ---------------------------------------------------------------------- answers and helpers


def _add_labels(**labels: str) -> Answer:
    """A webhook that merges `labels` into the object's labels and adds a sidecar to pods."""

    def answer(review: JSON) -> JSON:
        obj = review["request"]["object"]
        merged = {**(obj["metadata"].get("labels") or {}), **labels}
        ops: list[JSON] = [{"op": "add", "path": "/metadata/labels", "value": merged}]
        return json_patch_response(review, ops)

    return answer


def _inject(review: JSON) -> JSON:
    ops: list[JSON] = [{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}]
    if review["request"]["kind"]["kind"] == "Pod":
        ops.append({"op": "add", "path": "/spec/containers/-",
                    "value": {"name": "sidecar", "image": "registry.example/sidecar:1"}})
    return json_patch_response(review, ops)


def _core(k: KubeApi) -> Any:
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def _register(k: KubeApi, name: str, *hooks: JSON) -> Any:
    api = typed_api(kubernetes.client.AdmissionregistrationV1Api, k.api_client())
    return api.create_mutating_webhook_configuration(mutating_configuration(name, *hooks))


def _pod(name: str | None = "web", labels: dict[str, str] | None = None,
         generate_name: str | None = None) -> JSON:
    meta: JSON = {"labels": dict(labels or {"app": "web"})}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}


# ---------------------------------------------------------------------- patching


def test_json_patch_is_applied_and_the_review_has_the_real_shape(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes()))

    created = _core(kubeapi).create_namespaced_pod("default", _pod())

    assert created.metadata.labels == {"app": "web", "injected": "yes"}
    stored = kubeapi.get("v1", "Pod", "web")
    assert stored["metadata"]["labels"] == {"app": "web", "injected": "yes"}
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app", "sidecar"]
    assert stored["status"]["phase"] == "Pending"  # stored as any create, after mutation

    (got,) = hook.received
    assert got["path"] == "/mutate?timeout=10s"
    review = got["review"]
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    req = review["request"]
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    pod_resource = {"group": "", "version": "v1", "resource": "pods"}
    assert req["kind"] == req["requestKind"] == pod_kind
    assert req["resource"] == req["requestResource"] == pod_resource
    assert (req["name"], req["namespace"], req["operation"]) == ("web", "default", "CREATE")
    assert req["userInfo"]["username"] == "kubernetes-admin"
    assert "system:authenticated" in req["userInfo"]["groups"]
    assert req["oldObject"] is None and req["dryRun"] is False
    assert req["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    sent = req["object"]
    assert (sent["apiVersion"], sent["kind"]) == ("v1", "Pod")
    assert sent["metadata"]["labels"] == {"app": "web"}
    assert sent["metadata"]["namespace"] == "default"
    assert "uid" not in sent["metadata"] and "resourceVersion" not in sent["metadata"]

    (call,) = kubeapi.admission.calls
    assert (call.webhook, call.configuration, call.uid, call.operation, call.kind,
            call.namespace, call.name) == (HOOK, "inject", req["uid"], "CREATE", "Pod",
                                           "default", "web")
    assert call.allowed is True and call.patched is True and call.error is None
    assert call.duration >= 0 and call.round == 0 and not call.dry_run


def test_generate_name_is_empty_when_the_webhook_is_called(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes()))

    created = _core(kubeapi).create_namespaced_pod(
        "default", _pod(name=None, generate_name="web-"))

    name = created.metadata.name
    assert name.startswith("web-") and len(name) > len("web-")
    assert kubeapi.get("v1", "Pod", name)["metadata"]["labels"]["injected"] == "yes"
    (req,) = [r["request"] for r in hook.reviews]
    assert req["name"] == ""
    assert "name" not in req["object"]["metadata"]
    assert req["object"]["metadata"]["generateName"] == "web-"
    (call,) = kubeapi.admission.calls
    assert (call.name, call.generate_name) == ("", "web-")


def test_a_patch_that_does_not_apply_is_a_500_even_when_ignored(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    def bad_patch(review: JSON) -> JSON:
        return json_patch_response(review, [
            {"op": "replace", "path": "/metadata/annotations/missing", "value": "x"}])

    hook = webhooks(bad_patch)
    _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes(),
                                                  failure_policy="Ignore"))
    with pytest.raises(ApiException) as e:
        _core(kubeapi).create_namespaced_pod("default", _pod())
    assert e.value.status == 500
    assert status_body(e.value)["message"].startswith("Internal error occurred: ")
    assert not kubeapi.exists("v1", "Pod", "web")
    (call,) = kubeapi.admission.calls
    assert call.allowed is True and not call.patched and call.error is not None


# ---------------------------------------------------------------------- rejection


@pytest.mark.parametrize(("webhook_status", "code", "message"), [
    ({"code": 403, "reason": "Forbidden", "message": "privileged pods are not allowed"}, 403,
     f'admission webhook "{HOOK}" denied the request: privileged pods are not allowed'),
    (None, 400, f'admission webhook "{HOOK}" denied the request without explanation'),
    ({"code": 200, "message": "no"}, 400, f'admission webhook "{HOOK}" denied the request: no'),
])
def test_allowed_false_rejects_with_the_webhooks_status(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA,
        webhook_status: JSON | None, code: int, message: str) -> None:
    def deny(review: JSON) -> JSON:
        return json_patch_response(review, allowed=False, status_=webhook_status)

    hook = webhooks(deny)
    _register(kubeapi, "deny", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes()))
    with pytest.raises(ApiException) as e:
        _core(kubeapi).create_namespaced_pod("default", _pod())
    assert e.value.status == code
    body = status_body(e.value)
    assert (body["code"], body["message"]) == (code, message)
    assert not kubeapi.exists("v1", "Pod", "web")
    (call,) = kubeapi.admission.calls
    assert call.allowed is False and call.error is None


# ---------------------------------------------------------------------- matching


def test_object_selector_excludes_unlabelled_objects(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    _register(kubeapi, "inject", mutating_webhook(
        HOOK, hook.url, ca.cert_pem.bytes(),
        object_selector={"matchLabels": {"inject": "yes"}}))
    core = _core(kubeapi)

    core.create_namespaced_pod("default", _pod("plain", {"app": "plain"}))
    assert hook.received == [] and kubeapi.admission.calls == []
    assert kubeapi.get("v1", "Pod", "plain")["metadata"]["labels"] == {"app": "plain"}

    core.create_namespaced_pod("default", _pod("opted", {"app": "opted", "inject": "yes"}))
    assert [c.name for c in kubeapi.admission.calls] == ["opted"]
    assert kubeapi.get("v1", "Pod", "opted")["metadata"]["labels"]["injected"] == "yes"


def test_namespace_selector_uses_the_namespaces_labels(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    core = _core(kubeapi)
    core.create_namespace({"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    core.create_namespace({"metadata": {"name": "team-b"}})
    by_label = webhooks(_add_labels(by_label="yes"))
    by_name = webhooks(_add_labels(by_name="yes"))
    _register(kubeapi, "selectors",
              mutating_webhook("label.example.com", by_label.url, ca.cert_pem.bytes(),
                               namespace_selector={"matchLabels": {"team": "a"}}),
              mutating_webhook("name.example.com", by_name.url, ca.cert_pem.bytes(),
                               namespace_selector={"matchExpressions": [{
                                   "key": "kubernetes.io/metadata.name", "operator": "In",
                                   "values": ["team-b"]}]}))

    core.create_namespaced_pod("team-a", _pod())
    core.create_namespaced_pod("team-b", _pod())

    assert [(c.webhook, c.namespace) for c in kubeapi.admission.calls] == [
        ("label.example.com", "team-a"), ("name.example.com", "team-b")]
    assert kubeapi.get("v1", "Pod", "web", "team-a")["metadata"]["labels"] == {
        "app": "web", "by_label": "yes"}
    assert kubeapi.get("v1", "Pod", "web", "team-b")["metadata"]["labels"] == {
        "app": "web", "by_name": "yes"}


@pytest.mark.parametrize(("rule", "create", "called"), [
    ({}, "configmap", False),
    ({"operations": ["UPDATE"]}, "pod", False),
    ({"api_groups": ["apps"]}, "pod", False),
    ({"api_versions": ["v2"]}, "pod", False),
    ({"resources": ["pods/status"]}, "pod", False),
    ({"scope": "Cluster"}, "pod", False),
    ({}, "pod", True),
    ({"operations": ["*"], "scope": "Namespaced", "resources": ["pods/*"]}, "pod", True),
    ({"api_groups": ["*"], "api_versions": ["*"], "resources": ["*"]}, "configmap", True),
])
def test_rules_decide_which_creates_are_sent(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA,
        rule: JSON, create: str, called: bool) -> None:
    hook = webhooks(_inject)
    _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes(), **rule))
    core = _core(kubeapi)
    if create == "pod":
        core.create_namespaced_pod("default", _pod())
        labels = kubeapi.get("v1", "Pod", "web")["metadata"]["labels"]
    else:
        core.create_namespaced_config_map("default", {
            "metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"k": "v"}})
        labels = kubeapi.get("v1", "ConfigMap", "settings")["metadata"]["labels"]
    assert len(hook.received) == len(kubeapi.admission.calls) == (1 if called else 0)
    assert ("injected" in labels) is called


# ---------------------------------------------------------------------- call failures

FAILURES = {
    "down": "connect: connection refused",
    "wrong-ca": "x509: certificate signed by unknown authority",
    "slow": "context deadline exceeded",
    "uid-mismatch": "received invalid webhook response: expected response.uid=",
    "not-json": "failed to call webhook: ",
    "http-500": "HTTP 500",
    "service": "no such host",
}


def _failing_webhook(kind: str, webhooks: Callable[[Answer], Webhook], ca: trustme.CA,
                     policy: str | None) -> JSON:
    """A webhook registration whose calls fail in the given way."""
    pem = ca.cert_pem.bytes()
    if kind == "down":
        hook = webhooks(_inject)
        hook.stop()
        return mutating_webhook(HOOK, hook.url, pem, failure_policy=policy)
    if kind == "wrong-ca":
        other = trustme.CA().cert_pem.bytes()
        return mutating_webhook(HOOK, webhooks(_inject).url, other, failure_policy=policy)
    if kind == "slow":
        def slow(review: JSON) -> JSON:
            hook.release.wait(10)
            return _inject(review)

        hook = webhooks(slow)
        return mutating_webhook(HOOK, hook.url, pem, failure_policy=policy, timeout_seconds=1)
    if kind == "uid-mismatch":
        def wrong_uid(review: JSON) -> JSON:
            out = _inject(review)
            out["response"]["uid"] = "not-the-request-uid"
            return out

        return mutating_webhook(HOOK, webhooks(wrong_uid).url, pem, failure_policy=policy)
    if kind == "not-json":
        return mutating_webhook(HOOK, webhooks(lambda _r: (200, b"<html>ok</html>")).url, pem,
                                failure_policy=policy)
    if kind == "http-500":
        return mutating_webhook(HOOK, webhooks(lambda _r: (500, b"boom")).url, pem,
                                failure_policy=policy)
    assert kind == "service"
    return mutating_webhook(HOOK, None, pem, failure_policy=policy, service={
        "namespace": "default", "name": "webhook", "path": "/mutate"})


@pytest.mark.parametrize("kind", list(FAILURES))
def test_failure_policy_ignore_creates_the_object_unmutated(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA,
        kind: str) -> None:
    _register(kubeapi, "inject", _failing_webhook(kind, webhooks, ca, "Ignore"))

    created = _core(kubeapi).create_namespaced_pod("default", _pod())

    assert created.metadata.labels == {"app": "web"}
    stored = kubeapi.get("v1", "Pod", "web")
    assert stored["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
    (call,) = kubeapi.admission.calls
    assert call.ignored and call.allowed is None and not call.patched
    assert call.error is not None and FAILURES[kind] in call.error


@pytest.mark.parametrize("kind", list(FAILURES))
def test_failure_policy_fail_is_a_500_and_stores_nothing(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA,
        kind: str) -> None:
    _register(kubeapi, "inject", _failing_webhook(kind, webhooks, ca, None))  # default: Fail

    with pytest.raises(ApiException) as e:
        _core(kubeapi).create_namespaced_pod("default", _pod())

    assert e.value.status == 500
    body = status_body(e.value)
    assert body["reason"] == "InternalError"
    assert body["message"].startswith(
        f'Internal error occurred: failed calling webhook "{HOOK}": ')
    assert FAILURES[kind] in body["message"]
    assert not kubeapi.exists("v1", "Pod", "web")
    (call,) = kubeapi.admission.calls
    assert not call.ignored and call.allowed is None and call.error is not None


# ---------------------------------------------------------------------- dry run


def test_dry_run_calls_side_effect_free_webhooks_and_stores_nothing(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes(),
                                                  side_effects="NoneOnDryRun"))

    created = _core(kubeapi).create_namespaced_pod("default", _pod(), dry_run="All")

    assert created.metadata.labels == {"app": "web", "injected": "yes"}
    assert not kubeapi.exists("v1", "Pod", "web")
    (req,) = [r["request"] for r in hook.reviews]
    assert req["dryRun"] is True and req["options"]["dryRun"] == ["All"]
    (call,) = kubeapi.admission.calls
    assert call.dry_run and call.patched


def test_dry_run_fails_for_a_webhook_with_side_effects(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    config = mutating_configuration("inject", mutating_webhook(
        HOOK, hook.url, ca.cert_pem.bytes(), side_effects="Some", failure_policy="Fail",
        timeout_seconds=10))
    with pytest.raises(ApiException) as e:  # v1 refuses it...
        typed_api(kubernetes.client.AdmissionregistrationV1Api, kubeapi.api_client()
                  ).create_mutating_webhook_configuration(config)
    assert e.value.status == 422
    assert 'webhooks[0].sideEffects: Unsupported value: "Some"' in status_body(
        e.value)["message"]
    kubeapi.seed(config)  # ...but one stored through v1beta1 long ago still exists
    core = _core(kubeapi)

    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", _pod(), dry_run="All")

    assert e.value.status == 400
    assert status_body(e.value)["message"] == (
        f'admission webhook "{HOOK}" does not support dry run')
    assert hook.received == [] and not kubeapi.exists("v1", "Pod", "web")
    core.create_namespaced_pod("default", _pod())
    assert len(hook.received) == 1
    assert kubeapi.get("v1", "Pod", "web")["metadata"]["labels"]["injected"] == "yes"


# ---------------------------------------------------------------------- order, reinvocation


def test_configurations_run_by_name_and_if_needed_webhooks_are_reinvoked(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    first = webhooks(_add_labels(first="yes"))
    second = webhooks(_add_labels(second="yes"))
    pem = ca.cert_pem.bytes()
    _register(kubeapi, "b-second", mutating_webhook("second.example.com", second.url, pem))
    _register(kubeapi, "a-first", mutating_webhook("first.example.com", first.url, pem,
                                                   reinvocation_policy="IfNeeded"))

    _core(kubeapi).create_namespaced_pod("default", _pod())

    assert [(c.webhook, c.round, c.patched) for c in kubeapi.admission.calls] == [
        ("first.example.com", 0, True), ("second.example.com", 0, True),
        ("first.example.com", 1, False)]
    assert first.reviews[1]["request"]["object"]["metadata"]["labels"] == {
        "app": "web", "first": "yes", "second": "yes"}
    assert kubeapi.get("v1", "Pod", "web")["metadata"]["labels"] == {
        "app": "web", "first": "yes", "second": "yes"}


def test_a_configuration_is_stored_with_the_apis_defaults(
        kubeapi: KubeApi, webhooks: Callable[[Answer], Webhook], ca: trustme.CA) -> None:
    hook = webhooks(_inject)
    stored = _register(kubeapi, "inject", mutating_webhook(HOOK, hook.url, ca.cert_pem.bytes()))
    (w,) = stored.webhooks
    assert (w.failure_policy, w.timeout_seconds, w.match_policy, w.reinvocation_policy) == (
        "Fail", 10, "Equivalent", "Never")
    assert w.rules[0].scope == "*"
    assert kubeapi.admission.calls == []  # configurations are never sent to webhooks
