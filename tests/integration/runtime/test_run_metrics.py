"""Prometheus metrics of `reconciler run`, scraped over HTTP as Prometheus would.

Cases:
- end to end: `reconciler run` (the real CLI, GitOps mode, a file source, the embedded
  OPA engine and the default policy) serves /metrics on --metrics-addr; once its work is
  done the scrape shows the keys reconciled, the recommendations taken in and refused by
  source, the outcomes per writer and phase (the same counts as the store holds), the
  policy denials by rule, one GitOps batch for all of them, the store's lists, an empty
  work queue, the leader gauge and a last-success timestamp; SIGTERM ends it;
- the metrics port serves /metrics only (no probes), the health port serves both;
- series labels are bounded: no recommendation id or workload name appears in a scrape.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.domain import model
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
         "--output", "json", "--source", f"file:{RECS}", "--resync", "30",
         "--batch-window", "0.5",
         "--metrics-addr", f"127.0.0.1:{mport}", "--health-addr", f"127.0.0.1:{hport}"],
        mport, lambda text: value(samples(text), "dakr_batch_items_total", mode="gitops",
                                  phase=model.APPLYING) >= 1, probes)
    capsys.readouterr()
    assert rc == 0
    assert "metrics" in scraped, "the work was never scraped done"
    assert scraped["metrics_port_healthz"] == 404  # the metrics port serves /metrics only
    assert scraped["health_port_metrics"] == 200 and scraped["readyz"] == 200

    m = samples(scraped["metrics"])
    # examples/recommendations.yaml: 14 well-formed for 14 workloads, 1 malformed.
    assert value(m, "dakr_reconciles_total", result="ok") == 14
    assert value(m, "dakr_reconciles_total", result="error") == 0
    assert value(m, "dakr_work_duration_seconds_count") == 14
    assert value(m, "dakr_last_successful_reconcile_timestamp_seconds") > time.time() - 120
    assert value(m, "dakr_leader") == 1
    assert value(m, "dakr_recommendations_taken_in_total", source="file") == 14
    assert value(m, "dakr_recommendations_refused_total", source="file") == 1
    assert value(m, "dakr_gitops_batch_recommendations_count") == 1  # one window, one PR
    assert value(m, "dakr_informer_lists_total", kind=model.WORKLOAD) == 1
    assert value(m, "dakr_workqueue_depth") == 0

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
