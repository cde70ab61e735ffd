"""Reading recommendation documents (`reconciler.adapters.files`), the one reader behind
apply, demo, run, policy eval, the platform's --from and the VPA/KRR importers.

Cases (table): YAML documents; a JSON object; a JSON array; a `List` and a `<Kind>List`
unpacked; flow-style YAML documents that start with `{` (not JSON); empty documents
dropped. Errors: invalid YAML names the line; a missing file, invalid UTF-8 and '-' for
stdin.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import files
from reconciler.domain import errors


@pytest.mark.parametrize(("text", "docs"), [
    ("a: 1\n---\nb: 2\n", [{"a": 1}, {"b": 2}]),
    ('{"a": 1}', [{"a": 1}]),
    ('[{"a": 1}, {"b": 2}]', [{"a": 1}, {"b": 2}]),
    ("kind: List\nitems: [{a: 1}, {b: 2}]\n", [{"a": 1}, {"b": 2}]),
    ("kind: VerticalPodAutoscalerList\nitems: [{a: 1}]\n---\n{c: 3}\n", [{"a": 1}, {"c": 3}]),
    ("{a: 1}\n---\n{b: 2}\n", [{"a": 1}, {"b": 2}]),
    ("---\n---\na: 1\n---\n", [{"a": 1}]),
    ("kind: List\nitems: not-a-list\n", [{"kind": "List", "items": "not-a-list"}]),
])
def test_parse_documents(text: str, docs: list[Any]) -> None:
    assert files.parse_documents(text) == docs


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(errors.ConfigError, match=r"recs\.yaml: invalid YAML or JSON at line 2"):
        files.parse_documents("a: 1\n- b\n", "recs.yaml")


def test_file_errors_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        files.load_documents(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(errors.ConfigError, match="not valid UTF-8"):
        files.load_documents(bad)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a: 1\n")))
    assert files.load_documents("-") == [{"a": 1}]
