"""``reconciler policy test`` and ``reconciler policy eval``, driven through argparse.

Cases covered:
- test: the default library and its Rego tests pass, with -v listing every test and
  --coverage --threshold 90 passing; a threshold above the coverage fails;
- test on small libraries in temp dirs: a failing test (FAIL, exit 1), a runtime error
  (ERROR, exit 1, the other tests still reported PASS), an undefined test (FAIL), a
  todo_ test (SKIPPED), no test at all (exit 1), a parse error or a missing path (exit 2),
  a parameterized test (one result per case), coverage below 100 % when a rule never
  runs, --run filter;
- eval: a bare recommendation (minimal input built, --now used), a full policy input
  from the shared samples (same decision as the engine), --output json, several
  documents, --explain naming the deny rule that fired, --opa-url against the Data API
  server (same decision, OPA's decision_id), --explain with --opa-url refused, an invalid
  recommendation (exit 2), --now overriding a full input's time, --id from a SQLite
  store (and exit 2 without --store or for an unknown id).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.opa import embedded
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import policy as cli_policy
from tests import samples
from tests.fakes.opaserver import OpaServer

ROOT = samples.ROOT


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="reconciler")
    cli_policy.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code, capsys.readouterr().out


def library(tmp_path: Path, policy: str, tests: str) -> list[str]:
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    (tmp_path / "p" / "lib.rego").write_text(policy)
    (tmp_path / "t" / "lib_test.rego").write_text(tests)
    return [str(tmp_path / "p"), str(tmp_path / "t")]


POLICY = "package calc\n\ndouble(x) := x * 2\n\nhalf(x) := x / 2\n"


# -- policy test ----------------------------------------------------------------


def test_default_library_passes_with_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["policy", "test", str(ROOT / "policies"), str(ROOT / "rego-tests"),
                     "-v", "--coverage", "--threshold", "90"], capsys)
    assert code == 0, out
    assert "data.dakr.scope_test.test_kube_system_out: PASS" in out
    passed = next(line for line in out.splitlines() if line.startswith("PASS: "))
    n, total = passed.removeprefix("PASS: ").split("/")
    assert n == total and int(n) > 150
    assert out.rstrip().splitlines()[-1] == f"rego: {n} passed, 0 failed"
    assert "policies/guardrails/resources.rego:" in out
    assert "TOTAL:" in out


def test_threshold_above_coverage_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = "package calc_test\ntest_double if data.calc.double(2) == 4\n"
    paths = library(tmp_path, POLICY, tests)
    code, out = run(["policy", "test", *paths, "--threshold", "90"], capsys)
    assert code == 1
    assert "p/lib.rego: 50.0% (1/2)  not covered: 5" in out  # half() never ran
    assert "below the threshold 90%" in out


def test_failures_errors_and_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = "\n".join([
        "package calc_test",
        "test_double if data.calc.double(2) == 4",
        "test_wrong if data.calc.double(2) == 5",
        'test_error if to_number("x") > 1',
        "test_undefined if data.calc.nothing",
        "todo_later if false",
        "test_half if data.calc.half(4) == 2",
    ]) + "\n"
    code, out = run(["policy", "test", *library(tmp_path, POLICY, tests), "-v"], capsys)
    assert code == 1
    assert "data.calc_test.test_double: PASS" in out
    assert "data.calc_test.test_half: PASS" in out
    assert "data.calc_test.test_wrong: FAIL" in out
    assert "data.calc_test.test_undefined: FAIL" in out
    assert "data.calc_test.test_error: ERROR" in out
    assert "data.calc_test.todo_later: SKIPPED" in out
    assert "to_number" in out
    assert "PASS: 2/6" in out and "FAIL: 2/6" in out and "ERROR: 1/6" in out


def test_no_tests_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["policy", "test", *library(tmp_path, POLICY, "package calc_test\n")], capsys)
    assert code == 1
    assert "no tests ran" in out


def test_parse_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = library(tmp_path, POLICY, "package calc_test\ntest_x if {\n")
    code, out = run(["policy", "test", *paths], capsys)
    assert code == 2
    assert "lib_test.rego" in out


def test_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["policy", "test", str(tmp_path / "nowhere")], capsys)
    assert code == 2
    assert "nowhere" in out


def test_parameterized_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = "\n".join([
        "package calc_test",
        'cases := {"one": [1, 2], "two": [2, 4], "bad": [3, 7]}',
        "test_double[name] := ok if {",
        "\tsome name, c in cases",
        "\tok := data.calc.double(c[0]) == c[1]",
        "}",
    ]) + "\n"
    code, out = run(["policy", "test", *library(tmp_path, POLICY, tests), "-v"], capsys)
    assert code == 1
    assert "data.calc_test.test_double/one: PASS" in out
    assert "data.calc_test.test_double/two: PASS" in out
    assert "data.calc_test.test_double/bad: FAIL" in out


def test_run_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = "package calc_test\ntest_double if data.calc.double(2) == 4\ntest_x if false\n"
    code, out = run(["policy", "test", *library(tmp_path, POLICY, tests), "-r", "double"], capsys)
    assert code == 0
    assert "PASS: 1/1" in out


# -- policy eval ----------------------------------------------------------------

REC: dict[str, Any] = {
    "apiVersion": "dakr.devzero.io/v1alpha1",
    "kind": "WorkloadRecommendation",
    "metadata": {"namespace": "default"},
    "spec": {
        "recommendationId": "rec-0001",
        "action": "Rightsizing",
        "targetRef": {"kind": "Deployment", "name": "cartservice"},
        "containers": [{"name": "server", "resources": {"requests": {"cpu": "100m"}}}],
        "confidence": 0.5,
        "autoApply": True,
    },
}


def write(tmp_path: Path, name: str, *docs: Any) -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump_all(list(docs)))
    return str(p)


def test_eval_bare_recommendation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "rec.yaml", REC)
    code, out = run(["policy", "eval", "--input", f, "--now", "2026-11-24T10:00:00Z"], capsys)
    assert code == 0
    assert out.startswith("rec-0001: DENY (mode gitops)")
    assert "deny     MinimumConfidence: confidence 0.5 is below the minimum 0.7" in out


def test_eval_full_input_json_matches_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = "/normalized/containers/server/proposed/requests/cpu"
    inp = samples.sample("rightsizing", {cpu: 0.05})
    f = tmp_path / "input.json"
    f.write_text(json.dumps(inp))
    code, out = run(["policy", "eval", "--input", str(f), "-o", "json"], capsys)
    assert code == 0
    got = json.loads(out)
    want = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES).decide(inp).to_dict()
    got.pop("decision_id")
    want.pop("decision_id")
    assert got == want
    assert got["bounds"] == {"containers": {"server": {"requests": {"cpu": 0.1}}}}


def test_eval_several_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = samples.sample("rightsizing")
    f = write(tmp_path, "many.yaml", ok, samples.sample("rightsizing", {"/now": "nope"}))
    code, out = run(["policy", "eval", "--input", f, "-o", "json"], capsys)
    assert code == 0
    assert [d["allow"] for d in json.loads(out)] == [True, False]


def test_eval_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "rec.yaml", REC)
    code, out = run(["policy", "eval", "--input", f, "--explain"], capsys)
    assert code == 0
    fired = out.split("rules that fired:")[1]
    assert "timing/confidence.rego:" in fired
    assert 'deny contains {"rule": "MinimumConfidence"' in fired
    assert "Cooldown" not in fired  # a rule that did not fire is not listed
    code, out = run(["policy", "eval", "--input", f, "--explain", "-o", "json"], capsys)
    rules = {r["rule"] for r in json.loads(out)["explain"] if r["output"]}
    assert {"deny", "mode", "decision"} <= rules


def test_eval_through_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = samples.sample("nodegroup", {"/cluster/nodes/0/pods/0/pdbDisruptionsAllowed": 0})
    f = tmp_path / "input.json"
    f.write_text(json.dumps(inp))
    with OpaServer(samples.POLICIES, samples.DATA_FILES) as srv:
        code, out = run(["policy", "eval", "--input", str(f), "--opa-url", srv.url], capsys)
        assert code == 0
        assert "deny     PDBBlocksDrain:" in out
        assert f"decision_id {srv.seen.decision_ids[-1]}" in out
        code, _ = run(["policy", "eval", "--input", str(f), "--opa-url", srv.url, "--explain"],
                      capsys)
        assert code == 2


def test_eval_invalid_recommendation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {**REC, "spec": {**REC["spec"], "action": "Explode"}}
    code, _ = run(["policy", "eval", "--input", write(tmp_path, "bad.yaml", bad)], capsys)
    assert code == 2


def test_eval_now_overrides_full_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = samples.sample("rightsizing", {
        "/history/lastApplied": {"recommendationId": "r0", "at": "2026-11-24T09:30:00Z"}})
    f = tmp_path / "input.json"
    f.write_text(json.dumps(inp))
    _, out = run(["policy", "eval", "--input", str(f)], capsys)
    assert "Cooldown" in out
    _, out = run(["policy", "eval", "--input", str(f), "--now", "2026-11-24T12:00:00Z"], capsys)
    assert "ALLOW" in out


def test_eval_by_id_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "rec.db"
    st = sqlite_store.SqliteStore(db)
    st.upsert("WorkloadRecommendation", "rec-0001", "kube-system", "rec-0001", REC["spec"])
    st.close()
    code, out = run(["policy", "eval", "--id", "rec-0001", "--store", f"sqlite:{db}"], capsys)
    assert code == 0
    assert "deny     OutOfScope: namespace kube-system is a system namespace" in out
    code, _ = run(["policy", "eval", "--id", "rec-9999", "--store", f"sqlite:{db}"], capsys)
    assert code == 2
    code, _ = run(["policy", "eval", "--id", "rec-0001"], capsys)
    assert code == 2
