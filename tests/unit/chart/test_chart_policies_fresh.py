"""The chart's copy of the policy library (manifests/files/policies/) matches policies/.

`helm install` ships the library from that copy, so a Rego or data.yaml change in
policies/ that is not copied would install stale policies. Cases:
- the copy holds exactly the library's files (every policies/**/*.rego but *_test.rego,
  and data.yaml), byte for byte; else the message names each stale file and says to run
  `make chart-policies`;
- manifests/sync_policies.py on a scratch library: it copies nested Rego and data.yaml,
  leaves out tests, hidden paths and other files, updates a changed file, deletes a file
  the library no longer has (and its emptied directory), and is a no-op the second time;
  `--check` reports a stale copy with exit status 1 and changes nothing;
- a library whose two files would share one ConfigMap key (``a/b.rego`` and ``a.b.rego``),
  or without data.yaml, is refused.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests import chart_sync

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def sync() -> types.ModuleType:
    return chart_sync.load()


def test_chart_copy_of_the_policies_is_fresh(sync: types.ModuleType) -> None:
    assert sync.SOURCE == ROOT / "policies"
    assert sync.DEST == ROOT / "manifests" / "files" / "policies"
    problems = sync.stale()
    assert problems == [], (
        "manifests/files/policies/ differs from policies/: run `make chart-policies`\n"
        + "\n".join(problems))


def test_library_is_every_rego_but_tests_and_data_yaml(sync: types.ModuleType) -> None:
    files = sync.library()
    policies = ROOT / "policies"
    want = {p.relative_to(policies).as_posix() for p in policies.rglob("*.rego")
            if not p.name.endswith("_test.rego")} | {"data.yaml"}
    assert set(files) == want
    assert "dakr/decision.rego" in files


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_sync_copies_updates_and_prunes(sync: types.ModuleType, tmp_path: Path) -> None:
    src, dest = tmp_path / "policies", tmp_path / "chart" / "files" / "policies"
    _write(src, {
        "data.yaml": "config: {}\n",
        "dakr/decision.rego": "package dakr\n",
        "scope/rules.rego": "package dakr.scope\n",
        "scope/rules_test.rego": "package dakr.scope_test\n",
        ".hidden/x.rego": "package hidden\n",
        "README.md": "not shipped\n",
    })
    assert sync.sync(src, dest) == [
        "missing: dakr/decision.rego", "missing: data.yaml", "missing: scope/rules.rego"]
    assert sync.copied(dest) == {
        "data.yaml": b"config: {}\n",
        "dakr/decision.rego": b"package dakr\n",
        "scope/rules.rego": b"package dakr.scope\n",
    }
    assert sync.sync(src, dest) == []

    (src / "scope" / "rules.rego").unlink()
    (src / "dakr" / "decision.rego").write_text("package dakr\n\nx := 1\n")
    assert sync.stale(src, dest) == ["differs: dakr/decision.rego", "extra: scope/rules.rego"]
    sync.sync(src, dest)
    assert sync.stale(src, dest) == []
    assert not (dest / "scope").exists()
    assert (dest / "dakr" / "decision.rego").read_text() == "package dakr\n\nx := 1\n"


def test_check_reports_a_stale_copy_without_changing_it(
        sync: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    src, dest = tmp_path / "policies", tmp_path / "copy"
    _write(src, {"data.yaml": "config: {}\n", "a.rego": "package a\n"})
    monkeypatch.setattr(sync, "SOURCE", src)
    monkeypatch.setattr(sync, "DEST", dest)
    assert sync.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "missing: a.rego" in out.out and "make chart-policies" in out.err
    assert not dest.exists()


@pytest.mark.parametrize(("files", "message"), [
    ({"data.yaml": "{}", "a/b.rego": "package a\n", "a.b.rego": "package b\n"},
     "would both be ConfigMap key 'a.b.rego'"),
    ({"a.rego": "package a\n"}, "data.yaml is missing"),
])
def test_library_refuses_what_the_configmap_cannot_hold(
        sync: types.ModuleType, tmp_path: Path, files: dict[str, str], message: str) -> None:
    _write(tmp_path, files)
    with pytest.raises(ValueError, match=message):
        sync.library(tmp_path)
