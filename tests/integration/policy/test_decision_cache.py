"""The embedded engine's decision cache, on the real OPA engine and the default library.

Cases covered:
- the same input twice: the second answer comes from the cache (one hit, the engine not
  asked: an engine closed underneath would fail) and is the same decision, its id
  included; a changed input (one field) misses;
- decide_many evaluates only what the cache does not hold, in order, mixing hits and
  misses; a batch's answers are kept for single decides too;
- a reload (a data file changed: the library's parameters) misses, and the new answer
  follows the new parameters; the cache is emptied on reload;
- PolicyUnavailable is never kept: the same question is asked again;
- an input that cannot be digested is decided (fail closed) and not kept; digests tell
  1 from 1.0 and a list from a tuple;
- a long input (over RAW_KEY_MAX marshalled) is keyed by a hash, which no short input's
  key (its own bytes) can equal, still hits when asked again and misses when changed;
- the cache is bounded: least recently used first out; size 0 switches it off.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import yaml

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from reconciler.domain import decision
from tests import samples

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def _inp(name: str = "rightsizing", **patch: Any) -> dict[str, Any]:
    return samples.sample(name, patch)


def _engine(**kw: Any) -> embedded.EmbeddedEngine:
    return embedded.EmbeddedEngine(POLICIES, samples.DATA_FILES, reload_interval=-1, **kw)


def _same(a: decision.Decision, b: decision.Decision) -> bool:
    """The same answer from the same set; each answer has its own id."""
    return dataclasses.replace(a, decision_id="") == dataclasses.replace(b, decision_id="")


def test_same_input_is_a_hit_and_a_changed_one_a_miss() -> None:
    eng = _engine()
    first = eng.decide(_inp())
    assert (eng.cache.hits, eng.cache.misses, len(eng.cache)) == (0, 1, 1)
    second = eng.decide(copy.deepcopy(_inp()))
    assert eng.cache.hits == 1 and _same(first, second)
    assert second.decision_id == first.decision_id  # the same decision, reused
    eng.decide(_inp(**{"/recommendation/spec/confidence": 0.5}))
    assert eng.cache.misses == 2 and len(eng.cache) == 2
    # a hit does not touch the engine: with the engine gone underneath, it still answers
    with eng._lock:
        real, eng._engine = eng._engine, None
    try:
        assert _same(eng.decide(_inp()), first)
    finally:
        with eng._lock:
            eng._engine = real
    eng.close()


def test_decide_many_evaluates_only_the_misses() -> None:
    eng = _engine()
    a, b = _inp(), _inp("replica_scaling")
    alone = eng.decide(a)
    got = eng.decide_many([b, a, b])
    # a from the cache; b missed twice in one lookup pass, decided in one engine call
    assert eng.cache.hits == 1 and _same(got[1], alone)
    assert _same(got[0], got[2]) and got[0].decision_id != got[2].decision_id
    fresh = _engine(cache_size=0)
    assert all(_same(g, d) for g, d in zip(got, fresh.decide_many([b, a, b]), strict=True))
    assert _same(eng.decide(b), got[0]) and eng.cache.hits == 2
    eng.close()
    fresh.close()


def test_a_reload_asks_again_under_the_new_parameters(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "policies")
    data = tmp_path / "opt-in.yaml"
    shutil.copy(samples.OPT_IN, data)
    eng = embedded.EmbeddedEngine(tmp_path / "policies",
                                  [tmp_path / "policies" / "data.yaml", data],
                                  reload_interval=-1)
    before = eng.decide(_inp())
    assert before.allow and len(eng.cache) == 1
    doc = yaml.safe_load(data.read_text()) or {}
    doc["config"]["defaults"] = {"timing": {"minConfidence": 0.999}}
    data.write_text(yaml.safe_dump(doc))
    assert eng.reload(force=True) and len(eng.cache) == 0
    after = eng.decide(_inp())
    assert eng.cache.hits == 0 and not after.allow
    assert any(d.rule == "MinimumConfidence" for d in after.deny), after.deny
    eng.close()


def test_unavailable_and_unencodable_are_never_kept(tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package dakr\ndecision := {")  # never compiles
    broken = embedded.EmbeddedEngine(tmp_path, reload_interval=-1)
    assert broken.decide(_inp()).policy_unavailable
    assert broken.decide(_inp()).policy_unavailable and len(broken.cache) == 0
    broken.close()
    eng = _engine()
    odd = _inp()
    odd["recommendation"]["spec"]["confidence"] = object()  # neither digested nor encoded
    assert opa.DecisionCache.digest(odd) is None
    assert eng.decide(odd).policy_unavailable and len(eng.cache) == 0
    # a digest tells types apart: 1 and 1.0, a list and a tuple are different questions
    assert opa.DecisionCache.digest({"a": 1}) != opa.DecisionCache.digest({"a": 1.0})
    assert opa.DecisionCache.digest({"a": [1]}) != opa.DecisionCache.digest({"a": (1,)})
    eng.close()


def test_long_inputs_are_hashed_and_still_hit() -> None:
    eng = _engine()
    long = _inp()
    long["target"]["metadata"]["annotations"] = {f"note-{i}": "x" * 64 for i in range(80)}
    key = opa.DecisionCache.digest(long)
    assert key is not None and len(key) == 17 and key[:1] == b"\0"
    short = opa.DecisionCache.digest(_inp())
    assert short is not None and short[:1] != b"\0"
    assert len(short) <= opa.DecisionCache.RAW_KEY_MAX
    first = eng.decide(long)
    assert eng.decide(copy.deepcopy(long)) is first and eng.cache.hits == 1
    other = copy.deepcopy(long)
    other["target"]["metadata"]["annotations"]["note-79"] = "y"
    assert opa.DecisionCache.digest(other) != key
    assert eng.decide(other).decision_id != first.decision_id
    eng.close()


def test_the_cache_is_bounded_least_recently_used_first_out() -> None:
    eng = _engine(cache_size=2)
    x, y, z = (_inp(**{"/recommendation/spec/confidence": c}) for c in (0.91, 0.92, 0.93))
    eng.decide(x)
    eng.decide(y)
    eng.decide(x)         # x is now the most recent
    eng.decide(z)         # y goes
    assert len(eng.cache) == 2
    hits = eng.cache.hits
    eng.decide(x)
    assert eng.cache.hits == hits + 1
    eng.decide(y)
    assert eng.cache.hits == hits + 1  # y was dropped: a miss
    eng.close()
    off = _engine(cache_size=0)
    off.decide(x)
    off.decide(x)
    assert len(off.cache) == 0 and off.cache.hits == 0
    off.close()
