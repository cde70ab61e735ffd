"""Rollback requests from the platform, carried out by `reconciler run`, end to end.

The real CLI in direct mode, the reference platform on loopback gRPC, the test Kubernetes
API server through its kubeconfig (CR store there), the embedded OPA engine.

Cases:
- a recommendation arrives over the stream and is applied in the round; the platform then
  sends a RollbackRequest: it is acked once recorded on the recommendation
  (RollbackRequested=True, the platform's reason), the same round restores the previous
  values (phase RolledBack, the request closed: RollbackRequested=False/Done), the new
  phase goes up the stream on the next connection, and a later round does nothing more;
- a rollback request for an id this operator does not know is nacked with the reason,
  and nothing is written;
- a rollback refused because someone changed the value since is closed as Refused with
  the value named, the workload keeps the other writer's value;
- GitOps mode (sqlite store, the demo repository): the request takes the same path as
  `reconciler rollback`; a change whose pull request is still open is refused with the
  reason (close the pull request instead), the phase stays Applying.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.devtools import platform
from reconciler.stream.gen import stream_pb2
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.direct.test_direct_apply import GROUP, VERSION, W, rightsizing
from tests.integration.direct.test_direct_cli import setup  # noqa: F401 (the fixture)

RECS = Path(__file__).resolve().parents[3] / "examples" / "recommendations.yaml"


def run_once(api: KubeApi, pol: Path, srv: platform.PlatformServer,
             capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--once", "--mode", "direct", "--source", f"platform:{srv.address}",
            "--kubeconfig", api.kubeconfig_path, "--policies", str(pol), "--state-dir",
            str(pol.parent / "state"), "--output", "json", "--idle", "0.5"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()


def cpu(api: KubeApi) -> str:
    obj = api.get("apps/v1", "Deployment", "web")
    return str(obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])


def rollback_request(msg_id: str, rec_id: str, reason: str) -> stream_pb2.PlatformMessage:
    return stream_pb2.PlatformMessage(rollback_request=stream_pb2.RollbackRequest(
        id=msg_id, kind=W, recommendation_id=rec_id, reason=reason))


def condition(rec: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in rec["status"]["conditions"] if c["type"] == "RollbackRequested"]
    return dict(c)


def test_platform_rollback_restores(setup: tuple[KubeApi, Path],  # noqa: F811
                                    capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    srv = platform.PlatformServer(platform.build_feed(
        [rightsizing("rec-1", requests={"cpu": "300m"})])).start()
    try:
        run_once(api, pol, srv, capsys)
        assert cpu(api) == "300m"
        srv.add([rollback_request("rb-1", "rec-1", "p99 latency up 40%")])
        api.requests.reset()
        run_once(api, pol, srv, capsys)
        assert "rb-1" in srv.state.acked_ids()
        assert cpu(api) == "100m"  # the previous value, restored
        rec = api.get(f"{GROUP}/{VERSION}", W, "rec-1")
        assert rec["status"]["phase"] == "RolledBack"
        c = condition(rec)
        assert (c["status"], c["reason"]) == ("False", "Done")
        # The request was recorded (True, with the platform's reason) before it was acked.
        recorded = [r for r in api.requests.log if r.verb in ("update", "patch")
                    and r.subresource == "status" and "p99 latency up 40%" in str(r.body)]
        assert recorded
        run_once(api, pol, srv, capsys)  # the next connection carries the new phase up
        phases = [u for u in srv.state.upstream if u.get("recommendation_id") == "rec-1"]
        assert phases and phases[-1]["phase"] == "RolledBack", srv.state.upstream
        api.requests.reset()
        run_once(api, pol, srv, capsys)
        assert api.requests.writes() == [] and cpu(api) == "100m"
    finally:
        srv.stop(None)


def test_unknown_recommendation_is_nacked(setup: tuple[KubeApi, Path],  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    srv = platform.PlatformServer([]).start()
    srv.add([rollback_request("rb-x", "rec-nope", "why not")])
    try:
        run_once(api, pol, srv, capsys)
    finally:
        srv.stop(None)
    (nack,) = srv.state.nacks()
    assert nack["id"] == "rb-x" and "rec-nope" in str(nack)
    assert cpu(api) == "100m"


def test_refused_rollback_is_closed_with_the_reason(setup: tuple[KubeApi, Path],  # noqa: F811
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    srv = platform.PlatformServer(platform.build_feed(
        [rightsizing("rec-2", requests={"cpu": "300m"})])).start()
    try:
        run_once(api, pol, srv, capsys)
        dep = api.get("apps/v1", "Deployment", "web")
        dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "450m"
        api.seed(dep)  # another writer changed the value we set
        srv.add([rollback_request("rb-2", "rec-2", "regression")])
        run_once(api, pol, srv, capsys)
    finally:
        srv.stop(None)
    assert "rb-2" in srv.state.acked_ids()
    assert cpu(api) == "450m"
    c = condition(api.get(f"{GROUP}/{VERSION}", W, "rec-2"))
    assert (c["status"], c["reason"]) == ("False", "Refused")
    assert "450m" in c["message"]


def test_gitops_rollback_of_an_open_change_is_refused(origin: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """GitOps mode: the request goes through the same path as `reconciler rollback`; a
    change whose pull request is still open is not rolled back (close the PR instead)."""
    from reconciler.adapters import files
    from reconciler.adapters.store import sqlite as sqlite_store

    docs = [d for d in files.load_documents(RECS)
            if (d.get("spec") or {}).get("recommendationId") == "rec-0001"]
    srv = platform.PlatformServer(platform.build_feed(docs)).start()
    argv = ["run", "--once", "--repo", str(origin), "--state-dir", str(tmp_path / "state"),
            "--now", "2026-11-24T10:00:00Z", "--output", "json", "--idle", "0.5",
            "--source", f"platform:{srv.address}"]
    try:
        assert cli.main(argv) == 0
        srv.add([rollback_request("rb-g", "rec-0001", "cost went up")])
        assert cli.main(argv) == 0
    finally:
        srv.stop(None)
    capsys.readouterr()
    assert "rb-g" in srv.state.acked_ids()
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        rec = st.get(W, "rec-0001")
    finally:
        st.close()
    assert rec is not None and rec.phase == "Applying"  # its pull request is still open
    c = condition({"status": rec.status})
    assert (c["status"], c["reason"]) == ("False", "Refused")
    assert "close its pull request" in c["message"]
