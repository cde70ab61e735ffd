"""Audit mode and opt-in coverage, as a new user meets them: no writer configured, and the
policy library as shipped.

Cases:
- `apply` with neither --repo nor --mode direct: every recommendation is taken in and
  decided; an allowed one ends Approved with an AuditMode condition whose message says
  nothing was written and names the settings that give the operator a writer (--repo,
  DAKR_GITOPS_REPO_URL, gitops.repoURL, --mode direct); a refused one keeps its reasons;
  the command says it runs in audit mode; no repository is cloned; `--mode audit` is the
  same;
- the library as shipped (no opt-in): every workload recommendation ends Rejected with
  NotCovered, and the message names config.scope.includeNamespaces; layering an opt-in
  file with --policy-data covers the namespace; a missing --policy-data file exits 2
  naming it;
- a recommendation without confidence (what KRR and VPA give) is decided on the other
  rules, with a warning naming its source;
- the operator (`run`, custom-resource store on the test API server, DAKR_MODE=gitops as
  the chart sets it, no repository): a recommendation created through the API is decided
  within seconds and ends Approved (AuditMode) with the live workload untouched (no write
  to any Deployment); started again with --mode direct, the same recommendation is
  decided again and applied;
- every decision records the policy revision that decided it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.runtime import operator_support as op

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"

pytestmark = pytest.mark.timeout(180)


def apply(tmp: Path, capsys: pytest.CaptureFixture[str], *extra: str,
          recs: Path = RECS) -> tuple[int, dict[str, Any], str]:
    rc = cli.main(["apply", "-f", str(recs), "--state-dir", str(tmp / "state"),
                   "--now", NOW, "--output", "json", *extra])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else {}), out.err


def stored(tmp: Path) -> dict[str, dict[str, Any]]:
    st = sqlite_store.SqliteStore(tmp / "state" / "reconciler.db")
    try:
        return {r.id: r.status for r in st.list()}
    finally:
        st.close()


def reasons_of(status: dict[str, Any]) -> list[str]:
    return [c.get("reason", "") for c in status.get("conditions") or []]


@pytest.mark.parametrize("mode", [[], ["--mode", "gitops"], ["--mode", "audit"]],
                         ids=["default", "gitops-without-repo", "audit"])
def test_apply_without_a_writer_decides_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]) -> None:
    rc, out, err = apply(tmp_path, capsys, *mode)
    assert rc == 0, err
    assert "audit mode" in err and "--repo" in err
    results = {r["id"]: r for r in out["results"]}
    approved = [r for r in results.values() if r["phase"] == model.APPROVED]
    assert approved, results
    statuses = stored(tmp_path)
    for r in approved:
        assert "nothing written" in r["message"]
        for setting in ("--repo", "DAKR_GITOPS_REPO_URL", "gitops.repoURL", "--mode direct"):
            assert setting in r["message"]
        assert "AuditMode" in reasons_of(statuses[r["id"]])
        assert statuses[r["id"]]["decision"]["allowed"] is True
    assert not any(r["phase"] == model.APPLIED for r in results.values())
    # The kube-system one stays refused with its reason, not audited.
    refused = [r for r in results.values() if r["phase"] == model.REJECTED
               and r["id"] in statuses]  # (the invalid one is refused before the store)
    assert refused and all("AuditMode" not in reasons_of(statuses[r["id"]]) for r in refused)
    assert not (tmp_path / "state" / "clones").exists()  # no repository touched


def test_shipped_library_covers_nothing_until_opted_in(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = apply(tmp_path / "shipped", capsys, "--policy-data",
                         str(samples.POLICIES / "data.yaml"))
    assert rc == 0, err
    statuses = stored(tmp_path / "shipped")
    workloads = [r for r in out["results"] if r["kind"] == model.WORKLOAD
                 and r["id"] in statuses]  # the invalid one is refused before the store
    assert workloads
    for r in workloads:
        reasons = statuses[r["id"]]["decision"]["reasons"]
        if any(x.startswith("OutOfScope") for x in reasons):
            continue  # a system namespace: never in scope, whatever covers it
        assert r["phase"] == model.REJECTED
        assert [x.split(":")[0] for x in reasons] == ["NotCovered"], reasons
        assert "config.scope.includeNamespaces" in reasons[0]

    opt_in = tmp_path / "site.yaml"
    opt_in.write_text(yaml.safe_dump({"config": {"scope": {"includeNamespaces": ["default"]}}}))
    rc, out, err = apply(tmp_path / "site", capsys, "--policy-data", str(opt_in))
    assert rc == 0, err
    reasons = [x for s in stored(tmp_path / "site").values()
               for x in (s.get("decision") or {}).get("reasons", [])]
    assert not any(x.startswith("NotCovered") for x in reasons)
    assert any(r["phase"] == model.APPROVED for r in out["results"])

    rc, _, err = apply(tmp_path / "missing", capsys, "--policy-data", str(tmp_path / "nope"))
    assert rc == 2 and "--policy-data" in err and "nope" in err


def test_no_confidence_is_decided_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
           "metadata": {"name": "krr-cart", "namespace": "default"},
           "spec": {"recommendationId": "krr-cart", "action": "Rightsizing", "source": "krr",
                    "targetRef": {"kind": "Deployment", "name": "cartservice"},
                    "containers": [{"name": "server", "resources": {
                        "requests": {"cpu": "150m"}}}]}}
    f = tmp_path / "krr.yaml"
    f.write_text(yaml.safe_dump(doc))
    rc, out, err = apply(tmp_path, capsys, recs=f)
    assert rc == 0, err
    (res,) = out["results"]
    status = stored(tmp_path)["krr-cart"]
    assert res["phase"] == model.APPROVED, res
    assert any("no confidence given (source krr)" in w
               for w in status["decision"]["warnings"])


def test_every_decision_records_its_policy_revision(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = apply(tmp_path, capsys)
    assert rc == 0, err
    revisions = {s["decision"].get("policyRevision") for s in stored(tmp_path).values()
                 if s.get("decision")}
    assert len(revisions) == 1
    (rev,) = revisions
    assert rev is not None and rev.startswith("sha256:")


def test_operator_without_a_writer_audits_then_applies_once_it_has_one(
        kubeapi: KubeApi, tmp_path: Path) -> None:
    crds.install_crds(kubeapi)
    kubeapi.seed(kubeapi.deployment("cart"))
    kubeapi.requests.reset()
    common = ["--store", "kube", "--kubeconfig", kubeapi.kubeconfig_path,
              "--state-dir", str(tmp_path / "state"), "--policies", str(samples.POLICIES),
              "--policy-data", str(samples.OPT_IN), "--resync", "30"]
    running = op.start(common, tmp_path, env={"DAKR_MODE": "gitops"}, name="audit")
    try:
        op.create(kubeapi, op.wrec("rec-audit", "cart", name="audit-me", cpu="80m"))
        op.wait_for(lambda: op.phase_of(kubeapi, "rec-audit") == model.APPROVED, timeout=20)
        rec = op.rec_of(kubeapi, "rec-audit")
        assert rec is not None
        conds = {c["reason"]: c for c in rec["status"]["conditions"]}
        assert "AuditMode" in conds
        assert "gitops.repoURL" in conds["AuditMode"]["message"]
        assert op.requests_of(kubeapi, "cart")["cpu"] == "100m"  # untouched
        writes = [r for r in kubeapi.requests.writes() if r.resource == "deployments"]
        assert writes == []
        assert "audit mode" in running.logs()
    finally:
        assert running.stop() == 0

    running = op.start([*common, "--mode", "direct"], tmp_path, name="direct")
    try:
        op.wait_for(lambda: op.phase_of(kubeapi, "rec-audit") == model.APPLIED, timeout=20)
        assert op.requests_of(kubeapi, "cart")["cpu"] == "80m"
    finally:
        assert running.stop() == 0
