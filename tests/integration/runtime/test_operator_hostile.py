"""One bad object never stops the operator (`reconciler run`, direct mode, the custom
resource store, the test Kubernetes API server, the default policy library).

Cases, all in one operator process:
- custom resources anyone with RBAC can create, next to good ones (what the CRD's schema
  refuses is answered 422 by the API server and never reaches us; the rest does): an id and a target
  name holding markup and a newline-free injection, a negative quantity, an absurd one,
  an unknown target kind, a target that does not exist, a status that claims a phase
  nobody gave it: each is marked on its own (its phase and a condition naming the field
  or the reason), none stops the process, and the good ones created before and after
  them are applied;
- the operator stays ready throughout and exits 0 on SIGTERM;
- no log line carries a control character from those objects;
- a failure of ours on one target (injected, `run --once`, audit mode, a local store):
  its recommendations stay Pending with a Retrying/InternalError condition naming the
  error, the other targets are decided, the command ends normally.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.runtime import operator_support as op

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[3]
MARKUP = "![x](https://evil.example/p.png) @somebody <img src=x onerror=alert(1)>"


def _argv(api: KubeApi, tmp: Path) -> list[str]:
    return ["--mode", "direct", "--store", "kube", "--kubeconfig", api.kubeconfig_path,
            "--state-dir", str(tmp / "state"), "--policies", str(ROOT / "policies"),
            "--policy-data", str(samples.OPT_IN), "--resync", "30"]


def _conditions(api: KubeApi, name: str) -> list[dict[str, Any]]:
    obj = api.get(op.API, model.WORKLOAD, name)
    return list((obj.get("status") or {}).get("conditions") or [])


def _bad(name: str, **spec: Any) -> dict[str, Any]:
    doc = op.wrec(name, "cart", name=name, cpu="80m")
    doc["spec"].update(spec)
    return doc


def test_bad_objects_are_marked_and_the_rest_goes_on(kubeapi: KubeApi,
                                                     tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    api.seed(*(api.deployment(n) for n in ("cart", "web", "shop")))
    running = op.start(_argv(api, tmp_path), tmp_path)
    try:
        op.create(api, op.wrec("good-before", "cart", cpu="80m"))
        op.wait_for(lambda: op.phase_of(api, "good-before") == model.APPLIED, timeout=20)
        bad = {
            "bad-id": _bad("bad-id", recommendationId=MARKUP),
            "bad-target": _bad("bad-target", targetRef={"kind": "Deployment",
                                                        "name": MARKUP}),
            "bad-negative": _bad("bad-negative", containers=[
                {"name": "app", "resources": {"requests": {"cpu": "-1"}}}]),
            "bad-absurd": _bad("bad-absurd", containers=[
                {"name": "app", "resources": {"requests": {"memory": "9Ei"}}}]),
            "bad-kind": _bad("bad-kind", targetRef={"kind": "CronJob", "name": "cart"}),
            "bad-missing": op.wrec("bad-missing", "nowhere", cpu="80m"),
        }
        accepted = set()
        for name, doc in bad.items():  # the CRD's schema refuses some before we see them
            try:
                op.create(api, doc)
                accepted.add(name)
            except kubernetes.client.ApiException as e:
                assert e.status == 422, e
        assert {"bad-absurd", "bad-missing"} <= accepted
        op.create(api, op.wrec("good-after", "web", cpu="70m"))
        op.wait_for(lambda: op.phase_of(api, "good-after") == model.APPLIED, timeout=20)
        assert op.requests_of(api, "web")["cpu"] == "70m"
        expected = {"bad-id": "spec.recommendationId", "bad-target": "spec.targetRef.name",
                    "bad-negative": "requests.cpu", "bad-absurd": "requests.memory",
                    "bad-kind": "spec.targetRef.kind", "bad-missing": "nowhere"}
        expected = {k: v for k, v in expected.items() if k in accepted}

        def marked() -> bool:
            for name, needle in expected.items():
                obj = api.get(op.API, model.WORKLOAD, name)
                phase = (obj.get("status") or {}).get("phase")
                if phase not in (model.REJECTED, model.FAILED):
                    return False
                said = " ".join(str(c.get("message", "")) for c in _conditions(api, name))
                said += str((obj.get("status") or {}).get("message", ""))
                if needle not in said:
                    return False
            return True

        try:
            op.wait_for(marked, timeout=30)
        except AssertionError:
            raise AssertionError({n: api.get(op.API, model.WORKLOAD, n).get("status")
                                  for n in expected}) from None
        assert running.ready()
        assert op.requests_of(api, "shop")["cpu"] == "100m"  # nobody touched it
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.kill()
    control = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
    assert not control.search(running.logs())


def test_a_failure_of_ours_marks_its_target_and_the_rest_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Fault injection (`run --once` in audit mode, a local store, the examples as a file
    source): the work on one target raises a bug; its recommendations are left Pending with
    a Retrying condition (InternalError) naming it, every other target is decided, and the
    command ends normally."""
    from reconciler.adapters.store import sqlite as sqlite_store
    from reconciler.cli import main as cli
    from reconciler.runtime import jobs

    real = jobs.audit_batch

    def audit_batch(parts: Any, cfg: Any, todo: Any, **kw: Any) -> Any:
        if any((d.get("spec") or {}).get("targetRef", {}).get("name") == "cartservice"
               for d in todo):
            raise KeyError("a bug on cartservice")
        return real(parts, cfg, todo, **kw)

    monkeypatch.setattr(jobs, "audit_batch", audit_batch)
    recs = ROOT / "examples" / "recommendations.yaml"
    rc = cli.main(["run", "--once", "--state-dir", str(tmp_path / "state"), "--idle", "0.5",
                   "--source", f"file:{recs}", "--policy-data", str(samples.OPT_IN)])
    assert rc == 0, capsys.readouterr().err
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        records = st.list()
    finally:
        st.close()
    cart = [r for r in records if (r.spec.get("targetRef") or {}).get("name") == "cartservice"]
    others = [r for r in records if r not in cart and r.kind == model.WORKLOAD]
    assert cart and others
    for r in cart:
        assert r.phase == model.PENDING
        cond = {c["reason"]: c for c in r.status.get("conditions") or []}
        assert "InternalError" in cond and "KeyError" in cond["InternalError"]["message"]
    assert all(r.phase != model.PENDING for r in others), [(r.id, r.phase) for r in others]
