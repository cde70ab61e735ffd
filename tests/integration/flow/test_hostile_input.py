"""Hostile input through every entry point: answered in seconds, in bounded memory, with
nothing else lost.

Cases:
- `apply -f` of an alias bomb (414 bytes that expand past a billion values), of JSON and
  YAML nested 100,000 levels deep, and of a recursive alias: exit 2 with one line naming
  the file and the limit, no traceback, within a 30-second guard (the alias bomb alone
  took minutes and 3 GB before), in a process whose address space is capped at 1.5 GB;
- `--input-limit` and DAKR_INPUT_LIMITS raise or lower a limit; a bad value exits 2
  naming it;
- `import vpa`, `import krr` and `platform serve --from` of a bomb, and `--layout` of
  one, exit 2 the same way;
- a failure of ours (RecursionError, MemoryError, any bug; injected) is exit 1 and one
  line naming it and `--debug`; with `--debug` the traceback comes first; a system error
  (a state directory that cannot be created) is one line too;
- `run --once` with a hostile file source next to a good one: the hostile one is
  refused and reported, the good one is decided and proposed;
- a repository holding an alias bomb and a 100,000-deep manifest that mention a target's
  name: both files are skipped with a warning naming them, and the batch's
  recommendations are still proposed from the good manifests;
- the stream: a recommendation whose document_json is nested 100,000 deep, and one with a
  string above the limit, are nacked naming document_json and the limit; the messages
  around them are stored and acked;
- a log line naming a refused source whose path holds a newline and ESC: one line, both
  escaped (the CLI's log formatter);
- an answer of the API server nested 100,000 deep: a refusal of that request;
- a policy data file with an alias bomb: the embedded engine refuses the set (fail closed)
  with the limit in its error, and keeps running.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.adapters.opa import embedded
from reconciler.cli import main as cli
from reconciler.devtools import demo, platform
from reconciler.stream.gen import stream_pb2
from tests import samples
from tests.integration import stream_support as ss

ROOT = Path(__file__).resolve().parents[3]
RECS = ROOT / "examples" / "recommendations.yaml"
NOW = "2026-11-24T10:00:00Z"


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


DEEP_JSON = "[" * 100_000 + "]" * 100_000
HOSTILE = {"bomb.yaml": bomb(), "deep.json": DEEP_JSON,
           "deep.yaml": "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
           "cycle.yaml": "a: &a [*a]\n"}


def _cap_memory() -> None:
    cap = 1536 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def reconciler(*argv: str, cwd: Path, cap: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler`` with a 30-second guard, its address space capped unless
    ``cap`` is False (the operator's threads reserve more than the cap)."""
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=30,
                          preexec_fn=_cap_memory if cap else None, check=False)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_apply_refuses_a_hostile_file_in_seconds(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text(HOSTILE[name])
    done = reconciler("apply", "-f", str(f), "--dry-run", "--state-dir", str(tmp_path / "s"),
                      cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"reconciler: error: {f}: ")
    assert "input limit" in lines[0] and "Traceback" not in done.stderr


def test_limits_are_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["apply", "-f", str(RECS), "--dry-run", "--state-dir", str(tmp_path), "--now", NOW]
    assert cli.main([*argv, "--input-limit", "documents=5"]) == 2
    assert "above the input limit documents=5" in capsys.readouterr().err
    monkeypatch.setenv("DAKR_INPUT_LIMITS", "documents=5")
    assert cli.main(argv) == 2
    capsys.readouterr()
    assert cli.main([*argv, "--input-limit", "documents=100", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]
    monkeypatch.setenv("DAKR_INPUT_LIMITS", "depth=deep")
    assert cli.main(argv) == 2
    assert "DAKR_INPUT_LIMITS" in capsys.readouterr().err


def test_import_and_platform_serve_refuse_a_bomb(tmp_path: Path) -> None:
    f = tmp_path / "vpa.yaml"
    f.write_text(bomb())
    for source in ("vpa", "krr"):
        done = reconciler("import", source, str(f), "--store", f"sqlite:{tmp_path / 'db'}",
                          cwd=tmp_path)
        assert done.returncode == 2 and "input limit nodes" in done.stderr, done.stderr
    done = reconciler("platform", "serve", "--from", str(f), "--port", "0", cwd=tmp_path)
    assert done.returncode == 2 and "input limit nodes" in done.stderr, done.stderr


def test_a_hostile_layout_file_is_refused(origin: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    layout = tmp_path / "layout.yaml"
    layout.write_text(bomb())
    rc = cli.main(["apply", "-f", str(RECS), "--repo", str(origin), "--layout", str(layout),
                   "--state-dir", str(tmp_path / "s"), "--dry-run", "--now", NOW])
    err = capsys.readouterr().err
    assert rc == 2 and "input limit nodes" in err and str(layout) in err, err


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"),
                                   MemoryError(), KeyError("bug")])
def test_a_failure_of_ours_is_one_line_and_debug_shows_the_traceback(
        error: Exception, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: whatever escapes a command is exit 1 and one line naming it."""
    from reconciler.adapters import files

    def broken(*_: object, **__: object) -> list[object]:
        raise error

    monkeypatch.setattr(files, "load_documents", broken)
    argv = ["apply", "-f", str(RECS), "--dry-run", "--state-dir", str(tmp_path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"reconciler: internal error: {type(error).__name__}")
    assert "--debug" in err
    assert cli.main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1].startswith("reconciler: internal error:")


def test_a_system_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state directory that cannot be created: the system's reason, exit 1 or 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = cli.main(["apply", "-f", str(RECS), "--state-dir", str(blocker / "state"),
                   "--repo", str(tmp_path / "nowhere.git"), "--now", NOW])
    err = capsys.readouterr().err
    assert rc in (1, 2) and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("reconciler: ")


def test_run_refuses_a_hostile_source_and_goes_on(
        origin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bad = tmp_path / "bad.yaml"
    bad.write_text(bomb())
    rc = cli.main(["run", "--once", "--repo", str(origin), "--state-dir", str(tmp_path / "s"),
                   "--now", NOW, "--output", "json", "--idle", "0.5",
                   "--source", f"file:{bad}", "--source", f"file:{RECS}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    refused = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert refused and "input limit nodes" in refused[0]
    phases = {r["id"]: r["phase"] for r in json.loads(out.out)["results"]}
    assert phases["rec-0001"] == "Applying"


def test_hostile_manifests_are_skipped_and_the_batch_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(ROOT / "examples" / "microservices-demo", manifests)
    # Both mention the target's name, so the index must parse them.
    (manifests / "zz-bomb.yaml").write_text("metadata: {name: cartservice}\n" + bomb())
    (manifests / "zz-deep.yaml").write_text(
        "kind: Deployment\nmetadata: {name: cartservice}\nspec: "
        + "[" * 100_000 + "]" * 100_000 + "\n")
    origin = demo.seed_origin(tmp_path / "repo", manifests)
    caplog.set_level(logging.WARNING)
    rc = cli.main(["apply", "-f", str(RECS), "--repo", str(origin), "--state-dir",
                   str(tmp_path / "s"), "--now", NOW, "--output", "json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    phases = {r["id"]: r["phase"] for r in json.loads(out.out)["results"]}
    assert phases["rec-0001"] == "Applying"  # cartservice, from its real manifest
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "zz-bomb.yaml" in warned and "input limit nodes" in warned
    assert "zz-deep.yaml" in warned and "input limit depth" in warned


def test_hostile_stream_messages_are_nacked_and_the_stream_goes_on(tmp_path: Path) -> None:
    feed = platform.build_feed([ss.doc(0)])
    deep = stream_pb2.PlatformMessage(recommendation=stream_pb2.Recommendation(
        sequence=2, id="deep", document_json=DEEP_JSON))
    long_doc = ss.doc(9)
    long_doc["spec"]["source"] = "x" * (2**20 + 1)
    long = stream_pb2.PlatformMessage(recommendation=stream_pb2.Recommendation(
        sequence=3, id="long", document_json=json.dumps(long_doc)))
    tail = platform.build_feed([ss.doc(0), ss.doc(1)])[1]
    tail.recommendation.sequence = 4
    srv = platform.PlatformServer([*feed, deep, long, tail], heartbeat_interval=0.2).start()
    h = ss.harness(tmp_path, ss.fast_config(srv.address))
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    acks = {a["id"]: a for a in srv.state.acks}
    for rid, limit in (("deep", "depth"), ("long", "string")):
        assert acks[rid]["kind"] == "nack"
        assert acks[rid]["fields"] == ["document_json"]
        assert f"input limit {limit}" in acks[rid]["reason"]
    assert h.stored_ids() == {"rec-00000", "rec-00001"}


def test_a_hostile_policy_data_file_fails_closed(tmp_path: Path) -> None:
    pol = tmp_path / "policies"
    shutil.copytree(samples.POLICIES, pol)
    (pol / "data.yaml").write_text(bomb())
    eng = embedded.EmbeddedEngine(pol, reload_interval=-1)
    try:
        assert eng.last_error is not None and "input limit nodes" in eng.last_error
        dec = eng.decide(samples.sample("rightsizing"))
        assert not dec.allow and dec.policy_unavailable
    finally:
        eng.close()


def test_an_api_answer_nested_too_deeply_is_a_refusal() -> None:
    """An object read from the API (the server bounds its size, not its nesting: a
    free-form field such as status.previous can hold anything) is a PermanentError for
    that request, not a RecursionError loose in a worker."""
    from reconciler.adapters import kube
    from reconciler.domain import errors

    deep = b'{"status": {"previous": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(errors.PermanentError, match="nested too deeply"):
        kube._decode(deep, "get WorkloadRecommendation default/x")
    assert kube._decode(b'{"a": [1]}', "get") == {"a": [1]}
    assert kube._decode(b"", "delete") == {}


def test_log_lines_stay_one_line_each(origin: Path, tmp_path: Path) -> None:
    """`reconciler -v run --once` with a refused source whose path holds a newline and an
    escape sequence: the warning naming it is one line with both escaped."""
    bad = tmp_path / "bad\n\x1b[31mred.yaml"
    bad.write_text(bomb())
    done = reconciler("-v", "run", "--once", "--repo", str(origin), "--state-dir",
                      str(tmp_path / "s"), "--now", NOW, "--idle", "0.5",
                      "--source", f"file:{bad}", "--source", f"file:{RECS}", cwd=tmp_path,
                      cap=False)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr
    warned = [line for line in done.stderr.splitlines() if "WARNING" in line and "bad" in line]
    assert warned and "bad\\n\\x1b[31mred.yaml" in warned[0], done.stderr
