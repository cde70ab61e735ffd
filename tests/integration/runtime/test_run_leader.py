"""`reconciler run --leader-elect`, end to end through the CLI against the test API server.

Cases:
- no lease yet: the replica takes the Lease (holder = $POD_NAME plus a suffix), works
  (scraped: keys reconciled, dakr_leader 1), and on SIGTERM releases the Lease
  (holderIdentity cleared, so a standby takes over at once) and exits 0;
- a Lease held and renewed by another replica: this one stands by, reports ready (a
  standby must not stall a rolling update), does no work (dakr_leader 0, nothing
  reconciled, nothing taken in), and exits 0 on SIGTERM without touching the other's
  Lease.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.run_support import free_port, get, run_until, samples, value

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"
LEASE = "dakr-test-leader"


def run_leader(kubeapi: KubeApi, origin: Path, tmp: Path, done: Callable[[str], bool],
               capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """`reconciler run --leader-elect` until ``done(scrape)``, then SIGTERM."""
    mport, hport = free_port(), free_port()

    def extra() -> dict[str, Any]:
        return {"readyz": get(f"http://127.0.0.1:{hport}/readyz")[0],
                "lease": kubeapi.get("coordination.k8s.io/v1", "Lease", LEASE)}

    rc, seen = run_until(
        ["run", "--repo", str(origin), "--state-dir", str(tmp / "state"), "--now", NOW,
         "--output", "json", "--source", f"file:{RECS}", "--resync", "30",
         "--metrics-addr", f"127.0.0.1:{mport}", "--health-addr", f"127.0.0.1:{hport}",
         "--kubeconfig", kubeapi.kubeconfig_path, "--leader-elect", "--leader-elect-lease",
         LEASE, "--leader-elect-namespace", "default"], mport, done, extra)
    capsys.readouterr()
    return rc, seen


def test_leads_then_releases(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POD_NAME", "dakr-0")
    rc, seen = run_leader(kubeapi, origin, tmp_path, lambda text: value(
        samples(text), "dakr_reconciles_total", result="ok") >= 1, capsys)
    assert rc == 0 and "metrics" in seen, "the replica never did any work"
    m = samples(seen["metrics"])
    assert value(m, "dakr_leader") == 1
    assert seen["lease"]["spec"]["holderIdentity"].startswith("dakr-0")
    assert seen["readyz"] == 200
    after = kubeapi.get("coordination.k8s.io/v1", "Lease", LEASE)
    assert not after["spec"].get("holderIdentity")  # released on the way out


def test_stands_by_while_another_leads(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def micro(t: dt.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    now = dt.datetime.now(dt.UTC)
    kubeapi.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": LEASE, "namespace": "default"},
                  "spec": {"holderIdentity": "other-replica", "leaseDurationSeconds": 600,
                           "acquireTime": micro(now), "renewTime": micro(now),
                           "leaseTransitions": 0}})
    seen_standby = {"scrapes": 0}

    def standing_by(text: str) -> bool:
        # Give it time to try: several scrapes after the server is up, still no round.
        seen_standby["scrapes"] += 1
        return seen_standby["scrapes"] >= 20

    rc, seen = run_leader(kubeapi, origin, tmp_path, standing_by, capsys)
    assert rc == 0 and "metrics" in seen
    m = samples(seen["metrics"])
    assert value(m, "dakr_leader") == 0
    assert value(m, "dakr_reconciles_total", result="ok") == 0
    assert seen["readyz"] == 200
    assert seen["lease"]["spec"]["holderIdentity"] == "other-replica"
    assert kubeapi.get("coordination.k8s.io/v1", "Lease", LEASE)["spec"][
        "holderIdentity"] == "other-replica"
    assert value(m, "dakr_recommendations_taken_in_total", source="file") == 0
