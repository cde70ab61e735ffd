"""The direct-mode CLI pieces against the test API server, through its kubeconfig.

Cases:
- `reconciler apply --mode direct` applies a batch, prints
  the JSON summary, records go to the CR store in the cluster; a second run prints the same
  phases and writes nothing; `--dry-run` writes nothing;
- `reconciler rollback ID` restores the values and exits 0, prints JSON;
  an unknown id exits 1; a refused rollback (foreign change) exits 1 and says why;
- a deleted recommendation is rolled back by the next `apply` run before its batch;
- bad --qps exits 2 naming it; gitops mode without --repo runs in audit mode and says so;
- --no-server-dry-run sends the guarded patch alone; a bad --drain-timeout exits 2;
- `run --once --mode direct` with a file source: stored as a CR and applied in the same
  round; the next round has nothing pending and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from reconciler.cli import main as cli
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.direct.test_direct_apply import (
    GROUP,
    POLICY,
    VERSION,
    rightsizing,
)


@pytest.fixture
def setup(kubeapi: KubeApi, tmp_path: Path) -> tuple[KubeApi, Path]:
    install_crds(kubeapi)
    kubeapi.seed(kubeapi.deployment("web", containers=[kubeapi.container("app")]))
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.rego").write_text(POLICY)
    return kubeapi, pol


def _apply(api: KubeApi, pol: Path, *extra: str, docs: list[Any]) -> int:
    """`reconciler apply --mode direct` through the real entry point."""
    f = pol.parent / f"recs-{len(list(pol.parent.glob('recs-*')))}.yaml"
    f.write_text(yaml.safe_dump_all(docs) if docs else "")
    return cli.main(["apply", "--mode", "direct", "-f", str(f), "--kubeconfig",
                     api.kubeconfig_path, "--policies", str(pol), "--output", "json", *extra])


def _rollback(api: KubeApi, *extra: str) -> int:
    return cli.main(["rollback", *extra, "--kubeconfig", api.kubeconfig_path])


def _cpu(api: KubeApi) -> str:
    obj = api.get("apps/v1", "Deployment", "web")
    return str(obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])


def test_apply_then_rerun(setup: tuple[KubeApi, Path], capsys: pytest.CaptureFixture[str],
                          ) -> None:
    api, pol = setup
    docs = [rightsizing("rec-1", requests={"cpu": "300m"})]
    assert _apply(api, pol, "--dry-run", docs=docs) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["phase"] for r in out["results"]] == ["Approved"]
    assert _cpu(api) == "100m"
    assert not api.exists(f"{GROUP}/{VERSION}", "WorkloadRecommendation", "rec-1")

    assert _apply(api, pol, "--qps", "100", "--burst", "10", docs=docs) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["phase"] for r in out["results"]] == ["Applied"]
    assert _cpu(api) == "300m"
    assert api.get(f"{GROUP}/{VERSION}", "WorkloadRecommendation", "rec-1")["status"][
        "phase"] == "Applied"
    api.requests.reset()
    assert _apply(api, pol, docs=docs) == 0
    assert [r["phase"] for r in json.loads(capsys.readouterr().out)["results"]] == ["Applied"]
    assert api.requests.writes() == []


def test_rollback_command(setup: tuple[KubeApi, Path], capsys: pytest.CaptureFixture[str],
                          ) -> None:
    api, pol = setup
    _apply(api, pol, docs=[rightsizing("rec-1", requests={"cpu": "300m"})])
    capsys.readouterr()
    assert _rollback(api, "rec-1", "-o", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["phase"], out["refused"]) == ("RolledBack", False)
    assert _cpu(api) == "100m"
    assert _rollback(api, "nope") == 1
    assert "nope" in capsys.readouterr().err


def test_rollback_refused_exit_code(setup: tuple[KubeApi, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    _apply(api, pol, docs=[rightsizing("rec-1", requests={"cpu": "300m"})])

    def edit(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1"
    api.modify("apps/v1", "Deployment", "web", edit)
    capsys.readouterr()
    assert _rollback(api, "rec-1") == 1
    assert "rollback refused" in capsys.readouterr().out
    assert _cpu(api) == "1"


def test_apply_rolls_back_deleted_first(setup: tuple[KubeApi, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    _apply(api, pol, docs=[rightsizing("rec-1", requests={"cpu": "300m"})])
    kubernetes.client.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
        GROUP, VERSION, "default", "workloadrecommendations", "rec-1")
    assert _apply(api, pol, docs=[]) == 0
    assert "rec-1: RolledBack" in capsys.readouterr().err
    assert _cpu(api) == "100m"
    assert not api.exists(f"{GROUP}/{VERSION}", "WorkloadRecommendation", "rec-1")


def test_bad_rate_limit(setup: tuple[KubeApi, Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    assert _apply(api, pol, "--qps", "0", docs=[]) == 2
    assert "qps" in capsys.readouterr().err


def test_no_server_dry_run_flag(setup: tuple[KubeApi, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    api, pol = setup
    api.requests.reset()
    assert _apply(api, pol, "--no-server-dry-run",
                  docs=[rightsizing("rec-n", requests={"cpu": "300m"})]) == 0
    capsys.readouterr()
    assert _cpu(api) == "300m"
    assert api.requests.count("patch", "deployments") == 1  # the guarded patch alone
    assert _apply(api, pol, "--drain-timeout", "0", docs=[]) == 2
    assert "--drain-timeout" in capsys.readouterr().err


def test_gitops_mode_without_a_repo_audits(setup: tuple[KubeApi, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, pol = setup
    f = pol.parent / "r.yaml"
    f.write_text("")
    assert cli.main(["apply", "-f", str(f), "--policies", str(pol),
                     "--state-dir", str(pol.parent / "state")]) == 0
    err = capsys.readouterr().err
    assert "audit mode" in err and "--repo" in err and "--mode direct" in err


def test_run_once_in_direct_mode(setup: tuple[KubeApi, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`reconciler run --mode direct`: a file source into the CR store, applied in the
    cluster in the same round; a second round has nothing pending and writes nothing."""
    api, pol = setup
    f = pol.parent / "run-recs.yaml"
    f.write_text(yaml.safe_dump_all([rightsizing("rec-r", requests={"cpu": "300m"})]))
    argv = ["run", "--once", "--mode", "direct", "--source", f"file:{f}", "--kubeconfig",
            api.kubeconfig_path, "--policies", str(pol), "--state-dir",
            str(pol.parent / "state"), "--output", "json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["phase"]) for r in out["results"]] == [("rec-r", "Applied")]
    assert _cpu(api) == "300m"
    api.requests.reset()
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == ""
    assert api.requests.writes() == []
