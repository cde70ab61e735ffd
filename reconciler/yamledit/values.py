"""Edits of Helm values files: numbers at dotted paths of a one-document mapping.

With Helm, the numbers a recommendation changes are not in a workload document at all but
under a chart-specific key (``cartService.resources.requests.cpu``), so the edit is
addressed by a dotted path and a missing key is inserted under the deepest mapping that
exists. The promises are those of every edit here: splices into the original text, the
file's own style for inserted keys, and a re-parse that must show exactly the intended
change before any text is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from reconciler.domain import errors
from reconciler.yamledit import splice


def split_path(path: str) -> tuple[str, ...]:
    """``a.b.c`` -> ("a", "b", "c"); every key must be a plain identifier-like token.

    Plain keys only: a key that needs quoting could not be written back safely, and a
    dotted path cannot express a key that contains a dot anyway.
    """
    keys = tuple(path.split("."))
    if not path or not all(splice.VALUE_KEY.fullmatch(k) for k in keys):
        raise errors.FieldError(path or "<empty>", "not a dotted path of plain keys")
    return keys


def _first_leaf_quote(node: Node) -> str:
    """Quote style of a mapping's own scalar values, so inserted siblings look the same."""
    if isinstance(node, MappingNode):
        for _, v in node.value:
            if isinstance(v, ScalarNode) and v.tag != splice.NULL_TAG:
                return v.style if v.style in ('"', "'") else ""
    return ""


def edit_values(text: str, changes: Mapping[str, str | int]) -> splice.EditResult:
    """Set scalar values at dotted paths of a one-document values file (Helm values).

    Missing keys are inserted under the deepest existing mapping, in the file's own
    indentation and quoting; a ``key:``/``~``/``{}`` placeholder becomes a block mapping.
    Strings must be plain quantities, ints are counts. A path that runs through a sequence
    or a scalar, or one that is a prefix of another, raises errors.PermanentError.
    """
    wanted: list[tuple[tuple[str, ...], str, bool, str]] = []
    for path, value in changes.items():
        keys = split_path(path)
        token, numeric = splice.value_token(path, value)
        wanted.append((keys, token, numeric, path))
    seen = {w[0] for w in wanted}
    for keys, *_ in wanted:
        for i in range(1, len(keys)):
            if keys[:i] in seen:
                raise errors.PermanentError(f"{'.'.join(keys[:i])} is both a value and a parent")
    bom, body = splice.strip_bom(text)
    if not wanted:
        return splice.EditResult(text, ())
    segs, p, root = splice.plan_single_document(body, "a values file", "document")
    doc = p.doc
    keyed: dict[int, dict[str, list[tuple[Node, Node]]]] = {}
    # Inserts into the same mapping are gathered so they land as one block.
    pending: dict[int, tuple[Node | None, Node, Node | None, splice.Where, list[splice.Entry]]] = {}

    for keys, token, numeric, path in wanted:
        node: Node = root
        key_node: Node | None = None
        parent: Node | None = None
        where = splice.Where("", (), (root,))
        depth = 0
        while depth < len(keys):
            k = keys[depth]
            is_null = isinstance(node, ScalarNode) and node.tag == splice.NULL_TAG
            if not is_null and not isinstance(node, MappingNode):
                raise errors.PermanentError(
                    f"{where.path or 'document'} (line {doc.line(node)}) is not a mapping; "
                    f"cannot set {path}"
                )
            pair = _lookup_cached(p, node, k, where, keyed) if isinstance(
                node, MappingNode) else None
            if pair is None:
                break
            parent, (key_node, node) = node, pair
            where = where.child(k, k, node)
            depth += 1
        if depth == len(keys):
            p.replace(node, where, token, numeric=numeric)
            continue
        # Inside a resources block follow its quantities' quoting; elsewhere the
        # mapping's own scalars (an image tag in quotes says nothing about quantities).
        in_resources = any(k in ("resources", "requests", "limits") for k in keys[:depth])
        quote = "" if numeric else (
            splice.quote_of(node) if in_resources else _first_leaf_quote(node))
        slot = pending.setdefault(id(node), (key_node, node, parent, where, []))
        entries = slot[4]
        at = where
        for k in keys[depth:-1]:
            at = at.child(k, k, node)
            found = next((e for e in entries if e.key == k and e.leaf is None), None)
            if found is None:
                found = splice.Entry(k)
                entries.append(found)
            entries = found.children
        leaf_where = at.child(keys[-1], keys[-1], node)
        entries.append(p.leaf_entry(keys[-1], leaf_where, token, quote))
    for key_node, node, parent, where, entries in pending.values():
        p.put(key_node, node, parent, where, entries)
    return splice.apply_and_verify(text, bom, body, segs, p.splices, {0: (doc, p.leaves)})


def _lookup_cached(
    p: splice.Planner,
    mapping: MappingNode,
    key: str,
    where: splice.Where,
    keyed: dict[int, dict[str, list[tuple[Node, Node]]]],
) -> tuple[Node, Node] | None:
    """``splice.Planner.lookup`` with the mapping's keys indexed once: a values file with
    thousands of top-level entries is otherwise scanned once per change."""
    index = keyed.get(id(mapping))
    if index is None:
        index = {}
        for k, v in mapping.value:
            if isinstance(k, ScalarNode):
                index.setdefault(str(k.value), []).append((k, v))
        keyed[id(mapping)] = index
    found = index.get(key, [])
    if len(found) > 1:
        raise errors.PermanentError(f"duplicate key {key!r} at line {found[1][0].start_mark.line}")
    if not found:
        if splice.MERGE_KEY in index:
            raise errors.PermanentError(
                f"{where.path}.{key} may come from a YAML merge key (<<) at line "
                f"{p.doc.line(mapping)}; refusing to edit it"
            )
        return None
    p.check_unshared(found[0][1], where)
    return found[0]


def read_values(text: str) -> Any:
    """The data of a values file (the C loader: one parse per batch, not per target)."""
    _, body = splice.strip_bom(text)
    try:
        return splice.load_data(body)  # a value YAML cannot build: a PermanentError
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"invalid YAML: {e}") from e
