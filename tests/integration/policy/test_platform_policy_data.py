"""The platform's policy parameters (PolicyUpdate over the stream), end to end.

Cases:
- `reconciler run` with the reference platform on loopback: a PolicyUpdate is acked once
  written (atomically) to the state directory, under `data.platform`; updates deep-merge
  in order and survive a restart (a new process reads the file);
- a team policy that reads `data.platform` sees the parameter in the same round (the
  update arrives during intake, the batch builds its engine after): a `freeze` switch
  turns the next decisions into denials;
- safety: an update that names the team's own keys (`config.defaults.approval: audit`)
  lands under `data.platform.config` and changes no decision of the default library;
- an update over the size limit is nacked with the reason and nothing is written;
- the sidecar path: the parameters are PUT to OPA's Data API (`/v1/data/platform`) when an
  engine is built, so a sidecar restarted since gets them back; a sidecar that refuses the
  PUT does not stop decisions (they still come from the sidecar).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler import wiring
from reconciler.adapters import files
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.config import settings
from reconciler.devtools import platform
from reconciler.stream.gen import stream_pb2
from tests.fakes.opaserver import OpaServer

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"

FREEZE_POLICY = """
package dakr

import rego.v1

frozen if data.platform.freeze == true

deny contains {"rule": "platform.freeze", "msg": "changes are frozen by the platform"} if frozen

decision := {"allow": count(deny) == 0, "mode": "gitops", "deny": [d | some d in deny],
             "warnings": []}
"""


def update(msg_id: str, data: Any) -> stream_pb2.PlatformMessage:
    return stream_pb2.PlatformMessage(policy_update=stream_pb2.PolicyUpdate(
        id=msg_id, data_json=json.dumps(data)))


def one_rec(rec_id: str) -> list[Any]:
    return [d for d in files.load_documents(RECS)
            if (d.get("spec") or {}).get("recommendationId") == rec_id]


def run_once(origin: Path, state: Path, srv: platform.PlatformServer,
             capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    argv = ["run", "--once", "--repo", str(origin), "--state-dir", str(state), "--now", NOW,
            "--output", "json", "--idle", "0.5", "--source", f"platform:{srv.address}", *extra]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else {"results": []}


def phases(doc: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["phase"] for r in doc["results"]}


def test_updates_are_stored_merged_and_kept(origin: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    srv = platform.PlatformServer([]).start()
    try:
        srv.add([update("p-1", {"limits": {"cpu": 2, "memory": 4}}),
                 update("p-2", {"limits": {"cpu": 3}, "team": "payments"})])
        run_once(origin, tmp_path / "state", srv, capsys)
        srv.add([update("p-3", {"extra": [1, 2]})])
        run_once(origin, tmp_path / "state", srv, capsys)  # a new process: file read back
    finally:
        srv.stop(None)
    assert {"p-1", "p-2", "p-3"} <= set(srv.state.acked_ids())
    doc = json.loads((tmp_path / "state" / "platform-data.json").read_text())
    assert doc == {"platform": {"limits": {"cpu": 3, "memory": 4}, "team": "payments",
                                "extra": [1, 2]}}


def test_a_team_policy_reading_data_platform_sees_it(origin: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "freeze.rego").write_text(FREEZE_POLICY)
    srv = platform.PlatformServer(platform.build_feed(one_rec("rec-0001"))).start()
    try:
        first = run_once(origin, tmp_path / "state", srv, capsys, "--policies", str(pol))
        assert phases(first) == {"rec-0001": "Applying"}
        srv.add([update("freeze", {"freeze": True})])
        srv.add(platform.build_feed(one_rec("rec-0002")))
        second = run_once(origin, tmp_path / "state", srv, capsys, "--policies", str(pol))
    finally:
        srv.stop(None)
    (item,) = second["results"]
    assert item["id"] == "rec-0002" and item["phase"] == "Rejected"
    assert item["decision"]["reasons"] == ["platform.freeze: changes are frozen by the platform"]


def test_platform_cannot_loosen_the_teams_config(origin: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    srv = platform.PlatformServer([]).start()
    try:
        srv.add([update("sneaky", {"config": {"defaults": {"approval": "audit"},
                                              "systemNamespaces": []}})])
        srv.add(platform.build_feed(one_rec("rec-0001") + one_rec("rec-0009")))
        doc = run_once(origin, tmp_path / "state", srv, capsys)
    finally:
        srv.stop(None)
    assert "sneaky" in srv.state.acked_ids()
    got = phases(doc)
    assert got["rec-0001"] == "Applying"   # not turned into audit
    assert got["rec-0009"] == "Rejected"   # still refused as before
    stored = json.loads((tmp_path / "state" / "platform-data.json").read_text())
    assert set(stored) == {"platform"}


def test_oversized_update_is_nacked(origin: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    srv = platform.PlatformServer([]).start()
    try:
        # Many short strings (one long one breaks the input limit on strings first).
        blob = ["x" * 1000] * (policy_data.MAX_BYTES // 1000 + 10)
        srv.add([update("huge", {"blob": blob})])
        run_once(origin, tmp_path / "state", srv, capsys)
    finally:
        srv.stop(None)
    (nack,) = srv.state.nacks()
    assert nack["id"] == "huge" and "at most" in str(nack)
    assert not (tmp_path / "state" / "platform-data.json").exists()


def test_sidecar_gets_the_parameters(tmp_path: Path) -> None:
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "freeze.rego").write_text(FREEZE_POLICY)
    data_file = tmp_path / "platform-data.json"
    policy_data.update(data_file, {"freeze": True})
    sample = {"recommendation": {}, "now": NOW}
    with OpaServer(pol) as srv:
        assert srv.engine.decide(sample).allow  # the sidecar has not heard of it yet
        engine = wiring.policy_engine(settings.PolicySettings(
            policy_dir=pol, opa_url=srv.url, platform_data=data_file))
        try:
            dec = engine.decide(sample)
        finally:
            engine.close()
        puts = [r for r in srv.seen.requests if r[0] == "PUT"]
        assert [r[1] for r in puts] == ["/v1/data/platform"]
        assert not dec.allow and dec.deny[0].rule == "platform.freeze"
        srv.faults.status = 500  # OPA refuses everything now: the PUT and the decisions
        engine = wiring.policy_engine(settings.PolicySettings(
            policy_dir=pol, opa_url=srv.url, platform_data=data_file))
        try:
            refused = engine.decide(sample)
        finally:
            engine.close()
        assert not refused.allow  # fail closed, and building the engine did not raise
        assert [r[1] for r in srv.seen.requests if r[0] == "PUT"] == ["/v1/data/platform"] * 2
        assert "OPA answered 500" in refused.deny[0].msg


def test_store_is_untouched_by_updates(origin: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    srv = platform.PlatformServer([]).start()
    try:
        srv.add([update("p", {"a": 1})])
        run_once(origin, tmp_path / "state", srv, capsys)
    finally:
        srv.stop(None)
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        assert st.list() == []
    finally:
        st.close()
