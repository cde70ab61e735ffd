"""The embedded engine reloads policies without a restart and keeps the last good set.

Cases covered:
- a changed .rego file is picked up by reload() and, with reload_interval=0, by the next
  decide() on its own;
- a new file under a sub-directory is picked up; *_test.rego files are never loaded;
- a parse error and a compile error keep the previous set answering, set last_error
  (and log it), and a fixed file clears last_error;
- a data file change (parameters) is picked up; later data files override earlier keys;
- the mtime check is rate limited by reload_interval;
- the sidecar server built on the engine serves the reloaded policy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import requests

from reconciler.adapters.opa import embedded
from tests.fakes.opaserver import OpaServer

ALLOW = 'package dakr\ndecision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}\n'
DENY = (
    'package dakr\ndecision := {"allow": false, "mode": "audit",'
    ' "deny": [{"rule": "Nope", "msg": "no"}], "warnings": []}\n'
)
PARAM = (
    'package dakr\ndecision := {"allow": data.config.open, "mode": data.config.mode,'
    ' "deny": [], "warnings": []}\n'
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # Make each write visible to an mtime check even on coarse file systems.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_changed_file_is_reloaded(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=-1)
    assert eng.decide({}).allow
    _write(tmp_path / "dakr" / "decision.rego", DENY)
    assert eng.decide({}).allow  # automatic reload switched off
    assert eng.reload()
    d = eng.decide({})
    assert not d.allow and d.deny[0].rule == "Nope"
    assert not eng.reload()  # nothing changed since


def test_decide_reloads_by_itself(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=0)
    assert eng.decide({}).allow
    _write(tmp_path / "dakr" / "decision.rego", DENY)
    assert not eng.decide({}).allow
    assert eng.reloads == 2


def test_reload_check_is_rate_limited(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=3600)
    eng.decide({})  # first check happens now; the next one only in an hour
    _write(tmp_path / "dakr" / "decision.rego", DENY)
    assert eng.decide({}).allow


def test_new_module_loaded_and_tests_ignored(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego",
           'package dakr\nimport data.extra\ndecision := {"allow": extra.ok, "mode": "direct"}\n')
    _write(tmp_path / "dakr" / "decision_test.rego", "package dakr\nthis is not rego\n")
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=-1)
    assert not eng.decide({}).allow  # data.extra.ok undefined -> decision undefined
    assert eng.last_error is None  # the broken *_test.rego was never loaded
    _write(tmp_path / "deep" / "er" / "extra.rego", "package extra\nok := true\n")
    assert eng.reload()
    assert eng.decide({}).allow


@pytest.mark.parametrize(
    ("broken", "says"),
    [("package dakr\ndecision := {\n", "parse"), ("package dakr\ndecision := y\n", "unsafe")],
    ids=["parse error", "compile error"],
)
def test_broken_file_keeps_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str, says: str
) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=0)
    assert eng.decide({}).allow
    _write(tmp_path / "dakr" / "decision.rego", broken)
    with caplog.at_level(logging.ERROR, logger="reconciler.adapters.opa.embedded"):
        assert eng.decide({}).allow  # still the last good set
    assert eng.last_error and says in eng.last_error
    assert any(says in r.getMessage() for r in caplog.records)
    assert eng.healthy()
    _write(tmp_path / "dakr" / "decision.rego", DENY)
    assert not eng.decide({}).allow
    assert eng.last_error is None


def test_data_files_reload_and_override(tmp_path: Path) -> None:
    _write(tmp_path / "p" / "dakr" / "decision.rego", PARAM)
    _write(tmp_path / "p" / "data.yaml", "config:\n  open: false\n  mode: direct\n")
    _write(tmp_path / "site.json", '{"config": {"mode": "gitops"}}')
    eng = embedded.EmbeddedEngine(tmp_path / "p", reload_interval=0)  # data.yaml by default
    d = eng.decide({})
    assert (d.allow, d.mode) == (False, "direct")
    _write(tmp_path / "p" / "data.yaml", "config:\n  open: true\n  mode: direct\n")
    assert eng.decide({}).allow
    layered = embedded.EmbeddedEngine(
        tmp_path / "p", data_files=[tmp_path / "p" / "data.yaml", tmp_path / "site.json"])
    d = layered.decide({})
    assert (d.allow, d.mode) == (True, "gitops")


def test_sidecar_server_serves_reloaded_policy(tmp_path: Path) -> None:
    _write(tmp_path / "dakr" / "decision.rego", ALLOW)
    eng = embedded.EmbeddedEngine(tmp_path, reload_interval=0)
    with OpaServer(engine=eng) as srv:
        url = f"{srv.url}/v1/data/dakr/decision"
        assert requests.post(url, json={"input": {}}, timeout=5).json()["result"]["allow"]
        _write(tmp_path / "dakr" / "decision.rego", DENY)
        assert not requests.post(url, json={"input": {}}, timeout=5).json()["result"]["allow"]
