"""Edits of Helm values files: numbers at dotted paths of a one-document mapping.

With Helm, the numbers a recommendation changes are not in a workload document at all but
under a chart-specific key (``cartService.resources.requests.cpu``, or ``resources.limits.cpu``
at the top level of a chart from ``helm create``, or ``redis.master.resources...`` in a
subchart's section), so the edit is addressed by a values path (``split_path``: dots, and
quotes around a key that is not plain) and a missing key is inserted under the deepest
mapping that exists. The promises are those of every edit here: splices into the original
text, the file's own style for inserted keys, and a re-parse that must show exactly the
intended change before any text is returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from reconciler.domain import errors
from reconciler.yamledit import splice

# A values path is keys joined by dots. A plain key is letters, digits, ``_`` and ``-`` (what
# a chart's own keys and subchart names are); any other key is quoted, as in yq and
# JSONPath: ``"my.key"`` (JSON escapes), ``'my.key'`` (a quote doubled) or either of those in
# brackets (``["my.key"]``). The top level of the file is the empty path, also written ``.``.
_PLAIN = splice.VALUE_KEY
_DOUBLE = re.compile(r'"((?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4})*)"')
_SINGLE = re.compile(r"'((?:[^'\x00-\x1f]|'')*)'")
_MAX_KEY = 1024  # libyaml and Go's parser refuse a longer plain (simple) key


def split_path(path: str, *, root: bool = False) -> tuple[str, ...]:
    """The keys of a values path: ``a.b`` -> ("a", "b"), ``"my.app".resources`` ->
    ("my.app", "resources"); ``""`` or ``.`` (the top level) -> () when ``root`` allows it.

    A key that is not plain must be quoted: without quotes a dot would be ambiguous, and a
    key spelled one way here must be the exact key the file (and Helm) reads.
    """
    if path in ("", "."):
        if root:
            return ()
        raise errors.FieldError(path or "<empty>", "the top level is not a value; name a key")
    keys: list[str] = []
    pos = 0
    while True:
        m = _PLAIN.match(path, pos)
        bracket = path.startswith("[", pos)
        at = pos + 1 if bracket else pos
        q = _DOUBLE.match(path, at) or _SINGLE.match(path, at)
        if q is not None:
            key = (json.loads(q.group(0)) if q.group(0)[0] == '"'
                   else q.group(1).replace("''", "'"))
            end = q.end()
            if bracket:
                if not path.startswith("]", end):
                    raise errors.FieldError(path, f"missing ] after the key at character {at + 1}")
                end += 1
            if not key or len(key) > _MAX_KEY or any(
                    c < " " or c in "\x7f\x85\u2028\u2029" or "\ud800" <= c <= "\udfff"
                    for c in key):
                raise errors.FieldError(path, f"quoted key at character {at + 1} is empty, "
                                              f"longer than {_MAX_KEY} characters or holds a "
                                              "control character")
        elif m is not None and not bracket:
            key, end = m.group(0), m.end()
        else:
            raise errors.FieldError(path, _problem(path, at))
        keys.append(key)
        if end == len(path):
            return tuple(keys)
        if path.startswith("[", end):  # a["b"]: a bracket needs no dot before it
            pos = end
            continue
        if not path.startswith(".", end):
            raise errors.FieldError(path, f"unexpected {path[end]!r} at character {end + 1}: "
                                          "keys are joined by dots, and a key with other "
                                          "characters is quoted")
        pos = end + 1


def _problem(path: str, at: int) -> str:
    if at >= len(path):
        return "a key is missing at the end"
    if path[at] in "\"'":
        return f"unterminated or invalid quoted key at character {at + 1}"
    if path[at] == ".":
        return f"empty key at character {at + 1}"
    return (f"key at character {at + 1} is not plain (letters, digits, _ and -); "
            "quote it, as in \"my.key\"")


def format_key(key: str) -> str:
    """One key as a path writes it: plain when it can be, else in double quotes."""
    return key if _PLAIN.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def join_path(keys: Sequence[str]) -> str:
    """The canonical spelling of a path (``split_path`` reads it back as ``keys``); the top
    level is ``""``."""
    return ".".join(format_key(k) for k in keys)


def child_path(path: str, *keys: str) -> str:
    """``path`` (any spelling, possibly the top level) extended by ``keys``, canonical."""
    return join_path((*split_path(path, root=True), *keys))


def _first_leaf_quote(node: Node) -> str:
    """Quote style of a mapping's own scalar values, so inserted siblings look the same."""
    if isinstance(node, MappingNode):
        for _, v in node.value:
            if isinstance(v, ScalarNode) and v.tag != splice.NULL_TAG:
                return v.style if v.style in ('"', "'") else ""
    return ""


def edit_values(text: str, changes: Mapping[str, str | int]) -> splice.EditResult:
    """Set scalar values at values paths (``split_path``) of a one-document values file.

    Missing keys are inserted under the deepest existing mapping, in the file's own
    indentation and quoting; a ``key:``/``~``/``{}`` placeholder becomes a block mapping
    (the comment block ``helm create`` puts under ``resources: {}`` stays below it, as it
    is). Changes are reported under the caller's own spelling of each path.
    Strings must be plain quantities, ints are counts. A path that runs through a sequence
    or a scalar, or one that is a prefix of another, raises errors.PermanentError.
    """
    wanted: list[tuple[tuple[str, ...], str, bool, str]] = []
    spelled: dict[tuple[str, ...], str] = {}
    for path, value in changes.items():
        keys = split_path(path)
        if keys in spelled:  # "a".b and a.b: one key, two values
            raise errors.PermanentError(f"{path} and {spelled[keys]} name the same key")
        spelled[keys] = path
        token, numeric = splice.value_token(path, value)
        wanted.append((keys, token, numeric, path))
    seen = set(spelled)
    for keys, *_ in wanted:
        for i in range(1, len(keys)):
            if keys[:i] in seen:
                raise errors.PermanentError(f"{join_path(keys[:i])} is both a value and a parent")
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
            where = where.child(k, format_key(k), node)
            depth += 1
        if depth == len(keys):
            # The change is reported under the caller's own spelling of the path.
            p.replace(node, splice.Where(path, where.pypath, where.ancestors), token,
                      numeric=numeric)
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
            at = at.child(k, format_key(k), node)
            found = next((e for e in entries if e.key == k and e.leaf is None), None)
            if found is None:
                found = splice.Entry(k)
                entries.append(found)
            entries = found.children
        leaf_where = splice.Where(path, (*at.pypath, keys[-1]), (*at.ancestors, node))
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
