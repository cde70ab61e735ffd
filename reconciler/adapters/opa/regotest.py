"""``opa test`` for the embedded engine: discover ``test_*`` rules, run them, report.

There is no OPA binary on the machines this runs on, so this runner does what ``opa test``
does with OPA's own Go engine (``opa_bindings``): every ``.rego`` file under the given
paths is loaded (policies and tests alike), every ``.json``/``.yaml`` file is merged into
``data`` at the root, and each rule named ``test_*`` is evaluated on its own. As in OPA, a
test passes only when it is defined and ``true``; a runtime error is ERROR, not FAIL;
``todo_*`` rules are reported as SKIPPED. A parameterized test (``test_x[name] := ok``)
yields one result per key, passing when its value is ``true``. Coverage is the union of
the lines each test evaluated, reported per policy file (``*_test.rego`` excluded).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from opa_bindings import OpaEngine, OpaError

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from reconciler.domain import errors

PASS, FAIL, ERROR, SKIP = "PASS", "FAIL", "ERROR", "SKIPPED"

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.M)
_TEST_HEAD = re.compile(r"^((?:test|todo)_\w+)(\[)?", re.M)
_DATA_SUFFIXES = {".json", ".yaml", ".yml"}


@dataclass(frozen=True)
class TestRule:
    file: str
    package: str
    name: str
    line: int
    parameterized: bool

    @property
    def ref(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass
class Result:
    rule: TestRule
    status: str
    seconds: float
    message: str = ""
    case: str = ""

    @property
    def name(self) -> str:
        return f"{self.rule.ref}/{self.case}" if self.case else self.rule.ref


@dataclass
class Coverage:
    """Lines covered and not covered per file, merged over every test run."""

    covered: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[str, set[int]] = field(default_factory=dict)

    def add(self, report: dict[str, Any] | None) -> None:
        for path, f in ((report or {}).get("files") or {}).items():
            cov = self.covered.setdefault(path, set())
            seen = self.seen.setdefault(path, set())
            for rng in f.get("covered") or []:
                rows = range(rng["start"]["row"], rng["end"]["row"] + 1)
                cov.update(rows)
                seen.update(rows)
            for rng in f.get("not_covered") or []:
                seen.update(range(rng["start"]["row"], rng["end"]["row"] + 1))

    def files(self, only: Iterable[str]) -> dict[str, tuple[int, int, list[int]]]:
        """{file: (covered lines, total lines, not covered lines)} for the given files."""
        out = {}
        for path in sorted(only):
            seen = self.seen.get(path, set())
            cov = self.covered.get(path, set()) & seen
            out[path] = (len(cov), len(seen), sorted(seen - cov))
        return out

    def percent(self, only: Iterable[str]) -> float:
        stats = self.files(only).values()
        covered = sum(c for c, _, _ in stats)
        total = sum(t for _, t, _ in stats)
        return 100.0 if total == 0 else 100.0 * covered / total


@dataclass
class Run:
    results: list[Result]
    coverage: Coverage
    policy_files: list[str]
    load_error: str = ""

    @property
    def failed(self) -> bool:
        ran = [r for r in self.results if r.status != SKIP]
        return bool(self.load_error) or not ran or any(r.status in (FAIL, ERROR) for r in ran)


def collect(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Rego files and data files under the given paths (files or directories)."""
    rego: list[Path] = []
    data: list[Path] = []
    for raw in paths:
        p = Path(raw)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.suffix == ".rego":
                rego.append(f)
            elif f.suffix in _DATA_SUFFIXES:
                data.append(f)
    return list(dict.fromkeys(rego)), list(dict.fromkeys(data))


def discover(name: str, source: str) -> list[TestRule]:
    """Test rules of one module, by package and rule head (no full parse needed)."""
    m = _PACKAGE.search(source)
    if not m:
        return []
    package = m.group(1)
    seen: dict[str, TestRule] = {}
    for t in _TEST_HEAD.finditer(source):
        rule = t.group(1)
        if rule not in seen:  # several bodies of one rule are one test, as in OPA
            line = source.count("\n", 0, t.start()) + 1
            seen[rule] = TestRule(name, package, rule, line, t.group(2) is not None)
    return list(seen.values())


RUNNER_PACKAGE = "policytest_runner"
# One query for every group of tests: each distinct query string costs OPA a full
# compilation (~0.1 s with the default library), so tests are selected by input instead.
_GROUP_QUERY = f"r := {{k: v | some k in input.keys; v := data.{RUNNER_PACKAGE}[k]}}"


def runner_module(tests: Sequence[TestRule]) -> str:
    """A module with one rule per test, ``t_<i>``, whose value is the test's value."""
    lines = [f"package {RUNNER_PACKAGE}", ""]
    for i, t in enumerate(tests):
        lines.append(f"t_{i} := v if {{ v := {t.ref} }}")
    return "\n".join(lines) + "\n"


def _judge(rule: TestRule, defined: bool, value: Any, took: float) -> list[Result]:
    if not defined:
        return [Result(rule, FAIL, took, "undefined")]
    if not rule.parameterized:
        if value is True:
            return [Result(rule, PASS, took)]
        return [Result(rule, FAIL, took, f"value {json.dumps(value)} is not true")]
    if isinstance(value, list):  # a parameterized set: each member is a passing case
        value = {v if isinstance(v, str) else json.dumps(v): True for v in value}
    if not isinstance(value, dict) or not value:
        return [Result(rule, FAIL, took, "no case of the parameterized test was defined")]
    share = took / len(value)
    return [
        Result(rule, PASS if v is True else FAIL, share,
               "" if v is True else f"value {json.dumps(v)} is not true", case=str(k))
        for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
    ]


def _run_group(
    eng: OpaEngine, tests: Sequence[TestRule], idx: list[int], cov: Coverage | None
) -> list[Result]:
    """Evaluate tests ``idx`` in one call; on a runtime error, split to find the culprit."""
    if not idx:
        return []
    keys = [f"t_{i}" for i in idx]
    start = time.perf_counter()
    try:
        rows = eng.eval_query(_GROUP_QUERY, {"keys": keys}, coverage=cov is not None)
    except OpaError as e:
        if len(idx) == 1:
            return [Result(tests[idx[0]], ERROR, time.perf_counter() - start, str(e))]
        half = len(idx) // 2
        return _run_group(eng, tests, idx[:half], cov) + _run_group(eng, tests, idx[half:], cov)
    took = (time.perf_counter() - start) / len(idx)
    if cov is not None:
        cov.add(eng.last_coverage)
    values = rows[0]["r"] if rows else {}
    out: list[Result] = []
    for i, key in zip(idx, keys, strict=True):
        out.extend(_judge(tests[i], key in values, values.get(key), took))
    return out


def run(
    paths: Sequence[str | Path], *, coverage: bool = False, pattern: str | None = None
) -> Run:
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        return Run([], Coverage(), [], load_error=f"no such path: {', '.join(missing)}")
    rego, data_files = collect(paths)
    modules = [(f.as_posix(), f.read_text(encoding="utf-8")) for f in rego]
    policy = [name for name, _ in modules if not name.endswith("_test.rego")]
    cov = Coverage()
    tests = [t for name, src in modules for t in discover(name, src)]
    if pattern:
        rx = re.compile(pattern)
        tests = [t for t in tests if rx.search(t.ref)]
    runnable = [t for t in tests if not t.name.startswith("todo_")]
    runner = (f"{RUNNER_PACKAGE}.rego", runner_module(runnable))
    try:
        data = opa.merge_data([opa.load_data_file(f) for f in data_files])
        eng = embedded.build_engine([*modules, runner], data)
    except (OpaError, OSError, ValueError, errors.ConfigError) as e:
        return Run([], cov, policy, load_error=str(e))
    try:
        done = _run_group(eng, runnable, list(range(len(runnable))), cov if coverage else None)
    finally:
        eng.close()
    results: list[Result] = []
    for t in tests:  # report in file order, skipped ones in place
        if t.name.startswith("todo_"):
            results.append(Result(t, SKIP, 0.0))
        else:
            results.extend(r for r in done if r.rule is t)
    return Run(results, cov, policy)


def _fmt_seconds(s: float) -> str:
    if s < 0.001:
        return f"{s * 1e6:.1f}µs"
    return f"{s * 1000:.1f}ms" if s < 1 else f"{s:.2f}s"


def report(
    r: Run, out: TextIO, *, verbose: bool = False, coverage: bool = False,
    threshold: float | None = None,
) -> int:
    """Print results like ``opa test`` and return the exit status."""
    if r.load_error:
        print(f"error: could not load the policies: {r.load_error}", file=out)
        return 2
    if verbose:
        current = ""
        for res in r.results:
            if res.rule.file != current:
                current = res.rule.file
                print(f"{current}:", file=out)
            print(f"{res.name}: {res.status} ({_fmt_seconds(res.seconds)})", file=out)
    bad = [x for x in r.results if x.status in (FAIL, ERROR)]
    if bad:
        print("\nFAILURES" if verbose else "FAILURES", file=out)
        print("-" * 80, file=out)
        for res in bad:
            print(f"{res.name}: {res.status} ({res.rule.file}:{res.rule.line})", file=out)
            if res.message:
                print(f"  {res.message}", file=out)
    status = 0
    if coverage:
        print("\nCOVERAGE", file=out)
        print("-" * 80, file=out)
        for path, (c, total, missing) in r.coverage.files(r.policy_files).items():
            pct = 100.0 if total == 0 else 100.0 * c / total
            gaps = f"  not covered: {_ranges(missing)}" if missing else ""
            print(f"{path}: {pct:.1f}% ({c}/{total}){gaps}", file=out)
        total_pct = r.coverage.percent(r.policy_files)
        print(f"TOTAL: {total_pct:.1f}%", file=out)
        if threshold is not None and total_pct < threshold:
            print(f"coverage {total_pct:.1f}% is below the threshold {threshold:g}%", file=out)
            status = 1
    print("-" * 80, file=out)
    n = len(r.results)
    counts = {s: sum(1 for x in r.results if x.status == s) for s in (PASS, FAIL, ERROR, SKIP)}
    for s, c in counts.items():
        if c:
            print(f"{s}: {c}/{n}", file=out)
    if counts[PASS] + counts[FAIL] + counts[ERROR] == 0:
        print("no tests ran", file=out)
    # The closing line CI tools read: "rego: N passed, N failed[, N skipped]" (errors
    # count as failed, as a test that errored did not pass).
    print(f"rego: {counts[PASS]} passed, {counts[FAIL] + counts[ERROR]} failed"
          + (f", {counts[SKIP]} skipped" if counts[SKIP] else ""), file=out)
    return 1 if r.failed else status


def _ranges(rows: list[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for row in [*rows, None]:
        if row is not None and prev is not None and row == prev + 1:
            prev = row
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = row
    return ",".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["policies", "rego-tests"],
                   help="policy and test directories or files (default: policies rego-tests)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every test result")
    p.add_argument("--coverage", action="store_true", help="print per-file coverage")
    p.add_argument("--threshold", type=float, default=None, metavar="N",
                   help="fail when total coverage is below N percent (implies --coverage)")
    p.add_argument("-r", "--run", default=None, metavar="REGEX",
                   help="only run tests whose data.<package>.<rule> matches")


def command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    coverage = bool(args.coverage or args.threshold is not None)
    r = run(args.paths, coverage=coverage, pattern=args.run)
    return report(r, out or sys.stdout, verbose=args.verbose, coverage=coverage,
                  threshold=args.threshold)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="policytest", description=__doc__)
    add_arguments(p)
    return command(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
