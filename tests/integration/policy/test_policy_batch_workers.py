"""decide_many splits a batch over the policy set's engines, one thread each.

The embedded engine loads the set ``workers`` times (the binding releases the GIL while
OPA evaluates, so the parts of a batch are evaluated at once on several CPUs).

Cases covered:
- the answers are those of one engine and of decide(), in the inputs' order, for batches
  short enough to stay in one part and long enough to be split, cache hits mixed in;
- a part whose engine call fails as a whole (an input that cannot be sent) has its inputs
  decided one at a time: only the bad input is PolicyUnavailable, its neighbours in the
  same part and in the other parts are decided as usual;
- a reload swaps every engine of the set (the answers follow the new files), and close
  releases them all: a closed engine answers PolicyUnavailable.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from reconciler.adapters.opa import embedded
from reconciler.domain import decision
from tests import samples

SERVER = "/normalized/containers/server"


def _inputs(n: int) -> list[dict[str, Any]]:
    """n varied inputs: allowed and denied rightsizings, replicas, HPA and node groups."""
    kinds = ["rightsizing", "replica_scaling", "hpa_scaling", "nodegroup"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "rightsizing":
            out.append(samples.sample(kind, {
                SERVER + "/proposed/requests/cpu": round(0.02 + 0.013 * i, 3),
                "/recommendation/spec/confidence": 0.5 + (i % 6) / 10}))
        else:
            out.append(samples.sample(kind))
    return out


def _answer(d: decision.Decision) -> decision.Decision:
    return dataclasses.replace(d, decision_id="")


def _engine(policies: Path = samples.POLICIES, **kw: Any) -> embedded.EmbeddedEngine:
    eng = embedded.EmbeddedEngine(policies, samples.DATA_FILES, reload_interval=-1, **kw)
    assert eng.last_error is None, eng.last_error
    return eng


def test_split_batches_answer_as_one_engine_and_as_decide_in_order() -> None:
    inputs = _inputs(41)
    one, two = _engine(cache_size=0, workers=1), _engine(workers=3)
    try:
        assert len(two._helpers) == 2 and not one._helpers
        alone = [_answer(one.decide(i)) for i in inputs]
        assert len({(d.allow, d.deny, d.warnings) for d in alone}) > 3  # varied answers
        for batch in (inputs[:3], inputs[:11], inputs):  # one part, three parts
            assert [_answer(d) for d in one.decide_many(batch)] == alone[:len(batch)]
            assert [_answer(d) for d in two.decide_many(batch)] == alone[:len(batch)]
        # cached answers in between the misses, still in order
        mixed = [*inputs[5:9], *_inputs(60)[41:], *inputs[:2]]
        want = [_answer(one.decide(i)) for i in mixed]
        assert [_answer(d) for d in two.decide_many(mixed)] == want
    finally:
        one.close()
        two.close()


def test_a_part_that_fails_as_a_whole_is_decided_one_by_one() -> None:
    inputs = _inputs(24)
    bad = samples.sample("rightsizing", {"/recommendation/spec/confidence": {1, 2}})  # not JSON
    batch = [*inputs[:20], bad, *inputs[21:]]
    eng = _engine(cache_size=0, workers=2)
    try:
        want = [_answer(eng.decide(i)) for i in inputs]
        got = eng.decide_many(batch)
        assert [d.policy_unavailable for d in got] == [n == 20 for n in range(24)]
        assert [_answer(d) for n, d in enumerate(got) if n != 20] == want[:20] + want[21:]
    finally:
        eng.close()


def test_reload_swaps_every_engine_and_close_releases_them(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(samples.POLICIES, policies)
    inputs = [samples.sample("rightsizing")] * 12
    eng = _engine(policies, cache_size=0, workers=2)
    try:
        assert all(d.allow for d in eng.decide_many(inputs))
        (policies / "zz_deny.rego").write_text(
            'package dakr.timing\n\ndeny contains {"rule": "Frozen", "msg": "frozen"}\n')
        assert eng.reload(force=True)
        got = eng.decide_many(inputs)
        assert all([x.rule for x in d.deny] == ["Frozen"] for d in got)
        helpers = list(eng._helpers)
        assert len(helpers) == 1
    finally:
        eng.close()
    assert not eng._helpers and all(h._handle is None for h in helpers)
    assert all(d.policy_unavailable for d in eng.decide_many(inputs))
