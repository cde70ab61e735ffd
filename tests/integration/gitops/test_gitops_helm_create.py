"""`reconciler apply --layout FILE` on a real git repository holding a chart as `helm create`
writes it, end to end (validate, locate, policy, plan, render, commit, push).

The chart (tests/golden/layout/helm_create_chart/myapp) is `helm create myapp` with a
`helm create cache` subchart in charts/, as a team would have edited it: the parent's
values.yaml has trailing tabs after four values (`replicaCount: 1<TAB>`,
`pullPolicy: IfNotPresent<TAB>`, `resources: {}<TAB>`, the subchart's
`replicaCount: 1<TAB>`), and a `cache:` section for the subchart with its own
`resources: {}` and commented-out examples.

Cases:
- the top level of the values file (`valuesPaths: {myapp: "."}`): a resources change
  turns `resources: {}` into a block mapping in the file's indentation, the commented-out
  examples under it stay byte for byte; a replica change edits the chart's own
  `replicaCount` (no `replicas` key added beside it);
- a subchart's section (`prefix: cache`, spelled with quotes in the layout to show the
  quoted form reads the same key): resources and `cache.replicaCount` likewise;
- the branch's diff holds only the changed values and the lines that open the new
  blocks; the trailing tabs stay where they were; only values.yaml changes;
- the edited chart, rendered with the real Helm library (helm-python-sdk; skipped when it
  cannot load), gives both Deployments the recommended replicas and requests;
- the `"."` layout spelling and `""` give the same result; a malformed path is a
  ConfigError naming the key (exit 2) before anything is written.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import yaml

from reconciler.cli import main as cli
from tests.integration.gitops.test_gitops_layouts import (
    GOLDEN,
    apply,
    changed_files,
    diff_lines,
    make_origin,
    rightsize,
    sh,
    wrec,
)

CHART = GOLDEN / "helm_create_chart"
VALUES = "myapp/values.yaml"
LAYOUT = """\
kind: helm
valuesFile: myapp/values.yaml
defaultContainer: myapp
valuesPaths:
  myapp: {top}
  myapp-cache:
    prefix: '"cache"'
    container: cache
"""
RECS = (wrec("hc-size", "default", "myapp", rightsize("myapp", "{cpu: 50m, memory: 64Mi}"))
        + wrec("hc-scale", "default", "myapp", "  action: ReplicaScaling\n  replicas: 3\n")
        + wrec("hc-cache", "default", "myapp-cache", rightsize("cache", "{cpu: 20m}"))
        + wrec("hc-cache-scale", "default", "myapp-cache",
               "  action: ReplicaScaling\n  replicas: 2\n"))
# What the branch's diff may hold, and must: the changed values and the new blocks' keys.
EXPECTED_DIFF = sorted([
    "-replicaCount: 1\t", "+replicaCount: 3\t",
    "-resources: {}\t", "+resources:\t", "+  requests:", "+    cpu: 50m", "+    memory: 64Mi",
    "-  replicaCount: 1\t", "+  replicaCount: 2\t",
    "-  resources: {}", "+  resources:", "+    requests:", "+      cpu: 20m",
])


def _layout(tmp: Path, top: str) -> Path:
    path = tmp / "layout.yaml"
    path.write_text(LAYOUT.format(top=top))
    return path


def _helm() -> types.ModuleType | None:
    try:
        import helm_python

        helm_python.helm_sdk_version()  # forces the native library to load
    except Exception:  # any failure to load the native library: no render check here
        return None
    return helm_python


@pytest.mark.parametrize("top", ['"."', "''"])
def test_helm_create_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str], top: str) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART / "myapp"})
    before = (CHART / VALUES).read_text()
    results = apply(tmp_path, origin, RECS, _layout(tmp_path, top), capsys)
    for rid in ("hc-size", "hc-scale", "hc-cache", "hc-cache-scale"):
        assert results[rid]["phase"] == "Applying", results[rid]
    branch = str(results["hc-size"]["branch"])
    assert changed_files(origin, branch) == [VALUES]
    assert sorted(diff_lines(origin, branch)) == EXPECTED_DIFF

    after = sh("git", "--git-dir", str(origin), "show", f"{branch}:{VALUES}")
    examples = before[before.index("  # We usually recommend"):before.index("\n\n# This is to")]
    assert after.count(examples) == 1
    assert after.index("\n    memory: 64Mi\n") < after.index(examples)  # block, then examples
    assert after.count("\t\n") == before.count("\t\n")  # the tabs stay
    data = yaml.load(after, Loader=yaml.CSafeLoader)
    assert "replicas" not in data and "replicas" not in data["cache"]

    helm = _helm()
    if helm is None:
        return
    checkout = tmp_path / "checkout"
    sh("git", "clone", "-q", "-b", branch, str(origin), str(checkout))
    with helm.Chart.load(checkout / "myapp") as chart:
        manifests = chart.render({}, name="myapp", namespace="default")
    rendered = {d["metadata"]["name"]: d for k, text in manifests.items()
                if k.endswith("deployment.yaml") for d in [yaml.safe_load(text)]}
    web, cache = rendered["myapp"]["spec"], rendered["myapp-cache"]["spec"]
    assert web["replicas"] == 3 and cache["replicas"] == 2
    assert web["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"}}
    assert cache["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "20m"}}


@pytest.mark.parametrize(("top", "reason"), [("'a..b'", "valuesPaths.myapp"),
                                             ("'\"unterminated'", "valuesPaths.myapp")])
def test_malformed_values_path_is_a_config_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 top: str, reason: str) -> None:
    origin = make_origin(tmp_path, {"myapp": CHART / "myapp"})
    recs = tmp_path / "recs.yaml"
    recs.write_text(RECS)
    rc = cli.main(["apply", "-f", str(recs), "--repo", str(origin), "--state-dir",
                   str(tmp_path / "state"), "--layout", str(_layout(tmp_path, top)),
                   "--output", "json"])
    err = capsys.readouterr().err
    assert rc == 2 and reason in err, err
    assert sh("git", "--git-dir", str(origin), "for-each-ref", "--format=%(refname:short)",
              "refs/heads").split() == ["main"]
