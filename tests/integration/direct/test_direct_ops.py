"""Pure parts of direct mode, as table tests: the guarded JSON Patch built for container
edits (apply and rollback directions), the HPA patch, and the classification of API
errors by the Kubernetes adapter (no server involved).

Cases:
- an existing value: a `test` of that value, then `replace`; the container index is
  tested by name; only the named container appears in the patch;
- a key absent from an existing section: the section is tested as a whole, then `add`;
- an absent section / absent resources: the enclosing object is tested, then `add`;
- rollback of a key that did not exist before: `test` our value, then `remove`;
- resource names with `/` are escaped (RFC 6901);
- a container that vanished from the template is a NotFoundError;
- HPA: tests on min/max as read, then only the changed bound;
- error classes: 409 Conflict, 422 with causes Invalid (message lists the fields), 422
  without causes on a guarded patch TestFailed (a ConflictError), 429/500/503/504
  Unavailable with Retry-After kept, 403 Forbidden, 404 NotFound, transport errors
  Unavailable.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
import urllib3

from reconciler.adapters import kube
from reconciler.direct import patches
from reconciler.domain import errors, planner

C = "/spec/template/spec/containers"


def _target(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers)}}}}


def _edit(container: str, section: str, res: str, old: str | None, new: Any) -> Any:
    return planner.ValueEdit(container, section, res, old, new)


CASES = [
    ("existing value",
     _target({"name": "side"}, {"name": "app", "resources": {"requests": {"cpu": "1"}}}),
     [_edit("app", "requests", "cpu", "1", "2")], "new",
     [{"op": "test", "path": f"{C}/1/name", "value": "app"},
      {"op": "test", "path": f"{C}/1/resources/requests/cpu", "value": "1"},
      {"op": "replace", "path": f"{C}/1/resources/requests/cpu", "value": "2"}]),
    ("absent key in a section",
     _target({"name": "app", "resources": {"requests": {"cpu": "1"}}}),
     [_edit("app", "requests", "memory", None, "1Gi")], "new",
     [{"op": "test", "path": f"{C}/0/name", "value": "app"},
      {"op": "test", "path": f"{C}/0/resources/requests", "value": {"cpu": "1"}},
      {"op": "add", "path": f"{C}/0/resources/requests/memory", "value": "1Gi"}]),
    ("absent section",
     _target({"name": "app", "resources": {"requests": {"cpu": "1"}}}),
     [_edit("app", "limits", "cpu", None, "2")], "new",
     [{"op": "test", "path": f"{C}/0/name", "value": "app"},
      {"op": "test", "path": f"{C}/0/resources", "value": {"requests": {"cpu": "1"}}},
      {"op": "add", "path": f"{C}/0/resources/limits", "value": {"cpu": "2"}}]),
    ("absent resources",
     _target({"name": "app", "image": "x"}),
     [_edit("app", "requests", "cpu", None, "2")], "new",
     [{"op": "test", "path": f"{C}/0/name", "value": "app"},
      {"op": "test", "path": f"{C}/0", "value": {"name": "app", "image": "x"}},
      {"op": "add", "path": f"{C}/0/resources", "value": {"requests": {"cpu": "2"}}}]),
    ("rollback of a key we added",
     _target({"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}),
     [_edit("app", "requests", "memory", "1Gi", None)], "new",
     [{"op": "test", "path": f"{C}/0/name", "value": "app"},
      {"op": "test", "path": f"{C}/0/resources/requests/memory", "value": "1Gi"},
      {"op": "remove", "path": f"{C}/0/resources/requests/memory"}]),
    ("escaped resource name",
     _target({"name": "app", "resources": {"limits": {"nvidia.com/gpu": "1"}}}),
     [_edit("app", "limits", "nvidia.com/gpu", "1", "2")], "new",
     [{"op": "test", "path": f"{C}/0/name", "value": "app"},
      {"op": "test", "path": f"{C}/0/resources/limits/nvidia.com~1gpu", "value": "1"},
      {"op": "replace", "path": f"{C}/0/resources/limits/nvidia.com~1gpu", "value": "2"}]),
]


@pytest.mark.parametrize("name,target,edits,values,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_container_ops(name: str, target: dict[str, Any], edits: list[Any], values: str,
                       expected: list[dict[str, Any]]) -> None:
    assert patches.container_ops(target, edits, values) == expected


def test_container_gone() -> None:
    with pytest.raises(errors.NotFoundError, match="app"):
        patches.container_ops(_target({"name": "other"}),
                              [_edit("app", "requests", "cpu", "1", "2")], "new")


@pytest.mark.parametrize("start,goal,spec,expected", [
    ({"minReplicas": 2, "maxReplicas": 10}, {"minReplicas": 3, "maxReplicas": 10},
     {"minReplicas": 2, "maxReplicas": 10},
     [{"op": "test", "path": "/spec/minReplicas", "value": 2},
      {"op": "test", "path": "/spec/maxReplicas", "value": 10},
      {"op": "replace", "path": "/spec/minReplicas", "value": 3}]),
    ({"minReplicas": 1, "maxReplicas": 4}, {"minReplicas": 2, "maxReplicas": 6},
     {"maxReplicas": 4},
     [{"op": "test", "path": "/spec/maxReplicas", "value": 4},
      {"op": "add", "path": "/spec/minReplicas", "value": 2},
      {"op": "replace", "path": "/spec/maxReplicas", "value": 6}]),
])
def test_hpa_ops(start: dict[str, int], goal: dict[str, int], spec: dict[str, Any],
                 expected: list[dict[str, Any]]) -> None:
    assert patches.hpa_ops(start, goal, {"spec": spec}) == expected


def _api_error(code: int, reason: str, causes: list[dict[str, str]] | None = None,
               headers: dict[str, str] | None = None) -> kubernetes.client.ApiException:
    e = kubernetes.client.ApiException(status=code, reason=reason)
    details: dict[str, Any] = {"name": "web", "kind": "deployments"}
    if causes:
        details["causes"] = causes
    e.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "message": f"server says {reason}", "reason": reason,
                         "details": details, "code": code})
    e.headers = headers or {}
    return e


CAUSE = [{"reason": "FieldValueInvalid", "field": "spec.replicas", "message": "bad"}]


@pytest.mark.parametrize("code,reason,causes,guarded,cls,temporary", [
    (409, "Conflict", None, False, kube.Conflict, True),
    (422, "Invalid", CAUSE, True, kube.Invalid, False),
    (422, "Invalid", None, True, kube.TestFailed, True),
    (422, "Invalid", None, False, kube.Invalid, False),
    (429, "TooManyRequests", None, False, kube.Unavailable, True),
    (500, "InternalError", None, False, kube.Unavailable, True),
    (503, "ServiceUnavailable", None, False, kube.Unavailable, True),
    (504, "Timeout", None, False, kube.Unavailable, True),
    (403, "Forbidden", None, False, kube.Forbidden, False),
    (404, "NotFound", None, False, kube.NotFound, False),
    (400, "BadRequest", None, False, kube.Invalid, False),
])
def test_translate(code: int, reason: str, causes: Any, guarded: bool, cls: type,
                   temporary: bool) -> None:
    err = kube.translate(_api_error(code, reason, causes), "patch web", guarded=guarded)
    assert type(err) is cls
    assert isinstance(err, errors.TemporaryError) is temporary
    assert isinstance(err, errors.PermanentError) is (not temporary)
    assert str(err).startswith(f"patch web: server says {reason}")
    assert err.code == code  # type: ignore[attr-defined]
    if causes:
        assert "spec.replicas: bad" in str(err)


def test_translate_keeps_retry_after_and_transport_errors() -> None:
    err = kube.translate(_api_error(429, "TooManyRequests", headers={"Retry-After": "3"}), "x")
    assert isinstance(err, kube.Unavailable) and err.retry_after == 3.0
    for exc in (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),  # type: ignore[arg-type]
                urllib3.exceptions.ProtocolError("connection reset"),
                ConnectionRefusedError("refused")):
        assert isinstance(kube.translate(exc, "get web"), kube.Unavailable)
