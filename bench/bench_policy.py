"""Policy engine benchmark: how fast the default library decides, embedded and sidecar.

Prints, for the same N generated inputs (default 10,000, built from the shared samples in
rego-tests/data/samples.json with varied numbers, namespaces and kinds):

- the full library's decisions/s (embedded engine, one decide() per input, cache off) and
  the engine's floor on the same inputs, in the same run: a constant policy evaluated over
  the full inputs (what the binding's call and the input conversion cost alone, with the
  engine's default cache as it was always measured: its digest frozen as it was,
  ``FloorCache``, and every input sent whole, ``lean_input=False``, however the library's
  own path cuts its input); the two are timed in turns over the same slices of inputs, so
  the ratio between them does not move with the machine's load; the constant policy on an
  empty input too (the difference is the cost of converting the input), and on the part of
  each input the library is sent (``EmbeddedEngine.sent``: what its rules read);
- the evaluation steps OPA traces for the reference rightsizing decision (the first
  generated input: a rightsizing clamped on both resources and denied on confidence), and
  the mean over the first 200 inputs;
- embedded engine, decide_many() in batches of 1,000 (one engine call per part, the parts
  split over the set's engines, one per CPU up to two, evaluated at once);
- the decision cache: the first ask (digest + evaluation) and the same inputs again (a hit:
  the digest and a lookup), against evaluating;
- sidecar path: SidecarEngine over loopback HTTP (keep-alive) to the Data API test server
  (tests/opaserver, which runs the same embedded engine in this process);
- naive baselines: a fresh engine per decision, and the sidecar without keep-alive;
- the cost of one policy reload, and the process's peak memory.

- the cost of the library's generality: on the rightsizing inputs where the straight-line
  policy of bench/ideal-policy (the library's decision for that common case in one body,
  undefined elsewhere) answers, and answers as the library does, both timed in turns with
  the floor: decisions/s against the floor, traced steps, and a batch of 1,000;
- the batch time against the floor's time for as many single decisions in the same run
  (the machine's speed, which an absolute time does not show);

With --before DIR (e.g. tests/data/policy-before, the library before issue 16's rewrite)
that library is timed in the same turns and its figures printed beside the library's.

Goals (issue 16): the reference rightsizing decision in at most 800 traced steps; the full
library at least 40 % of the floor's decisions/s; a batch of 1,000 in < 0.5 s; a cache hit
under 20 us.

    .venv/bin/python bench/bench_policy.py [--n 10000] [--sidecar-n N] [--quick]
                                           [--before tests/data/policy-before]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import marshal
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from reconciler.adapters.opa import embedded, sidecar  # noqa: E402
from reconciler.adapters.opa import engine as opa  # noqa: E402
from tests import samples  # noqa: E402
from tests.fakes.opaserver import OpaServer  # noqa: E402

MI = 1048576
# The straight-line yardstick (ideal-policy/ideal.rego): the library's answers on the common
# case without the library's structure.
IDEAL = Path(__file__).resolve().parent / "ideal-policy"


def make_inputs(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """N varied inputs: mostly rightsizing (the common case), some replicas, HPA, nodes."""
    rnd = random.Random(seed)
    base = samples.load()
    out: list[dict[str, Any]] = []
    namespaces = ["default", "shop", "payments", "kube-system", "team-a", "team-b"]
    for i in range(n):
        r = rnd.random()
        if r < 0.7:
            inp = copy.deepcopy(base["rightsizing"])
            srv = inp["normalized"]["containers"]["server"]["proposed"]
            srv["requests"]["cpu"] = round(rnd.uniform(0.01, 0.6), 3)
            srv["requests"]["memory"] = rnd.randint(16, 400) * MI
            inp["recommendation"]["spec"]["confidence"] = round(rnd.uniform(0.5, 1.0), 2)
        elif r < 0.85:
            inp = copy.deepcopy(base["replica_scaling"])
            n_rep = rnd.randint(0, 15)
            inp["normalized"]["replicas"]["proposed"] = n_rep
            inp["recommendation"]["spec"]["replicas"] = n_rep
        elif r < 0.93:
            inp = copy.deepcopy(base["hpa_scaling"])
            lo = rnd.randint(1, 6)
            inp["recommendation"]["spec"]["hpa"] = {"minReplicas": lo, "maxReplicas": lo + 4}
        else:
            inp = copy.deepcopy(base["nodegroup"])
            inp["cluster"]["nodes"][0]["pods"][0]["pdbDisruptionsAllowed"] = rnd.randint(0, 2)
        if inp["recommendation"]["kind"] == "WorkloadRecommendation":
            inp["recommendation"]["metadata"]["namespace"] = rnd.choice(namespaces)
            inp["recommendation"]["spec"]["recommendationId"] = f"rec-{i:05d}"
        out.append(inp)
    return out


class FloorCache(opa.DecisionCache):
    """The decision cache as the floor was first measured with (issue 16): every input
    digested with marshal and BLAKE2b. Frozen here so that a cheaper digest on the
    library's path does not move the yardstick."""

    @staticmethod
    def digest(input: Any) -> bytes | None:
        try:
            raw = marshal.dumps(input, 2)
        except (ValueError, TypeError, RecursionError):
            return None
        return hashlib.blake2b(raw, digest_size=16).digest()


def pct(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def time_each(
    fn: Callable[[dict[str, Any]], Any], inputs: Sequence[dict[str, Any]]
) -> dict[str, float]:
    lat: list[float] = []
    start = time.perf_counter()
    for inp in inputs:
        t = time.perf_counter()
        fn(inp)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    lat.sort()
    return {"n": len(inputs), "total_s": total, "per_s": len(inputs) / total,
            "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000}


def line(name: str, r: dict[str, float]) -> str:
    return (f"{name:<44} {r['n']:>6.0f} decisions  {r['per_s']:>8.0f}/s  "
            f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms")


def time_in_turns(
    fns: dict[str, Callable[[dict[str, Any]], Any]], inputs: Sequence[dict[str, Any]],
    slice_size: int = 250,
) -> dict[str, dict[str, float]]:
    """time_each for several callables on the same inputs, a slice at a time in turns, so
    that a change in the machine's load weighs on all of them alike."""
    lat: dict[str, list[float]] = {k: [] for k in fns}
    total = dict.fromkeys(fns, 0.0)
    for i in range(0, len(inputs), slice_size):
        chunk = inputs[i:i + slice_size]
        for k, fn in fns.items():
            start = time.perf_counter()
            for inp in chunk:
                t = time.perf_counter()
                fn(inp)
                lat[k].append(time.perf_counter() - t)
            total[k] += time.perf_counter() - start
    out = {}
    for k in fns:
        lat[k].sort()
        out[k] = {"n": len(inputs), "total_s": total[k], "per_s": len(inputs) / total[k],
                  "p50_ms": pct(lat[k], 50) * 1000, "p99_ms": pct(lat[k], 99) * 1000}
    return out


def _count_values(doc: Any) -> int:
    """JSON values in a document, containers included: what the engine converts."""
    if isinstance(doc, dict):
        return 1 + sum(_count_values(v) for v in doc.values())
    if isinstance(doc, list):
        return 1 + sum(_count_values(v) for v in doc)
    return 1


def _trace_events(eng: embedded.EmbeddedEngine, inp: dict[str, Any]) -> int:
    """How many steps OPA's trace records for one decision: the policy's own work."""
    return len(eng.trace(inp))


def floor_engine(directory: Path) -> embedded.EmbeddedEngine:
    """The floor of this engine on these inputs, kept as issue 16 first measured it: a
    policy (written to ``directory``) that only returns a constant decision still pays the
    binding's call and the input's conversion. An engine with its default decision cache
    (every input is new to it: it pays the digest, never a hit), sent every input whole
    (lean_input=False: the constant policy reads nothing, and the floor measures the
    engine on today's full inputs, whatever the library's own path leaves out of them),
    one engine (workers=1: a batch split over engines is the library's path, and the
    floor only ever decides one input at a time)."""
    (directory / "constant.rego").write_text(
        'package dakr\n\ndecision := {"allow": true, "mode": "gitops", "deny": [], '
        '"warnings": []}\n')
    eng = embedded.EmbeddedEngine(directory, reload_interval=-1, lean_input=False, workers=1)
    eng.cache = FloorCache(eng.cache.size)
    return eng


def ideal_figures(eng: embedded.EmbeddedEngine, inputs: Sequence[dict[str, Any]],
                  batch: int, constant: Path) -> None:
    """What the library's structure costs: the straight-line policy (IDEAL) timed beside
    the library and the floor on the inputs it answers as the library does."""
    ideal = embedded.EmbeddedEngine(IDEAL, samples.DATA_FILES, reload_interval=-1,
                                    cache_size=0)
    assert ideal.last_error is None, ideal.last_error
    floor_eng = floor_engine(constant)
    common: list[dict[str, Any]] = []
    differ = 0
    for inp in inputs:
        try:
            doc = ideal.evaluate(ideal.path, ideal.sent(inp))
        except opa.Undefined:
            continue
        if doc == eng.evaluate(eng.path, eng.sent(inp)):
            common.append(inp)
        else:
            differ += 1
    assert differ == 0, f"the straight-line policy answers otherwise on {differ} inputs"
    if not common:
        print("  straight-line policy: no input of its common case")
        return
    rates = time_in_turns({"library": eng.decide, "ideal": ideal.decide,
                           "floor": floor_eng.decide}, common[:2000])
    lib_r, ideal_r, floor_r = (rates[k]["per_s"] for k in ("library", "ideal", "floor"))
    print(f"straight-line policy (bench/ideal-policy), {len(common)} rightsizing inputs it "
          f"answers as the library does:")
    print(f"  {ideal_r:.0f} decisions/s = {ideal_r / floor_r:.0%} of the floor; the library on "
          f"the same inputs {lib_r:.0f}/s = {lib_r / floor_r:.0%}")
    print(f"  traced steps, reference decision: {_trace_events(ideal, common[0])}, the "
          f"library {_trace_events(eng, common[0])}")
    chunk = common[:batch]
    times = {}
    for name, e in (("library", eng), ("ideal", ideal)):
        e.decide_many(chunk[:50])
        t = time.perf_counter()
        e.decide_many(chunk)
        times[name] = time.perf_counter() - t
    print(f"  a batch of {len(chunk)} of them: the straight-line policy {times['ideal']:.3f} s, "
          f"the library {times['library']:.3f} s")
    ideal.close()
    floor_eng.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--sidecar-n", type=int, default=None, help="default: --n")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="n=1000, short baselines")
    ap.add_argument("--before", default=None, metavar="DIR",
                    help="also time this policy library (with its data.yaml) in the same run")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else args.n
    sidecar_n = args.sidecar_n or n
    inputs = make_inputs(n)
    print(f"policy benchmark: {n} inputs, policies {samples.POLICIES}")

    # The cache off for the library, the floor and the library before: these figures are
    # the engine's work on every input (the cache's own figures come below, from an engine
    # of their own).
    def engine(policies: Path, data: Sequence[Path]) -> embedded.EmbeddedEngine:
        e = embedded.EmbeddedEngine(policies, data, reload_interval=-1, cache_size=0)
        assert e.last_error is None, e.last_error
        return e

    eng = engine(samples.POLICIES, samples.DATA_FILES)
    tmp = tempfile.TemporaryDirectory()
    floor_eng = floor_engine(Path(tmp.name))
    # The same without the cache: the conversion's cost.
    bare_eng = embedded.EmbeddedEngine(Path(tmp.name), [], reload_interval=-1, cache_size=0,
                                       lean_input=False, workers=1)
    timed: dict[str, Callable[[dict[str, Any]], Any]] = {"library": eng.decide,
                                                        "floor": floor_eng.decide}
    before_eng = None
    if args.before:
        before_dir = Path(args.before)
        before_eng = engine(before_dir, [before_dir / "data.yaml", samples.OPT_IN])
        timed["before"] = before_eng.decide
    for e in timed.values():
        for inp in inputs[:50]:
            e(inp)  # warm caches

    rates = time_in_turns(timed, inputs)
    single, floor = rates["library"], rates["floor"]
    print(line("embedded decide(), full library", single))
    print(line("floor: constant policy, same inputs", floor))
    if "before" in rates:
        print(line("embedded decide(), library before", rates["before"]))
    leans = [eng.sent(i) for i in inputs[: min(n, 2000)]]  # what the library reads of them
    lean_by_id = {id(i): lean for i, lean in zip(inputs, leans, strict=False)}
    bare = time_in_turns({"inputs": bare_eng.decide, "empty": lambda _: bare_eng.decide({}),
                          "lean": lambda i: bare_eng.decide(lean_by_id[id(i)])},
                         inputs[: min(n, 2000)])
    print(line("constant policy, no cache, empty input", bare["empty"]))
    values = statistics.mean(_count_values(i) for i in inputs[:200])
    conversion = bare["inputs"]["p50_ms"] - bare["empty"]["p50_ms"]
    print(f"  input: {values:.0f} JSON values on average; converting them costs the engine "
          f"{conversion:.3f} ms at p50 (~{conversion * 1000 / values:.1f} us per value)")
    lean_values = statistics.mean(_count_values(i) for i in leans[:200])
    lean_conversion = bare["lean"]["p50_ms"] - bare["empty"]["p50_ms"]
    print(f"  the library is sent what its rules read: {lean_values:.0f} JSON values on "
          f"average, converted in {lean_conversion:.3f} ms at p50")
    ratio = single["per_s"] / floor["per_s"]
    print(f"  full library / floor: {single['per_s']:.0f} / {floor['per_s']:.0f} decisions/s "
          f"= {ratio:.0%} of the floor (goal >= 40 %)")
    if "before" in rates:
        print(f"  library before / floor: {rates['before']['per_s']:.0f} / "
              f"{floor['per_s']:.0f} decisions/s = {rates['before']['per_s'] / floor['per_s']:.0%}"
              f"; the library is x{single['per_s'] / rates['before']['per_s']:.2f} as fast")
    steps = _trace_events(eng, inputs[0])
    mean_steps = statistics.mean(_trace_events(eng, i) for i in inputs[:200])
    print(f"  traced steps, reference rightsizing decision: {steps} (goal <= 800); "
          f"mean over the first 200 inputs: {mean_steps:.0f}")
    if before_eng is not None:
        print(f"  traced steps, library before: {_trace_events(before_eng, inputs[0])}; mean "
              f"{statistics.mean(_trace_events(before_eng, i) for i in inputs[:200]):.0f}")
    floor_eng.close()
    bare_eng.close()

    batch_times: list[float] = []
    decided = 0
    for i in range(0, n, args.batch):
        chunk = inputs[i:i + args.batch]
        t = time.perf_counter()
        decided += len(eng.decide_many(chunk))
        batch_times.append(time.perf_counter() - t)
    total = sum(batch_times)
    label = f"embedded decide_many() batches of {args.batch} ({eng.workers} engines)"
    print(f"{label:<44} {decided:>6} decisions  "
          f"{decided / total:>8.0f}/s  batch mean {statistics.mean(batch_times):.3f} s  "
          f"max {max(batch_times):.3f} s")
    floor_time = min(n, args.batch) / floor["per_s"]
    print(f"  the largest batch took x{max(batch_times) / floor_time:.2f} the floor's time for as "
          f"many single decisions in this run ({floor_time:.3f} s at {floor['per_s']:.0f}/s)")
    if before_eng is not None:
        t = time.perf_counter()
        before_eng.decide_many(inputs[:args.batch])
        print(f"  the library before: a batch of {min(n, args.batch)} in "
              f"{time.perf_counter() - t:.3f} s")
        before_eng.close()

    # Agreement check: batch and single answers must be the same decisions.
    sample = inputs[: min(200, n)]
    a = [(d.allow, d.mode, d.deny, d.bounds) for d in eng.decide_many(sample)]
    b = [(d.allow, d.mode, d.deny, d.bounds) for d in map(eng.decide, sample)]
    assert a == b, "batch and single decisions differ"
    allowed = sum(1 for d in eng.decide_many(inputs[:1000]) if d.allow)
    print(f"  (of the first 1000 inputs {allowed} allowed; batch == single on {len(sample)})")

    ideal_figures(eng, inputs, args.batch, Path(tmp.name))

    cached = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES,
                                     reload_interval=-1, cache_size=len(inputs))
    asked = inputs[: min(n, 2000)]
    miss = time_each(cached.decide, asked)
    hits_before = cached.cache.hits  # inputs that repeat were hits already
    hit = time_each(cached.decide, [copy.deepcopy(i) for i in asked])
    assert cached.cache.hits - hits_before == len(asked), "the second pass should be all hits"
    cached.close()
    print(line("decision cache: first ask (digest + evaluation)", miss))
    print(line("decision cache: the same input again (hit)", hit))
    digest = time_each(opa.DecisionCache.digest, asked)
    print(f"  a hit costs {hit['p50_ms'] * 1000:.1f} us at p50, {hit['p99_ms'] * 1000:.1f} us "
          f"at p99 (goal < 20 us): x{single['p50_ms'] / hit['p50_ms']:.0f} cheaper than "
          f"evaluating; the digest, which a miss pays too, {digest['p50_ms'] * 1000:.1f} us")

    reloads: list[float] = []
    for _ in range(5):
        t = time.perf_counter()
        assert eng.reload(force=True)
        reloads.append(time.perf_counter() - t)
    mean_ms = statistics.mean(reloads) * 1000
    print(f"{'reload (parse + compile + warm-up)':<44} mean {mean_ms:.0f} ms"
          f"  min {min(reloads) * 1000:.0f} ms")

    library = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=-1)
    with OpaServer(engine=library) as srv:
        side = sidecar.SidecarEngine(srv.url, timeout=10)
        r = time_each(side.decide, inputs[:sidecar_n])
        print(line("sidecar keep-alive (loopback, test server)", r))
        side.close()
        naive_n = min(sidecar_n, 200 if args.quick else 1000)

        def no_keepalive(inp: dict[str, Any]) -> Any:
            with requests.Session() as s:
                return sidecar.SidecarEngine(srv.url, timeout=10, session=s).decide(inp)

        r2 = time_each(no_keepalive, inputs[:naive_n])
        print(line("naive: sidecar, new connection per call", r2))
        print(f"  keep-alive speed-up: x{r['per_s'] / r2['per_s']:.2f}")

    fresh_n = 10 if args.quick else 30

    def fresh(inp: dict[str, Any]) -> Any:
        e = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=-1)
        try:
            return e.decide(inp)
        finally:
            e.close()

    r3 = time_each(fresh, inputs[:fresh_n])
    print(line("naive: fresh embedded engine per decision", r3))
    print(f"  long-lived engine speed-up: x{single['per_s'] / r3['per_s']:.0f}")
    eng.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak memory (ru_maxrss): {peak_kib / 1024:.0f} MiB")

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"goals (issue 16): reference decision <= 800 steps: {met(steps <= 800)} ({steps}); "
          f"library >= 40 % of the floor: {met(ratio >= 0.4)} ({ratio:.0%}); "
          f"batch of {args.batch} < 0.5 s: {met(max(batch_times) < 0.5)} "
          f"({max(batch_times):.3f} s); cache hit < 20 us: {met(hit['p50_ms'] < 0.02)} "
          f"({hit['p50_ms'] * 1000:.1f} us)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
