"""`reconciler apply --layout FILE` on the `helm create` chart with a subchart
(tests/golden/layout/helm_create_chart/myapp) and a layout with no `valuesPaths` at all:
the values keys are found by one probe render of the chart (reconciler.gitops.index
``Index._discover``), then written and verified by a render as usual.

Cases:
- a rightsizing and a replica change of the top-level Deployment (`myapp`) and of the
  subchart's Deployment (`myapp-cache`) are located at `resources`/`replicaCount` and
  `cache.resources`/`cache.replicaCount`, and the branch's diff holds only those values
  (and the lines that open the new blocks), in values.yaml only; every recommendation
  passes the render verification (phase Applying);
- the discovery renders the chart once for the batch (four recommendations, two
  workloads), and not again for a second batch on the same chart (kept by digest).

Skipped when the Helm library cannot load here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import helm
from reconciler.gitops import index as repo_index
from tests.integration.gitops.test_gitops_helm_create import CHART, EXPECTED_DIFF, RECS, VALUES
from tests.integration.gitops.test_gitops_layouts import (
    apply,
    changed_files,
    diff_lines,
    make_origin,
)

pytestmark = pytest.mark.skipif(helm.available() is not None,
                                reason="the Helm library cannot load here")

LAYOUT = "kind: helm\nvaluesFile: myapp/values.yaml\n"


def test_paths_found_not_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo_index.forget_discoveries()
    probes: list[int] = []
    real = repo_index._read_probes

    def counted(*args: Any) -> Any:
        probes.append(1)
        return real(*args)

    monkeypatch.setattr(repo_index, "_read_probes", counted)
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    origin = make_origin(tmp_path, {"myapp": CHART / "myapp"})
    results = apply(tmp_path / "one", origin, RECS, layout, capsys)
    for rid in ("hc-size", "hc-scale", "hc-cache", "hc-cache-scale"):
        assert results[rid]["phase"] == "Applying", results[rid]
    branch = str(results["hc-size"]["branch"])
    assert changed_files(origin, branch) == [VALUES]
    assert sorted(diff_lines(origin, branch)) == EXPECTED_DIFF
    assert len(probes) == 1

    second = make_origin(tmp_path / "again", {"myapp": CHART / "myapp"})
    again = apply(tmp_path / "two", second, RECS, layout, capsys)
    assert again["hc-cache"]["phase"] == "Applying", again["hc-cache"]
    assert len(probes) == 1  # the same chart: kept by digest
