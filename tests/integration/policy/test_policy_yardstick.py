"""The benchmark's straight-line yardstick (bench/ideal-policy) answers as the library does.

bench/bench_policy.py times that policy beside the library to show what the library's
structure costs; its figures mean something only while it gives the library's answers.

Cases covered:
- on the benchmark's own generated inputs, under the opted-in data, the yardstick answers
  a good share of the rightsizing inputs (its common case), and each of those answers is
  the library's decision document, key for key; clamps, minimum-confidence denials and
  allowed changes occur among them;
- it answers nothing else: no other action, and no workload outside the scope.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from tests import samples

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_policy.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policy_for_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def answered() -> list[tuple[dict[str, Any], Any, Any]]:
    """(input, yardstick's document, library's document) for each input it answers."""
    bench = _bench()
    data = [samples.POLICIES / "data.yaml", samples.OPT_IN]
    ideal = embedded.EmbeddedEngine(bench.IDEAL, data, reload_interval=-1, cache_size=0)
    library = embedded.EmbeddedEngine(samples.POLICIES, data, reload_interval=-1, cache_size=0)
    assert ideal.last_error is None, ideal.last_error
    out = []
    for inp in bench.make_inputs(600):
        try:
            doc = ideal.evaluate(ideal.path, ideal.sent(inp))
        except opa.Undefined:
            continue
        out.append((inp, doc, library.evaluate(library.path, library.sent(inp))))
    ideal.close()
    library.close()
    return out


def test_it_answers_as_the_library_on_its_common_case(
        answered: list[tuple[dict[str, Any], Any, Any]]) -> None:
    assert len(answered) >= 200
    for inp, doc, expected in answered:
        assert doc == expected, inp["recommendation"]["spec"]
    rules = Counter(d["rule"] for _, doc, _ in answered for d in doc["deny"])
    assert rules["MinimumConfidence"] > 0
    assert any("bounds" in doc for _, doc, _ in answered)
    assert any(doc["allow"] for _, doc, _ in answered)


def test_it_answers_nothing_else(answered: list[tuple[dict[str, Any], Any, Any]]) -> None:
    for inp, _, _ in answered:
        rec = inp["recommendation"]
        assert rec["spec"]["action"] == "Rightsizing"
        assert rec["metadata"]["namespace"] != "kube-system"
