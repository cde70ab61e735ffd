"""Every Helm edit verified by a render: `reconciler apply --layout FILE` on a real git
repository holding the `helm create` chart (tests/golden/layout/helm_create_chart), with
the real Helm library (helm-python-sdk; the module is skipped when it cannot load here,
except the case that makes it fail to load on purpose).

Cases:
- `valuesPaths` pointing at a key no template reads (`myapp: autoscaling`, a mapping the
  chart has, whose `resources` and `replicas` nothing renders): both recommendations end
  Failed, the reason names the chart and the key and says no template reads it; nothing
  is committed (origin holds main only);
- a good and a bad recommendation on the same values file: the good one is committed
  (its lines only), the bad one is Failed naming its key;
- a `releaseName` in the layout other than the release's: the render holds no such
  Deployment, Failed saying so and naming the layout keys; nothing committed;
- the layout's `releaseName` and `namespace` are what the chart is rendered with: a
  release named `shop` in namespace `prod` renders `shop-myapp`, which then verifies;
- no chart in the repository (the values file alone): Failed naming the `chart` layout
  key and the setting that turns verification off; with `--no-verify-render` the same
  recommendation is written;
- the Helm library cannot load (HELM_C_LIB pointing at a file that is not a library, in a
  subprocess): Failed, the reason says the library cannot load and names the setting;
  nothing committed;
- renders per batch (the writer, item 7): four recommendations on one chart cost two
  renders (before and after), not one per recommendation; a second batch on the same
  base with other values costs one (the render before is kept); with verification off,
  none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.adapters import git, helm
from reconciler.config import layout as layoutfile
from reconciler.domain import planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import verify
from reconciler.gitops import writer as gitops
from tests import samples
from tests.integration.gitops.test_gitops_layouts import (
    GOLDEN,
    ROOT,
    apply,
    apply_args,
    changed_files,
    diff_lines,
    make_origin,
    rightsize,
    sh,
    wrec,
)

CHART = GOLDEN / "helm_create_chart" / "myapp"
VALUES = "myapp/values.yaml"
GOOD = "  myapp: '.'\n"
WRONG = "  myapp: autoscaling\n"  # a mapping of the chart; nothing reads its resources
SIZE = wrec("v-size", "default", "myapp", rightsize("myapp", "{cpu: 50m}"))
SCALE = wrec("v-scale", "default", "myapp", "  action: ReplicaScaling\n  replicas: 3\n")

pytestmark = pytest.mark.skipif(helm.available() is not None,
                                reason=f"the Helm library cannot load: {helm.available()}")


def _layout(tmp: Path, paths: str, extra: str = "") -> Path:
    path = tmp / "layout.yaml"
    path.write_text(f"kind: helm\nvaluesFile: {VALUES}\ndefaultContainer: myapp\n{extra}"
                    f"valuesPaths:\n{paths}")
    return path


def _branches(origin: Path) -> list[str]:
    return sh("git", "--git-dir", str(origin), "for-each-ref", "--format=%(refname:short)",
              "refs/heads").split()


def test_a_key_no_template_reads_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    results = apply(tmp_path, origin, SIZE + SCALE, _layout(tmp_path, WRONG), capsys)
    size, scale = results["v-size"], results["v-scale"]
    assert size["phase"] == "Failed" and scale["phase"] == "Failed", results
    for item, key in ((size, "autoscaling.resources.requests.cpu"),
                      (scale, "autoscaling.replicas")):
        message = str(item["message"])
        assert "chart myapp" in message and key in message, message
        assert "no template reads that key" in message, message
    assert _branches(origin) == ["main"]


def test_the_good_edit_goes_ahead_without_the_bad_one(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    paths = GOOD + "  myapp-cache:\n    prefix: image\n    container: cache\n"
    cache = wrec("v-cache", "default", "myapp-cache", rightsize("cache", "{cpu: 20m}"))
    results = apply(tmp_path, origin, SIZE + cache, _layout(tmp_path, paths), capsys)
    assert results["v-size"]["phase"] == "Applying", results["v-size"]
    assert results["v-cache"]["phase"] == "Failed", results["v-cache"]
    assert "image.resources.requests.cpu" in str(results["v-cache"]["message"])
    branch = str(results["v-size"]["branch"])
    assert changed_files(origin, branch) == [VALUES]
    assert sorted(diff_lines(origin, branch)) == sorted(
        ["-resources: {}\t", "+resources:\t", "+  requests:", "+    cpu: 50m"])


def test_a_release_name_that_is_not_the_releases(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    results = apply(tmp_path, origin, SIZE, _layout(tmp_path, GOOD, "releaseName: shop\n"),
                     capsys)
    message = str(results["v-size"]["message"])
    assert results["v-size"]["phase"] == "Failed", results
    assert "holds no Deployment/myapp" in message and "releaseName" in message, message
    assert _branches(origin) == ["main"]


def test_release_name_and_namespace_from_the_layout(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    rec = wrec("v-shop", "prod", "shop-myapp", rightsize("myapp", "{cpu: 50m}"))
    layout = tmp_path / "layout.yaml"
    layout.write_text(f"kind: helm\nvaluesFile: {VALUES}\ndefaultContainer: myapp\n"
                      "releaseName: shop\nnamespace: prod\nvaluesPaths:\n  shop-myapp: '.'\n")
    results = apply(tmp_path, origin, rec, layout, capsys)
    assert results["v-shop"]["phase"] == "Applying", results["v-shop"]


def test_no_chart_in_the_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {VALUES: CHART / "values.yaml"})
    layout = _layout(tmp_path, GOOD)
    results = apply(tmp_path, origin, SIZE, layout, capsys)
    message = str(results["v-size"]["message"])
    assert results["v-size"]["phase"] == "Failed", results
    assert "`chart`" in message and "--no-verify-render" in message, message
    assert "DAKR_GITOPS_VERIFY_RENDER=false" in message, message
    assert _branches(origin) == ["main"]
    shutil.rmtree(tmp_path / "state")
    results = apply(tmp_path, origin, SIZE, layout, capsys, "--no-verify-render")
    assert results["v-size"]["phase"] == "Applying", results["v-size"]


def test_the_library_cannot_load(tmp_path: Path) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    fake = tmp_path / "libhelm_c.so"
    fake.write_text("not a library\n")
    env = {**os.environ, "HELM_C_LIB": str(fake), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *apply_args(tmp_path, origin, SIZE,
                                                    _layout(tmp_path, GOOD)),
         "--policy-data", str(samples.OPT_IN)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (item,) = json.loads(proc.stdout)["results"]
    assert item["phase"] == "Failed", (item, proc.stderr)
    assert "cannot load" in item["message"] and "--no-verify-render" in item["message"], item
    assert _branches(origin) == ["main"]


def _plans(salt: int) -> list[tuple[str, planner.Plan]]:
    def size(rec: str, name: str, container: str, res: str, value: str) -> planner.Plan:
        edit = planner.ValueEdit(container, "requests", res, None, value)
        return planner.Plan(rec, "Deployment", "default", name, resources=(edit,))

    return [
        ("myapp", size(f"a{salt}", "myapp", "myapp", "cpu", f"{50 + salt}m")),
        ("myapp", planner.Plan(f"b{salt}", "Deployment", "default", "myapp",
                               replicas=(1, 3 + salt))),
        ("myapp-cache", size(f"c{salt}", "myapp-cache", "cache", "memory", f"{64 + salt}Mi")),
        ("myapp-cache", planner.Plan(f"d{salt}", "Deployment", "default", "myapp-cache",
                                     replicas=(1, 2 + salt))),
    ]


def test_renders_per_batch(tmp_path: Path) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART})
    lay = layoutfile.parse_layout(yaml_layout())
    verify.forget_renders()
    counts = []
    for n, check in ((0, True), (1, True), (2, False)):
        with git.Workspace.open(str(origin), tmp_path / f"clone-{n}", "main") as ws:
            targets = [("default", "Deployment", t) for t in ("myapp", "myapp-cache")]
            index = repo_index.Index.build(ws.root, lay, targets)
            edits = [(index.locate(("default", "Deployment", t)), p) for t, p in _plans(n)]
            written = gitops.write(ws, "main", f"dakr/renders-{n}", edits, message="m",
                                   verify_renders=check)
        assert not written.failed and written.created_commit, written
        counts.append(written.renders)
    assert counts == [2, 1, 0]


def yaml_layout() -> dict[str, object]:
    return {"kind": "helm", "valuesFile": VALUES, "defaultContainer": "myapp",
            "valuesPaths": {"myapp": ".", "myapp-cache": {"prefix": "cache",
                                                          "container": "cache"}}}
