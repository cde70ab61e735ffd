"""Every way a policy answer can go wrong is a deny with rule PolicyUnavailable.

Cases covered:
- policy-shaped failures, through BOTH engines (the sidecar over HTTP to the Data API
  server running the same broken policy): undefined decision, a non-object decision, a
  missing allow, a non-boolean allow, an unknown mode, a deny that is not a list, an
  evaluation error (500 with {code, message, errors} on the wire), no policy at all;
- transport failures of the sidecar: timeout, connection refused, a dropped
  connection, forced non-200 statuses, a body that is not JSON, a JSON body that is not
  an object, 200 without result, a wrong bearer token (401);
- decide_many fails closed per input as well;
- input that cannot be serialized fails closed instead of raising;
- the Data API server's own error shapes: 400 for a malformed body, 500 shape;
- health: /health 200 -> healthy, 500 or unreachable -> not healthy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.adapters.opa import embedded as opa_embedded
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import sidecar as opa_sidecar
from reconciler.domain import decision
from tests import samples
from tests.fakes.opaserver import OpaServer

BROKEN = {
    "undefined": "package dakr\nother := 1\n",
    "not an object": 'package dakr\ndecision := "allow"\n',
    "missing allow": 'package dakr\ndecision := {"mode": "direct", "deny": []}\n',
    "allow not a boolean": 'package dakr\ndecision := {"allow": "true", "mode": "direct"}\n',
    "unknown mode": 'package dakr\ndecision := {"allow": true, "mode": "yolo"}\n',
    "deny not a list": 'package dakr\ndecision := {"allow": true, "mode": "direct", "deny": "x"}\n',
    "evaluation error": 'package dakr\ndecision := {"allow": to_number("x") > 0}\n',
}


def _write_policy(root: Path, source: str) -> Path:
    (root / "dakr").mkdir(parents=True)
    (root / "dakr" / "decision.rego").write_text(source)
    return root


def _assert_unavailable(d: decision.Decision) -> None:
    assert d.allow is False
    assert [x.rule for x in d.deny] == [decision.POLICY_UNAVAILABLE]
    assert d.mode == "audit"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_policy_fails_closed_in_both_engines(tmp_path: Path, case: str) -> None:
    policies = _write_policy(tmp_path / "p", BROKEN[case])
    inp = samples.sample("rightsizing")
    embedded = opa_embedded.EmbeddedEngine(policies)
    assert embedded.last_error is None  # it compiles; the answer is what is wrong
    _assert_unavailable(embedded.decide(inp))
    assert all(not d.allow for d in embedded.decide_many([inp, inp]))
    embedded.close()
    with OpaServer(policies) as srv:
        sidecar = opa_sidecar.SidecarEngine(srv.url, timeout=5)
        _assert_unavailable(sidecar.decide(inp))
        assert all(not d.allow for d in sidecar.decide_many([inp, inp]))
        sidecar.close()


def test_no_policy_at_all_fails_closed(tmp_path: Path) -> None:
    eng = opa_embedded.EmbeddedEngine(tmp_path / "nowhere")
    assert eng.last_error and "does not exist" in eng.last_error
    assert not eng.healthy()
    _assert_unavailable(eng.decide(samples.sample("rightsizing")))


def test_policy_that_does_not_compile_fails_closed(tmp_path: Path) -> None:
    policies = _write_policy(tmp_path / "p", "package dakr\ndecision := y\n")
    eng = opa_embedded.EmbeddedEngine(policies)
    assert eng.last_error and "unsafe" in eng.last_error
    d = eng.decide(samples.sample("rightsizing"))
    _assert_unavailable(d)
    assert "unsafe" in d.deny[0].msg


@pytest.fixture(scope="module")
def server() -> Iterator[OpaServer]:
    with OpaServer(samples.POLICIES, samples.DATA_FILES) as srv:
        yield srv


@pytest.fixture
def faults(server: OpaServer) -> Iterator[OpaServer]:
    yield server
    server.faults.__init__()  # type: ignore[misc]  # reset every switch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


TRANSPORT: list[tuple[str, dict[str, Any], str]] = [
    ("timeout", {"delay": 1.0}, "timed out"),
    ("dropped connection", {"close_connection": True}, "unreachable"),
    ("503", {"status": 503}, "503"),
    ("500 with OPA error shape", {"status": 500}, "500"),
    ("404", {"status": 404}, "404"),
    ("body not JSON", {"body": b"<html>oops</html>"}, "not a JSON object"),
    ("body not an object", {"body": b"[1, 2]"}, "not a JSON object"),
    ("200 without result", {"body": b'{"decision_id": "d-1"}'}, "undefined"),
    ("result not an object", {"body": b'{"result": true}'}, "not an object"),
    ("result without allow", {"body": b'{"result": {"mode": "direct"}}'}, "allow"),
    ("allow of the wrong type", {"body": b'{"result": {"allow": 1, "mode": "direct"}}'}, "allow"),
]


@pytest.mark.parametrize(("switches", "says"), [pytest.param(*t[1:], id=t[0]) for t in TRANSPORT])
def test_sidecar_transport_failures_fail_closed(
    faults: OpaServer, switches: dict[str, Any], says: str
) -> None:
    for k, v in switches.items():
        setattr(faults.faults, k, v)
    eng = opa_sidecar.SidecarEngine(faults.url, timeout=0.3)
    d = eng.decide(samples.sample("rightsizing"))
    eng.close()
    _assert_unavailable(d)
    assert says in d.deny[0].msg
    if switches.get("body") == b'{"decision_id": "d-1"}':
        assert d.decision_id == "d-1"  # OPA's id is kept for the audit trail


def test_connection_refused_fails_closed() -> None:
    eng = opa_sidecar.SidecarEngine(f"http://127.0.0.1:{_free_port()}", timeout=0.5)
    d = eng.decide(samples.sample("rightsizing"))
    _assert_unavailable(d)
    assert "unreachable" in d.deny[0].msg
    assert not eng.healthy()
    assert [x.allow for x in eng.decide_many([samples.sample("rightsizing")] * 2)] == [False] * 2


def test_wrong_token_fails_closed() -> None:
    with OpaServer(samples.POLICIES, samples.DATA_FILES, token="right") as srv:
        d = opa_sidecar.SidecarEngine(srv.url, token="wrong").decide(samples.sample("rightsizing"))
        _assert_unavailable(d)
        assert "401" in d.deny[0].msg
        right = opa_sidecar.SidecarEngine(srv.url, token="right")
        assert right.decide(samples.sample("rightsizing")).allow


@pytest.mark.parametrize("engine_kind", ["embedded", "sidecar"])
def test_unserializable_input_fails_closed(server: OpaServer, engine_kind: str) -> None:
    eng: opa.PolicyEngine = (
        opa_embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
        if engine_kind == "embedded"
        else opa_sidecar.SidecarEngine(server.url)
    )
    _assert_unavailable(eng.decide({"now": object()}))
    eng.close()


def test_data_api_error_shapes(server: OpaServer) -> None:
    url = f"{server.url}/v1/data/dakr/decision"
    bad = requests.post(url, data=b"{not json", timeout=5)
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_parameter"
    undefined = requests.post(f"{server.url}/v1/data/dakr/nothing_here", json={"input": {}},
                              timeout=5)
    assert undefined.status_code == 200
    assert "result" not in undefined.json()
    ok = requests.post(url, json={"input": samples.sample("rightsizing")}, timeout=5)
    assert ok.status_code == 200 and ok.json()["result"]["allow"] is True
    assert ok.json()["decision_id"]


def test_data_api_eval_error_is_500_with_errors(tmp_path: Path) -> None:
    policies = _write_policy(tmp_path / "p", BROKEN["evaluation error"])
    with OpaServer(policies) as srv:
        r = requests.post(f"{srv.url}/v1/data/dakr/decision", json={"input": {}}, timeout=5)
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"code", "message", "errors"}
    assert "to_number" in body["errors"][0]["message"]


def test_health(faults: OpaServer) -> None:
    eng = opa_sidecar.SidecarEngine(faults.url, timeout=1)
    assert eng.healthy()
    faults.faults.healthy = False
    assert not eng.healthy()
    eng.close()
