"""The shared machinery of the YAML editor (reconciler.yamledit.splice), on its own.

Cases covered:
- read_document / document_lines agree with PyYAML on a multi-document stream;
- construct (the fast constructor) builds exactly what yaml.safe_load builds, types
  included: YAML 1.1 ints (octal, hex, signs, underscores), booleans, nulls, floats,
  timestamps, anchors and merge keys, non-string keys, explicit tags, binary;
- scan_documents returns only the named documents, with their data.

The splicing itself (planning, rendering, applying, verifying) is covered through the
edits that use it: test_workload.py, test_values.py, test_kustomize.py.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from reconciler.domain import errors
from reconciler.yamledit import splice

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "layout"


def _read(path: pathlib.Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_read_document_and_document_lines_agree_with_pyyaml() -> None:
    text = "# header\n---\na: 1\n---\n# c\nb:\n  - 2\n...\n---\nc: 3"
    docs = list(yaml.safe_load_all(text))
    assert [splice.read_document(text, i) for i in range(len(docs))] == docs
    spans = splice.document_lines(text)
    assert len(spans) == 3
    lines = text.split("\n")
    assert "a: 1" in lines[spans[0][0] - 1 : spans[0][1]]
    assert "b:" in lines[spans[1][0] - 1 : spans[1][1]]
    assert lines[spans[2][1] - 1] == "c: 3"
    with pytest.raises(errors.NotFoundError):
        splice.read_document(text, 3)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: '1'\nc: 0777\nd: 0x1f\ne: -3\nf: +4\ng: 1_000\nh: 0\n",
        "a: yes\nb: No\nc: on\nd: ~\ne: null\nf:\ng: true\nh: 'true'\n",
        "a: 1.5\nb: .inf\nc: 1e3\nd: 2026-11-24\ne: 2026-11-24T10:00:00Z\n",
        "a: &x {k: 1}\nb: *x\nc:\n  <<: *x\n  j: 2\n",
        "1: int key\n2.5: float key\nnull: null key\n",
        "a: !!str 12\nb: !!int '7'\nc: !!binary aGVsbG8=\nd: [1, {e: f}, [g]]\n",
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n      - name: s\n        resources: {requests: {cpu: 100m}}\n",
    ],
)
def test_construct_builds_what_safe_load_builds(text: str) -> None:
    expected = yaml.safe_load(text)
    node = yaml.compose(text, Loader=splice.LOADER)
    assert node is not None
    got = splice.construct(node)
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


def test_scan_documents_returns_only_named_documents_with_data() -> None:
    text = _read(GOLDEN / "plain" / "apps" / "cartservice.yaml")
    found = splice.scan_documents(text, ["Deployment"], {"redis-cart", "nope"})
    docs = list(yaml.safe_load_all(text))
    (index,) = [i for i, d in enumerate(docs) if d["metadata"]["name"] == "redis-cart"
                and d["kind"] == "Deployment"]
    assert [(r.kind, r.name, r.doc_index) for r, _ in found] == [("Deployment", "redis-cart",
                                                                   index)]
    assert found[0][1] == docs[index]
    assert splice.scan_documents(text, ["Deployment"], set()) == []
