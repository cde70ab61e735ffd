"""The stream's command line: `platform serve` as a real process, `ingest`, `list`, `import`.

Cases:
- `python -m reconciler.stream.platform --from FILE.yaml --port 0` with --drop-after,
  --duplicate-every, --garbage-every and --acks-out, against `ingest --until-idle`: every
  recommendation is stored once, `list --output json` prints them with id and phase, and
  the acks file has one JSON line per answer received (id, kind, reason), garbage nacked;
  SIGTERM stops the platform with exit code 0;
- `list` in text form; `--store kube` with an unusable kubeconfig exits 2 with a clear
  message; `import` and `list` with `--store kube` work on the CRs of the test API server;
- `import vpa` prints valid recommendation documents; `import krr --store` stores them and
  `list` shows them; importing twice changes nothing.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys

import pytest
import yaml

from reconciler.cli import main as cli
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration import stream_support as ss

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _cli(argv: list[str]) -> int:
    """The commands as a user runs them: through ``reconciler``'s own error mapping."""
    return cli.main(argv)


def test_platform_process_and_ingest(tmp_path: pathlib.Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "recs.yaml"
    src.write_text(yaml.safe_dump_all([ss.doc(i) for i in range(60)]))
    acks = tmp_path / "acks.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.devtools.platform", "--from", str(src), "--port", "0",
         "--drop-after", "25", "--duplicate-every", "9", "--garbage-every", "20",
         "--heartbeat", "0.2", "--acks-out", str(acks)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        address = line.split()[-1]
        db = tmp_path / "store.db"
        code = _cli(["ingest", "--platform", address, "--store", f"sqlite:{db}",
                     "--until-idle", "1.5", "--keepalive-time-ms", "1000",
                     "--keepalive-timeout-ms", "1000", "--heartbeat-timeout", "2",
                     "--backoff-max", "0.3"])
        assert code == 0
        capsys.readouterr()
        assert _cli(["list", "--store", f"sqlite:{db}", "--output", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
    assert sorted(i["id"] for i in listed["items"]) == sorted(ss.ids(60))
    assert {i["phase"] for i in listed["items"]} == {"Pending"}
    lines = [json.loads(x) for x in acks.read_text().splitlines()]
    assert all({"id", "kind", "reason"} <= set(x) for x in lines)
    nacks = [x for x in lines if x["kind"] == "nack"]
    # Answers in flight when a connection is dropped are lost with it (the next Hello's
    # resume_from covers them), so not every garbage message need have its nack on file.
    assert nacks and {x["id"] for x in nacks} <= {"garbage-0", "garbage-1", "garbage-2"}
    assert all(x["reason"] for x in nacks)
    assert {x["id"] for x in lines if x["kind"] == "ack"} <= ss.ids(60)


def test_list_text_and_kube_store_refused(tmp_path: pathlib.Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    vpa = tmp_path / "vpa.yaml"
    vpa.write_text(yaml.safe_dump({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": {"recommendation": {"containerRecommendations": [
            {"containerName": "app", "target": {"cpu": "25m", "memory": "262144k"}}]}}}))
    assert _cli(["import", "vpa", str(vpa), "--store", f"sqlite:{db}"]) == 0
    assert _cli(["list", "--store", f"sqlite:{db}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["KIND", "NAMESPACE", "ID", "PHASE"]
    assert out[1].split()[:2] == ["WorkloadRecommendation", "shop"]
    assert out[1].split()[2].startswith("vpa-shop-web-") and out[1].split()[3] == "Pending"
    missing = str(tmp_path / "no-such-kubeconfig")
    assert _cli(["list", "--store", "kube", "--kubeconfig", missing]) == 2
    assert "cannot load the Kubernetes configuration" in capsys.readouterr().err


def test_import_and_list_in_the_cr_store(tmp_path: pathlib.Path, kubeapi: KubeApi,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`--store kube`: the recommendations become custom resources in the cluster."""
    install_crds(kubeapi)
    kubeapi.ensure_namespace("shop")
    vpa = tmp_path / "vpa.yaml"
    vpa.write_text(yaml.safe_dump({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        "status": {"recommendation": {"containerRecommendations": [
            {"containerName": "app", "target": {"cpu": "25m", "memory": "262144k"}}]}}}))
    kc = ["--store", "kube", "--kubeconfig", kubeapi.kubeconfig_path]
    assert _cli(["import", "vpa", str(vpa), *kc]) == 0
    capsys.readouterr()
    assert _cli(["list", *kc, "--output", "json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)["items"]
    assert item["id"].startswith("vpa-shop-web-") and item["phase"] == "Pending"
    objs = kubeapi.items("dakr.devzero.io/v1alpha1", "WorkloadRecommendation")
    assert [o["spec"]["recommendationId"] for o in objs] == [item["id"]]


def test_import_prints_valid_documents_and_stores_idempotently(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "krr.json"
    report.write_text(json.dumps({"scans": [
        {"object": {"cluster": None, "name": "cart", "container": "server", "pods": [],
                    "hpa": None, "namespace": "shop", "kind": "Deployment",
                    "allocations": {"requests": {"cpu": 0.5, "memory": 536870912.0},
                                    "limits": {"cpu": None, "memory": 536870912.0}}},
         "recommended": {"requests": {"cpu": {"value": 0.0123, "severity": "WARNING"},
                                      "memory": {"value": 104857600.0, "severity": "OK"}},
                         "limits": {"cpu": {"value": None, "severity": "OK"},
                                    "memory": {"value": 104857600.0, "severity": "OK"}},
                         "info": {"cpu": None, "memory": None}},
         "severity": "WARNING", "metrics": {}},
        {"object": {"name": "nightly", "container": "job", "namespace": "shop",
                    "kind": "CronJob"},
         "recommended": {"requests": {"cpu": {"value": 0.1}}, "limits": {}},
         "severity": "OK"},
    ], "score": 50, "resources": ["cpu", "memory"], "strategy": {"name": "simple",
                                                                "settings": {}}}))
    assert _cli(["import", "krr", str(report)]) == 0
    captured = capsys.readouterr()
    docs = list(yaml.safe_load_all(captured.out))
    assert len(docs) == 1
    assert docs[0]["spec"]["containers"] == [{"name": "server", "resources": {
        "requests": {"cpu": "13m", "memory": "100Mi"}, "limits": {"memory": "100Mi"}}}]
    assert "skipped CronJob shop/nightly" in captured.err
    db = tmp_path / "s.db"
    for expected in ("stored 1, unchanged 0", "stored 0, unchanged 1"):
        assert _cli(["import", "krr", str(report), "--store", f"sqlite:{db}"]) == 0
        assert expected in capsys.readouterr().err
