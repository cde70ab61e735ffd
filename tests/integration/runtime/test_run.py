"""`reconciler run --once`: the operator does what there is to do, prints it, and exits.

Cases:
- file and VPA sources: both are taken into the store and decided, in one GitOps batch
  (the VPA one, which gives no confidence, is decided on the other rules with a warning
  naming its source); the malformed document of the file is refused on its own;
- the platform source: recommendations arrive over gRPC from the reference platform on
  loopback, are acked once stored, and proposed in one pull request;
- a second run finds nothing pending, prints nothing and makes no commit;
- decisions made after the stream went idle wait in the outbox and go up on the next
  connection, once, in order;
- a recommendation whose spec changes (same id, new generation) is decided again;
- unusable --source values and a missing --policy-data file exit 2;
- /healthz and /readyz; the DAKR_* environment the chart sets becomes the defaults of
  `run` (table);
- `config check` prints the effective settings with every token masked (variables, and a
  token in the repository URL) and the chart's variables read; an invalid flag or
  variable exits 2 naming it, never with a traceback (table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters import files
from reconciler.adapters.store import port as store_api
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.config import env as config_env
from reconciler.devtools import platform
from reconciler.domain import model

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"


def run_once(tmp: Path, origin: Path, capsys: pytest.CaptureFixture[str],
             *sources: str) -> dict[str, Any]:
    argv = ["run", "--once", "--repo", str(origin), "--state-dir", str(tmp / "state"),
            "--now", NOW, "--output", "json", "--idle", "0.5"]
    for s in sources:
        argv += ["--source", s]
    rc = cli.main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out) if out.out.strip() else {"results": []}


def records(tmp: Path) -> dict[str, store_api.Record]:
    st = sqlite_store.SqliteStore(tmp / "state" / "reconciler.db")
    try:
        return {r.id: r for r in st.list()}
    finally:
        st.close()


def test_file_and_vpa_sources(origin: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    vpa = tmp_path / "vpa.yaml"
    vpa.write_text(yaml.safe_dump({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "shipping", "namespace": "default"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": "shippingservice"}},
        "status": {"recommendation": {"containerRecommendations": [
            {"containerName": "server", "target": {"cpu": "80m", "memory": "64Mi"}}]}}}))
    doc = run_once(tmp_path, origin, capsys, f"file:{RECS}", f"vpa:{vpa}")
    phases = {r["id"]: r["phase"] for r in doc["results"]}
    assert phases["rec-0001"] == model.APPLYING and phases["rec-0009"] == model.REJECTED
    (vpa_item,) = [r for r in doc["results"] if r["id"].startswith("vpa-")]
    # VPA gives no confidence: decided on the other rules, with a warning that says so,
    # and proposed in the same pull request.
    assert vpa_item["phase"] == model.APPLYING
    assert any("no confidence given (source vpa)" in w
               for w in vpa_item["decision"]["warnings"])
    assert "rec-0015" not in records(tmp_path)  # malformed: refused, never stored
    again = run_once(tmp_path, origin, capsys, f"file:{RECS}", f"vpa:{vpa}")
    assert again == {"results": []}  # nothing pending: no batch, no commit


def test_platform_source(origin: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    docs = files.load_documents(RECS)
    server = platform.PlatformServer(platform.build_feed(docs)).start()
    try:
        doc = run_once(tmp_path, origin, capsys, f"platform:127.0.0.1:{server.port}")
        acked = set(server.state.acked_ids())
        nacked = {n["id"] for n in server.state.nacks()}
    finally:
        server.stop(grace=0.5)
    assert len(acked) == 14 and nacked == {"rec-0015"}
    phases = {r["id"]: r["phase"] for r in doc["results"]}
    assert set(phases) == acked
    assert phases["rec-0001"] == model.APPLYING
    assert doc["createdCommit"] is True


def test_statuses_go_up_the_stream(origin: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A round's decisions are queued for the platform and sent by the next connection,
    each once, in order."""
    docs = files.load_documents(RECS)
    server = platform.PlatformServer(platform.build_feed(docs)).start()
    try:
        first = run_once(tmp_path, origin, capsys, f"platform:127.0.0.1:{server.port}")
        assert server.state.upstream == []  # decided after the stream went idle
        run_once(tmp_path, origin, capsys, f"platform:127.0.0.1:{server.port}")
        assert server.state.wait_for(lambda s: len(s.upstream) >= 14, timeout=10)
        upstream = list(server.state.upstream)
    finally:
        server.stop(grace=0.5)
    sent = {u["recommendation_id"]: u["phase"] for u in upstream}
    assert sent == {r["id"]: r["phase"] for r in first["results"]}
    assert all(u["type"] == "status_update" for u in upstream)
    seqs = [u["upstream_sequence"] for u in upstream]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_changed_spec_is_decided_again(origin: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.yaml"
    text = ("apiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
            "metadata: {namespace: default}\nspec:\n  recommendationId: rec-x\n"
            "  action: Rightsizing\n  targetRef: {kind: Deployment, name: cartservice}\n"
            "  containers: [{name: server, resources: {requests: {cpu: 150m}}}]\n"
            "  confidence: CONF\n")
    one.write_text(text.replace("CONF", "0.2"))
    first = run_once(tmp_path, origin, capsys, f"file:{one}")
    assert [r["phase"] for r in first["results"]] == [model.REJECTED]
    assert run_once(tmp_path, origin, capsys, f"file:{one}") == {"results": []}
    one.write_text(text.replace("CONF", "0.95"))
    third = run_once(tmp_path, origin, capsys, f"file:{one}")
    assert [r["phase"] for r in third["results"]] == [model.APPLYING]
    assert records(tmp_path)["rec-x"].generation == 2


@pytest.mark.parametrize(("argv", "needle"), [
    (["--source", "ftp:somewhere", "--repo", "x"], "expected one of platform"),
    (["--source", "file:x.yaml", "--repo", "x", "--policy-data", "nope.yaml"],
     "--policy-data nope.yaml"),
])
def test_unusable_settings(argv: list[str], needle: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--once", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_health_endpoints() -> None:
    """/healthz answers once the process serves; /readyz only after a first round."""
    import urllib.error
    import urllib.request

    from reconciler.runtime import health as health_mod

    health = health_mod.Health("127.0.0.1:0")
    base = f"http://127.0.0.1:{health.port}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            code = int(e.code)
            e.close()
            return code

    try:
        assert status("/healthz") == 200
        assert status("/readyz") == 503
        health.ready.set()
        assert status("/readyz") == 200
        assert status("/metrics-or-anything") == 404
    finally:
        health.close()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, {}),
    ({"DAKR_MODE": "direct", "DAKR_STORE": "kubernetes"}, {"mode": "direct", "store": "kube"}),
    ({"DAKR_WORK_DIR": "/var/lib/dakr", "DAKR_HEALTH_ADDR": ":8081",
      "DAKR_METRICS_ADDR": ":8080"},
     {"state_dir": Path("/var/lib/dakr"), "health_addr": ":8081", "metrics_addr": ":8080"}),
    ({"DAKR_GITOPS_REPO_URL": "https://h/o/r.git", "DAKR_GITOPS_PROVIDER": "gitlab",
      "DAKR_GITOPS_API_URL": "https://gl"},
     {"repo": "https://h/o/r.git", "forge": "gitlab", "forge_url": "https://gl"}),
    ({"DAKR_MODE": ""}, {}),
])
def test_run_reads_the_charts_environment(env: dict[str, str],
                                          expected: dict[str, object]) -> None:
    assert config_env.run_defaults(env) == expected


def test_config_check_prints_the_settings_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DAKR_GITOPS_TOKEN", "s3cr3t-forge")
    monkeypatch.setenv("DAKR_API_TOKEN", "s3cr3t-platform")
    monkeypatch.setenv("DAKR_CLUSTER_ID", "prod-eu")
    monkeypatch.setenv("DAKR_GITOPS_BRANCH_PREFIX", "cost/")
    rc = cli.main(["config", "check", "--repo", "https://bot:s3cr3t-url@git.example/org/r.git",
                   "--source", "platform:api.example:443", "--workers", "8"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "s3cr3t" not in out  # no token, from a variable or a URL
    doc = json.loads(out)
    assert doc["settings"]["forge"]["token"] == "***"
    assert doc["run"]["platform_token"] == "***"
    assert doc["settings"]["git"]["repo"] == "https://***@git.example/org/r.git"
    assert doc["settings"]["cluster_id"] == "prod-eu"
    assert doc["settings"]["git"]["branch_prefix"] == "cost/"
    assert doc["run"]["workers"] == 8 and doc["writers"] == ["gitops"]


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["--health-addr", "nonsense"], {}, "--health-addr (DAKR_HEALTH_ADDR)"),
    (["--metrics-addr", ":99999"], {}, "--metrics-addr"),
    (["--workers", "0"], {}, "--workers"),
    (["--batch-window", "-1"], {}, "--batch-window"),
    ([], {"DAKR_LEADER_ELECTION_LEASE_DURATION": "soon"}, "DAKR_LEADER_ELECTION_LEASE_DURATION"),
    ([], {"DAKR_LOG_LEVEL": "chatty"}, "DAKR_LOG_LEVEL"),
])
def test_config_check_names_what_is_invalid(argv: list[str], env: dict[str, str],
                                            needle: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc = cli.main(["config", "check", "--repo", "x", "--source", "file:x.yaml", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
