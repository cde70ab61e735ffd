"""Mutating admission webhooks, called by the test API server as kube-apiserver calls them.

A product that ships a mutating webhook has to be tested through an API server that calls
it: the webhook's TLS, its AdmissionReview handling and its JSON patches are only proved by
a real call. So on a create the server reads the stored
`admissionregistration.k8s.io/v1` MutatingWebhookConfigurations and, for each webhook whose
`rules`, `namespaceSelector` and `objectSelector` match, POSTs an AdmissionReview to
`clientConfig.url` over HTTPS (the certificate verified against `clientConfig.caBundle`),
then applies the returned JSONPatch, or rejects the request, as
k8s.io/apiserver/pkg/admission/plugin/webhook/mutating does:

- order: configurations by name, webhooks in their listed order; `reinvocationPolicy:
  IfNeeded` webhooks are called once more when a later webhook changed the object;
- the request: a fresh `uid`, kind/resource (and requestKind/requestResource), `name` as the
  client sent it (empty for `generateName`: names are generated after admission),
  `namespace`, `operation: CREATE`, `userInfo`, `object`, `oldObject: null`, `dryRun`,
  `options` (CreateOptions); the URL gets `?timeout=<n>s` like the real client's;
- `allowed: false` -> the webhook's `status` (code below 400 becomes 400), message
  `admission webhook "<name>" denied the request: <message>`;
- a call failure (refused, TLS, `timeoutSeconds` (default 10) passed, HTTP status outside
  200-206, undecodable or invalid review, `response.uid` mismatch, undecodable patch,
  `clientConfig.service`, which a test cannot reach) follows `failurePolicy`: `Ignore`
  continues with the object as it was, `Fail` (the default) answers 500 `Internal error
  occurred: failed calling webhook "<name>": ...`; a patch that decodes but does not apply
  is a 500 whatever the policy (the real server's NewInternalError);
- dry-run: a webhook whose `sideEffects` is not `None`/`NoneOnDryRun` is not called and the
  request fails 400 `admission webhook "<name>" does not support dry run`;
- webhook configurations themselves are never sent to webhooks; a create in a missing
  namespace is 404 before any webhook (NamespaceLifecycle runs first).

Every call is recorded in `Admission.calls` (also `KubeApi.admission.calls`).

Differences from the real server: only CREATE is admitted (updates, patches, server-side
apply creates, deletes and subresources are not sent to webhooks); `matchConditions` are not
evaluated (a webhook with them is called as if they all held); `matchPolicy` is always
Exact; no validating webhooks; configurations are defaulted and validated on create only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import http.client
import json
import ssl
import threading
import time
import urllib.parse
import uuid
from typing import Any

from tests.fakes.kubeapi import patch as patch_mod
from tests.fakes.kubeapi import rbac, resources, selectors, status, store

JSON = dict[str, Any]

GROUP = "admissionregistration.k8s.io"
MUTATING = "mutatingwebhookconfigurations"
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 30
# The label every namespace carries on a real server (NamespaceDefaultLabelName).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")


@dataclasses.dataclass
class WebhookCall:
    """One call (or attempted call) of a webhook, for tests to assert on."""

    webhook: str
    configuration: str
    uid: str
    operation: str
    kind: str  # e.g. "Pod"
    resource: str  # e.g. "pods"
    namespace: str
    name: str  # as sent: empty when the object has only a generateName
    generate_name: str
    dry_run: bool
    round: int  # 0; 1 for a reinvocation
    allowed: bool | None = None  # None: the call failed
    patched: bool = False  # the webhook's patch changed the object
    error: str | None = None  # why the call failed (or the patch did not apply)
    ignored: bool = False  # failed with failurePolicy Ignore: admission went on without it
    duration: float = 0.0  # seconds
    request: JSON = dataclasses.field(default_factory=dict)  # the AdmissionReview request
    response: JSON | None = None  # the AdmissionReview response, when one was decoded


class _CallError(Exception):
    """ErrCallingWebhook: the webhook could not be called or answered nonsense."""


class Admission:
    """The mutating-webhook stage of the create path, and the record of its calls."""

    def __init__(self, st: store.Store, admins: set[str]) -> None:
        self.store = st
        self.admins = admins
        self._lock = threading.Lock()
        self._calls: list[WebhookCall] = []

    @property
    def calls(self) -> list[WebhookCall]:
        """Every webhook call so far, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, webhook: str) -> list[WebhookCall]:
        return [c for c in self.calls if c.webhook == webhook]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def _record(self, call: WebhookCall) -> None:
        with self._lock:
            self._calls.append(call)

    # ------------------------------------------------------------------ the create stage

    def admit_create(self, rt: resources.ResourceType, namespace: str, body: JSON, *,
                     user: str, dry_run: bool, query: dict[str, str]) -> JSON:
        """The object to store: `body` after every matching mutating webhook.

        Raises the ApiError the real server would answer with (rejection, failed call,
        unsupported dry run); the caller then stores nothing.
        """
        obj = self._prepare(rt, namespace, body)
        if rt.group == GROUP:
            if rt.plural == MUTATING:
                default_configuration(obj)
                causes = configuration_causes(obj)
                if causes:
                    raise status.invalid(rt.kind, rt.group, obj["metadata"].get("name", ""),
                                         causes)
            return obj  # webhooks are never called on webhook configurations
        hooks = self._hooks()
        if not hooks:
            return obj
        meta = obj["metadata"]
        request_ns = meta.get("namespace", "") if rt.namespaced else ""
        if rt.key == ("", "namespaces"):
            request_ns = meta.get("name", "")
        attrs = _Attributes(
            rt=rt, namespace=request_ns, user=user, dry_run=dry_run,
            groups=sorted(rbac.groups_of(user, self.admins)),
            options=_create_options(query, dry_run))
        previously: set[tuple[str, int]] = set()
        reinvoke: set[tuple[str, int]] = set()
        any_change = False
        for round_ in (0, 1):
            if round_ == 1 and not (any_change and reinvoke):
                break
            for cfg_name, index, hook in hooks:
                if round_ == 1 and (cfg_name, index) not in reinvoke:
                    continue
                if not self._should_call(hook, attrs, obj):
                    continue
                obj, changed = self._invoke(cfg_name, hook, attrs, obj, round_)
                if changed:
                    any_change = True
                    reinvoke |= previously
                    previously = set()
                if hook.get("reinvocationPolicy") == "IfNeeded":
                    previously.add((cfg_name, index))
        return obj

    def _prepare(self, rt: resources.ResourceType, namespace: str, body: JSON) -> JSON:
        """What the handler has before admission: the decoded object, namespace filled in,
        system fields wiped, no name generated yet (rest.BeforeCreate does that later)."""
        obj = copy.deepcopy(body)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request")
            meta["namespace"] = namespace
            self.store.get(self.store.type_for("", "v1", "namespaces"), "", namespace)  # or 404
        else:
            meta.pop("namespace", None)
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink"):
            meta.pop(k, None)
        return obj

    def _hooks(self) -> list[tuple[str, int, JSON]]:
        """(configuration name, index, webhook) in the order the real server calls them."""
        try:
            rt = self.store.type_for(GROUP, "v1", MUTATING)
        except status.ApiError:
            return []
        out: list[tuple[str, int, JSON]] = []
        for cfg in self.store.all_objects(rt, None):  # sorted by name
            cfg_name = cfg["metadata"]["name"]
            for index, hook in enumerate(cfg.get("webhooks") or []):
                if isinstance(hook, dict):
                    out.append((cfg_name, index, hook))
        return out

    # ------------------------------------------------------------------ matching

    def _should_call(self, hook: JSON, attrs: _Attributes, obj: JSON) -> bool:
        rt = attrs.rt
        if not any(_rule_matches(r, "CREATE", rt, "", attrs.namespace)
                   for r in hook.get("rules") or []):
            return False
        if not selectors.match_label_selector(_selector(hook.get("objectSelector")),
                                              _labels(obj)):
            return False  # oldObject is null on create: only the object can match
        if attrs.namespace == "" and rt.key != ("", "namespaces"):
            return True  # namespaceSelector has no effect on other cluster-scoped kinds
        ns_selector = _selector(hook.get("namespaceSelector"))
        if not ns_selector.get("matchLabels") and not ns_selector.get("matchExpressions"):
            return True
        if rt.key == ("", "namespaces"):
            ns_labels = _labels(obj)
        else:
            try:
                ns = self.store.get(self.store.type_for("", "v1", "namespaces"), "",
                                    attrs.namespace)
            except status.ApiError:
                raise status.namespace_not_found(attrs.namespace) from None
            ns_labels = _labels(ns)
        ns_labels = {**ns_labels, NAMESPACE_NAME_LABEL: attrs.namespace}
        return selectors.match_label_selector(ns_selector, ns_labels)

    # ------------------------------------------------------------------ calling

    def _invoke(self, cfg_name: str, hook: JSON, attrs: _Attributes, obj: JSON,
                round_: int) -> tuple[JSON, bool]:
        """Call one webhook; the (possibly patched) object and whether it changed."""
        name = str(hook.get("name") or "")
        policy = hook.get("failurePolicy") or "Fail"
        if attrs.dry_run:
            effects = hook.get("sideEffects")
            if effects is None:
                return self._failed(policy, obj, self._start(cfg_name, hook, attrs, obj, round_,
                                                              {}), "Webhook SideEffects is nil")
            if effects not in ("None", "NoneOnDryRun"):
                raise status.bad_request(f'admission webhook "{name}" does not support dry run')
        versions = hook.get("admissionReviewVersions") or []
        review_version = next((v for v in versions if v in ("v1", "v1beta1")), None)
        uid = str(uuid.uuid4())
        meta = obj["metadata"]
        request: JSON = {
            "uid": uid,
            "kind": {"group": attrs.rt.group, "version": attrs.rt.version,
                     "kind": attrs.rt.kind},
            "resource": {"group": attrs.rt.group, "version": attrs.rt.version,
                         "resource": attrs.rt.plural},
            "requestKind": {"group": attrs.rt.group, "version": attrs.rt.version,
                            "kind": attrs.rt.kind},
            "requestResource": {"group": attrs.rt.group, "version": attrs.rt.version,
                                "resource": attrs.rt.plural},
            "name": meta.get("name") or "",
            "namespace": attrs.namespace,
            "operation": "CREATE",
            "userInfo": {"username": attrs.user, "groups": attrs.groups},
            "object": copy.deepcopy(obj),
            "oldObject": None,
            "dryRun": attrs.dry_run,
            "options": copy.deepcopy(attrs.options),
        }
        call = self._start(cfg_name, hook, attrs, obj, round_, request)
        if review_version is None:
            return self._failed(policy, obj, call, "could not create admission objects: "
                                "webhook does not accept known AdmissionReview versions "
                                "(v1, v1beta1)")
        api_version = f"admission.k8s.io/{review_version}"
        review = {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}
        started = time.monotonic()
        try:
            raw = _post(hook.get("clientConfig") or {}, review, _timeout(hook))
            response = _decode_review(raw, uid, api_version)
        except _CallError as e:
            call.duration = time.monotonic() - started
            return self._failed(policy, obj, call, str(e))
        call.duration = time.monotonic() - started
        call.response = response
        result = response["response"]
        if not result.get("allowed"):
            call.allowed = False
            self._record(call)
            raise _rejection(name, result.get("status"))
        call.allowed = True
        try:
            ops = _decode_patch(result, review_version)
        except _CallError as e:
            return self._failed(policy, obj, call, str(e))
        if not ops:
            self._record(call)
            return obj, False
        try:
            patched = patch_mod.apply_json_patch(obj, ops)
        except (patch_mod.JsonPatchFailed, status.ApiError) as e:
            why = e.message if isinstance(e, status.ApiError) else str(e)
            call.error = f"patch does not apply: {why}"
            self._record(call)
            raise status.internal(why) from e
        call.patched = patched != obj
        self._record(call)
        return patched, call.patched

    def _start(self, cfg_name: str, hook: JSON, attrs: _Attributes, obj: JSON, round_: int,
               request: JSON) -> WebhookCall:
        meta = obj.get("metadata") or {}
        return WebhookCall(
            webhook=str(hook.get("name") or ""), configuration=cfg_name,
            uid=str(request.get("uid") or ""), operation="CREATE", kind=attrs.rt.kind,
            resource=attrs.rt.plural, namespace=attrs.namespace,
            name=str(meta.get("name") or ""), generate_name=str(meta.get("generateName") or ""),
            dry_run=attrs.dry_run, round=round_, request=request)

    def _failed(self, policy: str, obj: JSON, call: WebhookCall,
                why: str) -> tuple[JSON, bool]:
        """ErrCallingWebhook under the webhook's failurePolicy."""
        call.error = why
        call.allowed = None
        if policy == "Ignore":
            call.ignored = True
            self._record(call)
            return obj, False
        self._record(call)
        raise status.internal(f'failed calling webhook "{call.webhook}": {why}')


@dataclasses.dataclass
class _Attributes:
    rt: resources.ResourceType
    namespace: str
    user: str
    dry_run: bool
    groups: list[str]
    options: JSON


def _labels(obj: JSON) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def _selector(value: Any) -> JSON:
    """A webhook's selector: absent or null means `{}` (everything), as the API defaults it."""
    return value if isinstance(value, dict) else {}


def _rule_matches(rule: Any, operation: str, rt: resources.ResourceType, subresource: str,
                  namespace: str) -> bool:
    if not isinstance(rule, dict):
        return False
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and rt.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and rt.version not in versions:
        return False
    if not any(_resource_matches(str(p), rt.plural, subresource)
               for p in rule.get("resources") or []):
        return False
    scope = rule.get("scope") or "*"
    is_namespace = rt.key == ("", "namespaces")
    if scope == "Namespaced":
        return not is_namespace and namespace != ""
    if scope == "Cluster":
        return is_namespace or namespace == ""
    return True


def _resource_matches(pattern: str, resource: str, subresource: str) -> bool:
    """`*` all resources (no subresources), `*/*` everything, `pods/*`, `*/status`."""
    res, _, sub = pattern.partition("/")
    return res in ("*", resource) and sub in ("*", subresource)


def _create_options(query: dict[str, str], dry_run: bool) -> JSON:
    options: JSON = {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        options["dryRun"] = ["All"]
    if query.get("fieldManager"):
        options["fieldManager"] = query["fieldManager"]
    if query.get("fieldValidation"):
        options["fieldValidation"] = query["fieldValidation"]
    return options


def _timeout(hook: JSON) -> int:
    value = hook.get("timeoutSeconds")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return DEFAULT_TIMEOUT
    return min(value, MAX_TIMEOUT)


def _rejection(webhook: str, result: Any) -> status.ApiError:
    """webhookerrors.ToStatusErr: the webhook's Status, its message prefixed."""
    result = result if isinstance(result, dict) else {}
    denied = f'admission webhook "{webhook}" denied the request'
    code = result.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code < 400:
        code = 400
    if result.get("message"):
        message = f"{denied}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied}: {result['reason']}"
    else:
        message = f"{denied} without explanation"
    details = result.get("details") if isinstance(result.get("details"), dict) else None
    return status.ApiError(code, message, result.get("reason") or None, details)


# ---------------------------------------------------------------------- the HTTP call


def _post(client_config: JSON, review: JSON, timeout: int) -> bytes:
    """POST the review; the response body, or _CallError with a Go-like reason."""
    service = client_config.get("service")
    query = f"?timeout={timeout}s"
    if isinstance(service, dict) and not client_config.get("url"):
        host = f"{service.get('name')}.{service.get('namespace')}.svc"
        url = f"https://{host}:{service.get('port') or 443}{service.get('path') or '/'}{query}"
        raise _CallError(f'failed to call webhook: Post "{url}": dial tcp: lookup {host}: '
                         "no such host (the test API server cannot reach in-cluster services; "
                         "use clientConfig.url)")
    base = str(client_config.get("url") or "")
    url = base + query
    parts = urllib.parse.urlsplit(base)
    if parts.scheme != "https" or not parts.hostname:
        raise _CallError(f'failed to call webhook: Post "{url}": webhook URL must be https')
    try:
        ctx = _tls_context(client_config.get("caBundle"))
    except (ValueError, ssl.SSLError) as e:
        raise _CallError(f"could not get REST client: invalid caBundle: {e}") from e
    host, port = parts.hostname, parts.port or 443
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    data = json.dumps(review, separators=(",", ":")).encode()
    try:
        conn.connect()
        _remaining(conn, deadline)
        conn.request("POST", (parts.path or "/") + query, body=data, headers={
            "Content-Type": "application/json", "Accept": "application/json, */*",
            "User-Agent": "kube-apiserver-admission"})
        _remaining(conn, deadline)
        resp = conn.getresponse()
        _remaining(conn, deadline)
        body = resp.read()
    except TimeoutError as e:
        raise _CallError(f'failed to call webhook: Post "{url}": context deadline exceeded') from e
    except ConnectionRefusedError as e:
        raise _CallError(f'failed to call webhook: Post "{url}": dial tcp {host}:{port}: '
                         "connect: connection refused") from e
    except ssl.SSLCertVerificationError as e:
        raise _CallError(f'failed to call webhook: Post "{url}": tls: failed to verify '
                         f"certificate: x509: {_x509_reason(e)}") from e
    except (OSError, http.client.HTTPException) as e:
        raise _CallError(f'failed to call webhook: Post "{url}": {type(e).__name__}: {e}') from e
    finally:
        conn.close()
    if not 200 <= resp.status <= 206:
        text = body[:512].decode(errors="replace")
        raise _CallError(f"failed to call webhook: an error on the server ({text!r}) has "
                         f"prevented the request from succeeding (HTTP {resp.status})")
    return body


def _remaining(conn: http.client.HTTPSConnection, deadline: float) -> None:
    """The timeout is for the whole call, not each socket operation."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _tls_context(ca_bundle: Any) -> ssl.SSLContext:
    """Verify against the caBundle (base64 PEM), or the system roots without one."""
    if not ca_bundle:
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(str(ca_bundle), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ValueError(f"caBundle is not base64 PEM: {e}") from e
    return ssl.create_default_context(cadata=pem)


def _x509_reason(e: ssl.SSLCertVerificationError) -> str:
    message = str(getattr(e, "verify_message", "") or e)
    if "local issuer" in message or "self-signed" in message or "self signed" in message:
        return "certificate signed by unknown authority"
    return message


def _decode_review(raw: bytes, uid: str, api_version: str) -> JSON:
    """VerifyAdmissionResponse: the review must echo the uid (v1) and hold a response."""
    try:
        review = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _CallError(f"failed to call webhook: {e}") from e
    if not isinstance(review, dict):
        raise _CallError("failed to call webhook: the response is not an AdmissionReview "
                         "object")
    response = review.get("response")
    if not isinstance(response, dict):
        raise _CallError("received invalid webhook response: webhook response was absent")
    if api_version.endswith("/v1"):
        if response.get("uid") != uid:
            raise _CallError(f'received invalid webhook response: expected response.uid='
                             f'"{uid}", got "{response.get("uid") or ""}"')
        got = f"{review.get('apiVersion') or ''}, Kind={review.get('kind') or ''}"
        if review.get("apiVersion") != api_version or review.get("kind") != "AdmissionReview":
            raise _CallError("received invalid webhook response: expected webhook response of "
                             f"{api_version}, Kind=AdmissionReview, got {got}")
    return review


def _decode_patch(result: JSON, review_version: str) -> list[Any]:
    """The JSON Patch operations of an allowed response ([] for none)."""
    raw_patch = result.get("patch")
    patch_type = result.get("patchType")
    if review_version == "v1":
        if raw_patch and patch_type is None:
            raise _CallError("received invalid webhook response: webhook returned "
                             "response.patch but not response.patchType")
        if not raw_patch and patch_type is not None:
            raise _CallError("received invalid webhook response: webhook returned "
                             "response.patchType but not response.patch")
    elif raw_patch:
        patch_type = "JSONPatch"
    if not raw_patch:
        return []
    try:
        decoded = base64.b64decode(str(raw_patch), validate=True)
    except binascii.Error as e:
        raise _CallError(f"failed to call webhook: illegal base64 data in response.patch: "
                         f"{e}") from e
    try:
        ops = json.loads(decoded)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _CallError(f"received undecodable patch in webhook response: {e}") from e
    if not isinstance(ops, list):
        raise _CallError("received undecodable patch in webhook response: json: cannot "
                         "unmarshal object into Go value of type jsonpatch.Patch")
    if patch_type != "JSONPatch":
        raise _CallError(f'unsupported patch type "{patch_type}"')
    return ops


# ---------------------------------------------------------------------- configurations


def default_configuration(cfg: JSON) -> None:
    """The v1 API's defaults, which the real server applies as it decodes the object."""
    for hook in cfg.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", DEFAULT_TIMEOUT)
        hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)


def configuration_causes(cfg: JSON) -> list[JSON]:
    """The v1 validation rules a test can trip over (field paths and wording as the real)."""
    causes: list[JSON] = []
    seen: set[str] = set()
    for i, hook in enumerate(cfg.get("webhooks") or []):
        base = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            causes.append(status.required(base))
            continue
        name = hook.get("name")
        if not name:
            causes.append(status.required(f"{base}.name"))
        elif name in seen:
            causes.append(status.field_cause("FieldValueDuplicate", f"{base}.name",
                                             f"Duplicate value: {status.fmt_value(name)}"))
        else:
            seen.add(str(name))
        effects = hook.get("sideEffects")
        if effects is None:
            causes.append(status.required(f"{base}.sideEffects"))
        elif effects not in ("None", "NoneOnDryRun"):
            causes.append(status.not_supported(f"{base}.sideEffects", effects,
                                               ["None", "NoneOnDryRun"]))
        if not hook.get("admissionReviewVersions"):
            causes.append(status.field_cause(
                "FieldValueRequired", f"{base}.admissionReviewVersions",
                "Required value: must specify one of v1, v1beta1"))
        policy = hook.get("failurePolicy")
        if policy not in ("Ignore", "Fail"):
            causes.append(status.not_supported(f"{base}.failurePolicy", policy,
                                               ["Fail", "Ignore"]))
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT:
            causes.append(status.invalid_value(f"{base}.timeoutSeconds", timeout,
                                               "the timeout value must be between 1 and 30 "
                                               "seconds"))
        causes.extend(_client_config_causes(hook.get("clientConfig"), f"{base}.clientConfig"))
        for j, rule in enumerate(hook.get("rules") or []):
            ops = (rule or {}).get("operations") or [] if isinstance(rule, dict) else []
            for k, op in enumerate(ops):
                if op not in _OPERATIONS:
                    causes.append(status.not_supported(
                        f"{base}.rules[{j}].operations[{k}]", op, list(_OPERATIONS)))
    return causes


def _client_config_causes(client_config: Any, base: str) -> list[JSON]:
    if not isinstance(client_config, dict):
        return [status.required(base)]
    url, service = client_config.get("url"), client_config.get("service")
    if url and service:
        return [status.field_cause("FieldValueRequired", base,
                                   "Required value: exactly one of url or service is required")]
    if not url and not service:
        return [status.field_cause("FieldValueRequired", base,
                                   "Required value: exactly one of url or service is required")]
    if url:
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme != "https":
            return [status.invalid_value(f"{base}.url", url, "'https' is the only allowed URL "
                                         "scheme")]
        if parts.query or parts.fragment or parts.username:
            return [status.invalid_value(f"{base}.url", url, "query parameters, fragments and "
                                         "user information are not permitted")]
    return []


# ---------------------------------------------------------------------- test helpers


def mutating_webhook(name: str, url: str | None = None, ca_pem: bytes | str | None = None, *,
                     resources: list[str] | None = None, api_groups: list[str] | None = None,
                     api_versions: list[str] | None = None,
                     operations: list[str] | None = None, scope: str | None = None,
                     failure_policy: str | None = None, timeout_seconds: int | None = None,
                     side_effects: str = "None", namespace_selector: JSON | None = None,
                     object_selector: JSON | None = None,
                     reinvocation_policy: str | None = None,
                     service: JSON | None = None) -> JSON:
    """One `webhooks[]` entry (a plain dict the official client accepts as a body).

    Defaults: CREATE of core/v1 pods, sideEffects None, admissionReviewVersions [v1]; the
    API's own defaults (failurePolicy Fail, timeoutSeconds 10, ...) are left to the server.
    """
    client_config: JSON = {}
    if url is not None:
        client_config["url"] = url
    if service is not None:
        client_config["service"] = service
    if ca_pem is not None:
        pem = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
        client_config["caBundle"] = base64.b64encode(pem).decode()
    rule: JSON = {"operations": operations or ["CREATE"], "apiGroups": api_groups or [""],
                  "apiVersions": api_versions or ["v1"], "resources": resources or ["pods"]}
    if scope is not None:
        rule["scope"] = scope
    hook: JSON = {"name": name, "clientConfig": client_config, "rules": [rule],
                  "sideEffects": side_effects, "admissionReviewVersions": ["v1"]}
    optional = {"failurePolicy": failure_policy, "timeoutSeconds": timeout_seconds,
                "namespaceSelector": namespace_selector, "objectSelector": object_selector,
                "reinvocationPolicy": reinvocation_policy}
    hook.update({k: v for k, v in optional.items() if v is not None})
    return hook


def mutating_configuration(name: str, *webhooks: JSON) -> JSON:
    """A MutatingWebhookConfiguration body holding `webhooks`."""
    return {"apiVersion": f"{GROUP}/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [copy.deepcopy(w) for w in webhooks]}


def json_patch_response(review: JSON, ops: list[JSON] | None = None, *,
                        allowed: bool = True, status_: JSON | None = None) -> JSON:
    """The AdmissionReview a webhook answers `review` with (for test webhooks)."""
    response: JSON = {"uid": review["request"]["uid"], "allowed": allowed}
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    if status_ is not None:
        response["status"] = status_
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview", "response": response}

