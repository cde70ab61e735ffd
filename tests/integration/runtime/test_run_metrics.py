"""Prometheus metrics of `reconciler run`, scraped over HTTP as Prometheus would.

Cases:
- end to end: `reconciler run` (the real CLI, GitOps mode, a file source, the embedded
  OPA engine and the default policy) serves /metrics on --metrics-addr; after its first
  round the scrape shows the round, the recommendations taken in and refused by source,
  the items per mode and phase (the same counts as the store holds), the policy denials
  by rule, the leader gauge and a last-success timestamp; SIGTERM ends it between rounds;
- the metrics port serves /metrics only (no probes), the health port serves both;
- a round that fails with a temporary error is counted (result="error"), logged, and the
  loop goes on: the next round succeeds and decides the same recommendations; a
  permanent error ends the loop, counted too;
- series labels are bounded: no recommendation id or workload name appears in a scrape.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.domain import errors, model
from reconciler.runtime import loop as run
from reconciler.runtime import metrics, sources
from tests.integration.run_support import free_port, get, run_until, samples, value

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"


def test_run_serves_metrics(origin: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    mport, hport = free_port(), free_port()

    def probes() -> dict[str, Any]:
        return {"metrics_port_healthz": get(f"http://127.0.0.1:{mport}/healthz")[0],
                "health_port_metrics": get(f"http://127.0.0.1:{hport}/metrics")[0],
                "readyz": get(f"http://127.0.0.1:{hport}/readyz")[0]}

    rc, scraped = run_until(
        ["run", "--repo", str(origin), "--state-dir", str(tmp_path / "state"), "--now", NOW,
         "--output", "json", "--source", f"file:{RECS}", "--interval", "30",
         "--metrics-addr", f"127.0.0.1:{mport}", "--health-addr", f"127.0.0.1:{hport}"],
        mport, lambda text: 'dakr_rounds_total{result="ok"} 1.0' in text, probes)
    capsys.readouterr()
    assert rc == 0
    assert "metrics" in scraped, "no successful round was scraped"
    assert scraped["metrics_port_healthz"] == 404  # the metrics port serves /metrics only
    assert scraped["health_port_metrics"] == 200 and scraped["readyz"] == 200

    m = samples(scraped["metrics"])
    assert value(m, "dakr_rounds_total", result="ok") == 1
    assert value(m, "dakr_rounds_total", result="error") == 0
    assert value(m, "dakr_round_duration_seconds_count") == 1
    assert value(m, "dakr_last_successful_round_timestamp_seconds") > time.time() - 120
    assert value(m, "dakr_leader") == 1
    # examples/recommendations.yaml: 14 well-formed, 1 malformed.
    assert value(m, "dakr_recommendations_taken_in_total", source="file") == 14
    assert value(m, "dakr_recommendations_refused_total", source="file") == 1
    assert value(m, "dakr_pending_recommendations") == 14

    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        stored = collections.Counter(r.phase for r in st.list())
    finally:
        st.close()
    counted = {dict(labels)["phase"]: v for (name, labels), v in m.items()
               if name == "dakr_batch_items_total" and dict(labels)["mode"] == "gitops"}
    assert counted == dict(stored)
    assert counted.get(model.REJECTED, 0) >= 1
    denials = {dict(labels)["rule"]: v for (name, labels), v in m.items()
               if name == "dakr_policy_denials_total"}
    assert sum(denials.values()) >= counted[model.REJECTED]
    assert "rec-0001" not in scraped["metrics"]  # no per-recommendation series
    assert "cartservice" not in scraped["metrics"]


def test_temporary_error_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    m = metrics.Metrics()
    db = tmp_path / "s.db"
    calls: list[int] = []
    stop = threading.Event()

    def batch(docs: list[dict[str, Any]]) -> object:
        calls.append(len(docs))
        if len(calls) == 1:
            raise errors.TemporaryError("git remote unreachable")
        stop.set()
        return None

    rounds = run.loop([sources.Source("file", str(RECS))], lambda: sqlite_store.SqliteStore(db),
                      tmp_path / "stream.db", batch, interval=0.01, once=False, stop=stop,
                      metrics=m)
    assert rounds == 2
    assert calls == [14, 14]  # the failed round lost nothing: the same 14 again
    scrape = samples(m.exposition().decode())
    assert value(scrape, "dakr_rounds_total", result="error") == 1
    assert value(scrape, "dakr_rounds_total", result="ok") == 1
    assert value(scrape, "dakr_recommendations_taken_in_total", source="file") == 14


def test_permanent_error_ends_the_loop(tmp_path: Path) -> None:
    m = metrics.Metrics()

    def batch(docs: list[dict[str, Any]]) -> object:
        raise errors.ConfigError("no such repository")

    with pytest.raises(errors.ConfigError):
        run.loop([sources.Source("file", str(RECS))],
                 lambda: sqlite_store.SqliteStore(tmp_path / "s.db"), tmp_path / "stream.db",
                 batch, interval=0.01, once=False, stop=threading.Event(), metrics=m)
    scrape = samples(m.exposition().decode())
    assert value(scrape, "dakr_rounds_total", result="error") == 1
    assert value(scrape, "dakr_last_successful_round_timestamp_seconds") == 0
