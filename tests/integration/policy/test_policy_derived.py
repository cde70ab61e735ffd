"""What the policy set derives from its data alone is computed once per load, and follows the data.

The embedded engine evaluates ``data.dakr.derived`` (policies/dakr/derived.rego) when it
loads a policy set and places it at ``data.dakr_derived``, where the library reads the
values it would otherwise compute on every decision (issue 16).

Cases covered:
- the default library's derived document is placed at data.dakr_derived as computed, a
  view of the defaults and one per scoped rule;
- decisions are the same with the derived values and without them (the plain library, as
  the Rego test runner and an OPA sidecar run it), on every sample under the opt-in, a
  scoped-rule and an as-shipped configuration;
- a reload recomputes them: a data file that appears (as the platform's parameters do) and
  then changes a profile's per-step limit moves the clamp, as a fresh engine on the same
  files decides, and a data file that goes away moves it back;
- a policy set that defines no derived document gets none, and decides as before;
- a derivation that fails leaves no derived document and the set still loads (the rules
  fail per decision, as they would without it);
- a value that does not survive the trip through JSON (a number with more digits than a
  float keeps) is not placed, and the engine says so;
- a data file cannot set data.dakr_derived itself: its key is dropped, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from tests import samples

ALLOW = 'package dakr\ndecision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}\n'

RULES_CONFIG = {"config": {"rules": [
    {"name": "strict", "match": {"namespaces": ["default"]},
     "settings": {"profile": "conservative", "approval": "review"}},
    {"name": "loose", "match": {"labels": {"app": "cartservice"}}, "priority": 5,
     "settings": {"profile": "aggressive", "guardrails": {"maxCpuCores": 0.15}}},
]}}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    st = path.stat()  # visible to an mtime check even on coarse file systems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _plain(eng: embedded.EmbeddedEngine, data_files: Sequence[Path], inp: dict[str, Any]) -> Any:
    """The decision document of the same set without the derived values."""
    data = opa.merge_data([opa.load_data_file(p) for p in data_files])
    plain = embedded.build_engine(eng.modules, data)
    try:
        return plain.eval_document("dakr.decision", inp)
    finally:
        plain.close()


def test_derived_document_is_placed_in_data() -> None:
    eng = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=-1)
    placed = eng.evaluate(opa.DERIVED_ROOT, {})
    assert placed == eng.evaluate(opa.DERIVED_PATH, {})
    assert placed["default"]["per_resource"]["cpu"] == [0.01, 16, 1000, 0.5, 2]
    assert placed["rules"] == []


@pytest.mark.parametrize("config", ["opt-in", "rules", "as shipped"])
def test_same_decisions_with_and_without_derived(tmp_path: Path, config: str) -> None:
    files: list[Path] = list(samples.AS_SHIPPED if config == "as shipped" else samples.DATA_FILES)
    if config == "rules":
        _write(tmp_path / "rules.json", json.dumps(RULES_CONFIG))
        files.append(tmp_path / "rules.json")
    eng = embedded.EmbeddedEngine(samples.POLICIES, files, reload_interval=-1, cache_size=0)
    assert eng.evaluate(opa.DERIVED_ROOT, {})["rules"] == (
        [] if config != "rules" else eng.evaluate(opa.DERIVED_PATH, {})["rules"])
    for name in samples.load():
        for patch in ({}, {"/recommendation/metadata/namespace": "shop"}):
            inp = samples.sample(name, patch)
            assert eng.evaluate(opa.DECISION_PATH, inp) == _plain(eng, files, inp), (name, patch)


def test_reload_recomputes_derived_values(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    eng = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=0,
                                  optional_data=[site])
    inp = samples.sample("rightsizing", {
        "/normalized/containers/server/proposed/requests/cpu": 0.05})
    before = eng.decide(inp)
    assert before.bounds["containers"]["server"]["requests"]["cpu"] == 0.1  # -50 % per step

    _write(site, "config:\n  profiles:\n    balanced:\n      maxDecreasePercent: 10\n")
    after = eng.decide(inp)  # reloads by itself (reload_interval=0)
    assert eng.reloads == 2
    assert after.bounds["containers"]["server"]["requests"]["cpu"] == 0.18  # -10 % per step
    assert eng.evaluate(opa.DERIVED_ROOT, {})["default"]["per_resource"]["cpu"][3] == 0.9
    fresh = embedded.EmbeddedEngine(samples.POLICIES, [*samples.DATA_FILES, site],
                                    reload_interval=-1)
    assert fresh.decide(inp).bounds == after.bounds
    assert eng.evaluate(opa.DECISION_PATH, inp) == _plain(eng, [*samples.DATA_FILES, site], inp)

    site.unlink()
    assert eng.decide(inp).bounds == before.bounds
    assert eng.reloads == 3


def test_set_without_derived_document(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, [], reload_interval=-1)
    assert eng.decide({}).allow
    with pytest.raises(opa.Undefined):
        eng.evaluate(opa.DERIVED_ROOT, {})


def test_failed_derivation_leaves_none(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego",
           'package dakr\nderived := {"x": 1 / data.config.zero}\n'
           'decision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}\n')
    _write(tmp_path / "data.json", '{"config": {"zero": 0}}')
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=-1)
    assert eng.last_error is None
    assert eng.decide({}).allow
    with pytest.raises(opa.Undefined):
        eng.evaluate(opa.DERIVED_ROOT, {})


def test_value_json_cannot_carry_is_not_placed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "dakr" / "decision.rego",
           'package dakr\nderived := {"x": 0.10000000000000000000001}\n'
           'decision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}\n')
    with caplog.at_level(logging.WARNING, logger="reconciler.adapters.opa.embedded"):
        eng = embedded.EmbeddedEngine(tmp_path, [], reload_interval=-1)
    assert eng.decide({}).allow
    with pytest.raises(opa.Undefined):
        eng.evaluate(opa.DERIVED_ROOT, {})
    assert any("do not survive JSON" in r.getMessage() for r in caplog.records)


def test_data_file_cannot_set_derived(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    poison = tmp_path / "poison.json"
    _write(poison, json.dumps({opa.DERIVED_ROOT: {"default": {"per_resource": "poison"}}}))
    with caplog.at_level(logging.WARNING, logger="reconciler.adapters.opa.embedded"):
        eng = embedded.EmbeddedEngine(samples.POLICIES, [*samples.DATA_FILES, poison],
                                      reload_interval=-1)
    assert any(opa.DERIVED_ROOT in r.getMessage() for r in caplog.records)
    assert eng.evaluate(opa.DERIVED_ROOT, {}) == eng.evaluate(opa.DERIVED_PATH, {})
    _write(tmp_path / "other" / "dakr" / "decision.rego", ALLOW)
    other = embedded.EmbeddedEngine(tmp_path / "other", [poison], reload_interval=-1)
    with pytest.raises(opa.Undefined):
        other.evaluate(opa.DERIVED_ROOT, {})
