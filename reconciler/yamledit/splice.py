"""Byte-exact, minimal-diff edits of Kubernetes manifests.

A GitOps pull request is reviewed as a diff, so the diff must hold only the values that
changed: a YAML dumper (even ruamel's round trip) re-indents sequences and drops quotes,
which buries the one real change in noise and fights the repository's own formatter. So
this module never dumps YAML. It composes the documents with PyYAML (C-backed when
available) only to learn where every node sits in the text, then splices new scalar text
into the original string at those positions, and writes inserted keys in the file's own
indentation, quoting and line-ending style.

Safety first: new values must be plain quantity-like tokens (no way to inject YAML);
values shared through anchors/aliases or hidden behind ``<<`` merge keys are refused
rather than edited in one place; and every edit is verified by re-parsing the result and
comparing it, as data, with the original plus exactly the intended changes. A failed check
raises instead of returning text that would corrupt a repository.

Everything here is pure (no I/O): callers read and write the files.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.domain import errors, quantity

__all__ = [
    "AmbiguousTargetError",
    "ContainerChange",
    "EditResult",
    "ValueChange",
    "WorkloadChange",
    "WorkloadRef",
    "add_kustomize_patches",
    "construct",
    "document_lines",
    "edit_kustomize_replicas",
    "edit_many",
    "edit_patch",
    "edit_values",
    "edit_workload",
    "kustomize_replicas",
    "new_patch",
    "read_document",
    "read_values",
    "render_block",
    "scan_documents",
    "scan_workloads",
    "split_path",
]

# The C composer is ~10x faster; both report character indices of the str they were given
# (checked: identical marks for non-ASCII text). They differ on a leading BOM (libyaml skips
# it without counting it), which is why the BOM is cut off before composing.
try:
    _LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _LOADER = yaml.SafeLoader

DEFAULT_KINDS: tuple[str, ...] = ("Deployment", "StatefulSet", "DaemonSet")
_BOM = "\ufeff"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_KEY = "<<"
# Kinds whose pods are not under spec.template.spec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_DEFAULT_POD_SPEC_PATH = ("spec", "template", "spec")
_NO_REPLICAS_KINDS = frozenset({"DaemonSet", "CronJob", "Job", "Pod"})

# Document markers are only markers at column 0 followed by a blank or the line end.
_MARKER = re.compile(r"^(?:(---)|\.\.\.)(?=[ \t\r\n]|$)", re.M)
# A line that makes a stream segment a document: not blank, not a comment, not a directive.
_CONTENT = re.compile(r"^[ \t]*[^\s#%]|^[ \t]+%", re.M)
_REST_OF_LINE_EMPTY = re.compile(r"[ \t\r]*(?:#[^\n]*)?(?:\n|\Z)")
_TOKEN = re.compile(r"[0-9A-Za-z.+-]+")
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_MAX_TOKEN = 64


# --------------------------------------------------------------------------- public types


class AmbiguousTargetError(errors.PermanentError):
    """Two documents define the same workload: editing either would be a guess."""

    def __init__(self, message: str, places: Sequence[tuple[int, int]]) -> None:
        super().__init__(message)
        self.places = tuple(places)  # (doc_index, line) of every match


@dataclass(frozen=True)
class WorkloadRef:
    """What one manifest document defines; ``line`` is where its root node starts."""

    kind: str
    name: str
    namespace: str | None  # None when the document has no metadata.namespace
    doc_index: int  # 0-based document index in the file
    line: int  # 1-based line of the document's first node


@dataclass(frozen=True)
class ContainerChange:
    name: str
    requests: Mapping[str, str] = field(default_factory=dict)  # absent = untouched
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadChange:
    kind: str
    name: str
    namespace: str | None  # None matches any namespace
    containers: Sequence[ContainerChange] = ()
    replicas: int | None = None


@dataclass(frozen=True)
class ValueChange:
    path: str  # e.g. "spec.template.spec.containers[server].resources.requests.cpu"
    old: str | None  # old scalar value (unquoted); None when the key was inserted
    new: str
    line: int  # 1-based line in the NEW text


@dataclass(frozen=True)
class EditResult:
    text: str
    changes: tuple[ValueChange, ...]  # only real changes; equal values produce none


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class _Segment:
    """The slice of the (BOM-less) body that holds exactly one YAML document."""

    start: int
    end: int
    line0: int  # 0-based line number of ``start``


def _split_documents(body: str) -> list[_Segment]:
    """Cut the stream at document markers so each document can be composed on its own.

    Composing only the documents that may matter is what makes scanning a large rendered
    stream cheap. The rules mirror the YAML stream grammar: an implicit first document
    exists only if it has content; every ``---`` starts a document; comments and
    directives before a ``---`` belong to the document it starts. ``_compose`` checks that
    each segment really holds one document, so a wrong cut cannot go unnoticed.
    """
    segs: list[_Segment] = []
    seg_start = 0
    explicit = False
    line0 = 0  # line number of seg_start
    counted = 0  # position up to which newlines were counted into line0

    def close(end: int) -> None:
        nonlocal line0, counted
        line0 += body.count("\n", counted, seg_start)
        counted = seg_start
        segs.append(_Segment(seg_start, end, line0))

    for m in _MARKER.finditer(body):
        p = m.start()
        if m.group(1):  # ---
            if explicit or _CONTENT.search(body, seg_start, p):
                close(p)
                seg_start = p
            explicit = True
        else:  # ... ends the current document
            nl = body.find("\n", m.end())
            line_end = len(body) if nl < 0 else nl + 1
            if explicit or _CONTENT.search(body, seg_start, p):
                close(line_end)
            seg_start = line_end
            explicit = False
    if explicit or _CONTENT.search(body, seg_start, len(body)):
        close(len(body))
    return segs


@dataclass
class _Doc:
    index: int
    seg: _Segment
    root: Node
    shared: frozenset[int]  # ids of nodes reachable more than once (anchor + alias)

    def start(self, node: Node) -> int:
        return self.seg.start + int(node.start_mark.index)

    def end(self, node: Node) -> int:
        return self.seg.start + int(node.end_mark.index)

    def line(self, node: Node) -> int:
        return self.seg.line0 + int(node.start_mark.line) + 1


def _compose(body: str, index: int, seg: _Segment) -> _Doc:
    part = body[seg.start : seg.end]
    try:
        nodes = list(yaml.compose_all(part, Loader=_LOADER))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = seg.line0 + (mark.line if mark is not None else 0) + 1
        problem = getattr(e, "problem", None) or str(e)
        raise errors.PermanentError(
            f"invalid YAML in document {index} near line {line}: {problem}"
        ) from e
    if len(nodes) != 1:
        raise errors.PermanentError(
            f"could not isolate document {index} (line {seg.line0 + 1}): found {len(nodes)}"
        )
    root = nodes[0]
    shared = _shared_nodes(root) if "&" in part else frozenset()
    return _Doc(index, seg, root, shared)


def _shared_nodes(root: Node) -> frozenset[int]:
    """Nodes reachable twice: editing one of them in place would edit every alias too."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return frozenset(shared)


def _get(mapping: Node, key: str) -> tuple[Node, Node] | None:
    if not isinstance(mapping, MappingNode):
        return None
    found = [(k, v) for k, v in mapping.value if isinstance(k, ScalarNode) and k.value == key]
    if len(found) > 1:
        raise errors.PermanentError(f"duplicate key {key!r} at line {found[1][0].start_mark.line}")
    return found[0] if found else None


def _scalar_value(pair: tuple[Node, Node] | None) -> str | None:
    if pair is None or not isinstance(pair[1], ScalarNode) or pair[1].tag == _NULL_TAG:
        return None
    return str(pair[1].value)


def _identity(root: Node) -> tuple[str, str, str | None] | None:
    kind = _scalar_value(_get(root, "kind"))
    meta = _get(root, "metadata")
    if kind is None or meta is None:
        return None
    name = _scalar_value(_get(meta[1], "name"))
    if name is None:
        return None
    return kind, name, _scalar_value(_get(meta[1], "namespace"))


def _kind_filter(kinds: Iterable[str]) -> re.Pattern[str]:
    """A cheap textual test that never misses a document of one of ``kinds``."""
    alternatives = "|".join(re.escape(k) for k in sorted(set(kinds)))
    return re.compile(rf"""\bkind["']?[ \t]*:[ \t\r\n]*["']?(?:{alternatives})(?![\w-])""")


def _strip_bom(text: str) -> tuple[str, str]:
    return (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)


def scan_workloads(text: str, kinds: Collection[str] = DEFAULT_KINDS) -> list[WorkloadRef]:
    """List the workloads a manifest file defines, composing only candidate documents.

    Raises errors.PermanentError if a candidate document is not valid YAML.
    """
    _, body = _strip_bom(text)
    if not kinds:
        return []
    wanted = set(kinds)
    pattern = _kind_filter(wanted)
    refs: list[WorkloadRef] = []
    for index, seg in enumerate(_split_documents(body)):
        if not pattern.search(body, seg.start, seg.end):
            continue
        doc = _compose(body, index, seg)
        ident = _identity(doc.root)
        if ident is not None and ident[0] in wanted:
            refs.append(WorkloadRef(ident[0], ident[1], ident[2], index, doc.line(doc.root)))
    return refs


# --------------------------------------------------------------------------- validation


def _is_quantity(value: str) -> bool:
    try:
        quantity.parse(value)
    except quantity.QuantityError:
        return False
    return True


def _check_quantity(where: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > _MAX_TOKEN
        or not _TOKEN.fullmatch(value)
        or not _is_quantity(value)
    ):
        raise errors.FieldError(where, f"not a plain Kubernetes quantity: {value!r}")
    return value


def _validate(change: WorkloadChange) -> None:
    target = f"{change.kind}/{change.name}"
    if change.replicas is not None and (
        isinstance(change.replicas, bool)
        or not isinstance(change.replicas, int)
        or change.replicas < 0
    ):
        raise errors.FieldError(f"{target}.replicas", f"not a count: {change.replicas!r}")
    if change.replicas is not None and change.kind in _NO_REPLICAS_KINDS:
        raise errors.FieldError(f"{target}.replicas", f"a {change.kind} has no replicas")
    seen: set[str] = set()
    for c in change.containers:
        if c.name in seen:
            raise errors.FieldError(f"{target}.containers", f"container {c.name!r} twice")
        seen.add(c.name)
        for section, values in (("requests", c.requests), ("limits", c.limits)):
            for res, qty in values.items():
                where = f"{target}.containers[{c.name}].{section}.{res}"
                if not isinstance(res, str) or len(res) > 253 or not _RESOURCE_NAME.fullmatch(res):
                    raise errors.FieldError(where, f"not a resource name: {res!r}")
                _check_quantity(where, qty)


# --------------------------------------------------------------------------- planning


@dataclass
class _Leaf:
    path: str
    pypath: tuple[str | int, ...]
    old: str | None
    new: str
    token: str  # the scalar exactly as written into the text (with its quotes)


@dataclass
class _Entry:
    """A key to insert: either a scalar leaf or a nested block of entries."""

    key: str
    leaf: _Leaf | None = None
    children: list[_Entry] = field(default_factory=list)


@dataclass
class _Splice:
    start: int
    end: int
    text: str
    depth: int = 0
    leaves: list[tuple[int, _Leaf]] = field(default_factory=list)  # offset in text


@dataclass
class _Where:
    """Where a node sits: display path, data path, and the chain of nodes above it."""

    path: str
    pypath: tuple[str | int, ...]
    ancestors: tuple[Node, ...]

    def child(self, key: str | int, shown: str, node: Node) -> _Where:
        sep = "" if shown.startswith("[") or not self.path else "."
        return _Where(self.path + sep + shown, (*self.pypath, key), (*self.ancestors, node))


class _Planner:
    """Turns one WorkloadChange into splices against one composed document."""

    def __init__(self, body: str, doc: _Doc, splices: list[_Splice], leaves: list[_Leaf]):
        self.body = body
        self.doc = doc
        self.splices = splices
        self.leaves = leaves
        self._width: int | None = None

    # ---- lookups

    def _check_unshared(self, node: Node, where: _Where) -> None:
        if id(node) in self.doc.shared:
            raise errors.PermanentError(
                f"{where.path or 'document'} (line {self.doc.line(node)}) is shared through a "
                "YAML anchor/alias; refusing to edit it in place"
            )

    def _lookup(self, mapping: Node, key: str, where: _Where) -> tuple[Node, Node] | None:
        pair = _get(mapping, key)
        if pair is None and _get(mapping, _MERGE_KEY) is not None:
            raise errors.PermanentError(
                f"{where.path}.{key} may come from a YAML merge key (<<) at line "
                f"{self.doc.line(mapping)}; refusing to edit it"
            )
        if pair is not None:
            self._check_unshared(pair[1], where)
        return pair

    def _require_mapping(self, node: Node, where: _Where, what: str) -> MappingNode:
        if not isinstance(node, MappingNode):
            raise errors.PermanentError(
                f"{where.path or what} (line {self.doc.line(node)}) is not a mapping"
            )
        return node

    # ---- text geometry

    def _after_line(self, pos: int) -> int:
        nl = self.body.find("\n", pos)
        return len(self.body) if nl < 0 else nl + 1

    def _eol_at(self, pos: int) -> str:
        if pos >= 2 and self.body[pos - 2 : pos] == "\r\n":
            return "\r\n"
        if pos >= 1 and self.body[pos - 1] == "\n":
            return "\n"
        return "\r\n" if "\r\n" in self.body else "\n"

    def _token_start(self, node: Node) -> int:
        """Skip an anchor (&a) and a tag (!!str) that a node's start mark includes."""
        pos = self.doc.start(node)
        end = self.doc.end(node)
        while pos < end and self.body[pos] in "&!":
            while pos < end and self.body[pos] not in " \t\r\n":
                pos += 1
            while pos < end and self.body[pos] in " \t\r\n":
                pos += 1
        return pos

    def _content_end(self, node: Node) -> int:
        """End of a node's last character of content (block collections end much later)."""
        while True:
            if id(node) in self.doc.shared:
                raise errors.PermanentError(
                    f"an anchor/alias ends the block at line {self.doc.line(node)}; "
                    "refusing to insert next to it"
                )
            if isinstance(node, MappingNode) and not node.flow_style and node.value:
                node = node.value[-1][1]
            elif isinstance(node, SequenceNode) and not node.flow_style and node.value:
                node = node.value[-1]
            else:
                break
        end = self.doc.end(node)
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            start = self._token_start(node)
            nl = self.body.find("\n", start, end)
            if "+" in self.body[start : nl if nl >= 0 else end]:
                return end  # "keep" chomping: trailing blank lines are content
            while end > start and self.body[end - 1] in " \t\r\n":
                end -= 1
        return end

    def _line_after_content(self, node: Node) -> int:
        """Where a new line may go after ``node``: the start of the line after its content."""
        pos = self._content_end(node)
        return pos if pos > 0 and self.body[pos - 1] == "\n" else self._after_line(pos)

    def _indent_width(self, near: Sequence[Node]) -> int:
        """Indentation step of nested block mappings, nearest example first (default 2)."""

        def step(node: Node) -> int | None:
            if not isinstance(node, MappingNode) or node.flow_style:
                return None
            for k, v in node.value:
                if isinstance(v, MappingNode) and not v.flow_style and v.value:
                    first = v.value[0][0]
                    if first.start_mark.line > k.start_mark.line:
                        width = int(first.start_mark.column) - int(k.start_mark.column)
                        if width > 0:
                            return width
            return None

        for node in reversed(near):
            found = step(node)
            if found:
                return found
        if self._width is None:
            self._width = 2
            stack = [self.doc.root]
            seen: set[int] = set()
            while stack:
                node = stack.pop()
                if id(node) in seen:
                    continue
                seen.add(id(node))
                found = step(node)
                if found:
                    self._width = found
                    break
                if isinstance(node, MappingNode):
                    stack.extend(v for _, v in reversed(node.value))
                elif isinstance(node, SequenceNode):
                    stack.extend(reversed(node.value))
        return self._width

    # ---- edits

    def replace(self, node: Node, where: _Where, new: str, *, numeric: bool = False) -> None:
        """Splice a new scalar over an old one, keeping its quoting style."""
        self._check_unshared(node, where)
        if not isinstance(node, ScalarNode):
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(node)}) is not a scalar"
            )
        is_null = node.tag == _NULL_TAG and node.style in (None, "")
        old = None if is_null else str(node.value)
        if old is not None:
            if numeric:
                try:
                    if int(old) == int(new):
                        return
                except ValueError:
                    pass
            elif quantity.same(old, new):
                return
        style = node.style or ""
        if style in ("|", ">"):
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(node)}) is a block scalar; "
                "refusing to rewrite it"
            )
        start, end = self._token_start(node), self.doc.end(node)
        raw = self.body[start:end]
        if "\n" in raw or "\r" in raw:
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(node)}) is a multi-line scalar; "
                "refusing to rewrite it"
            )
        leaf = _Leaf(where.path, where.pypath, old, new, f"{style}{new}{style}")
        self.leaves.append(leaf)
        if style:
            self.splices.append(_Splice(start + 1, end - 1, new, 0, [(0, leaf)]))
        elif start == end:  # `key:` with nothing after the colon
            self.splices.append(_Splice(start, end, " " + new, 0, [(1, leaf)]))
        else:
            self.splices.append(_Splice(start, end, new, 0, [(0, leaf)]))

    def leaf_entry(self, key: str, where: _Where, new: str, quote: str) -> _Entry:
        leaf = _Leaf(where.path, where.pypath, None, new, f"{quote}{new}{quote}")
        return _Entry(key, leaf=leaf)

    def put(
        self,
        key_node: Node | None,
        value: Node,
        parent: Node | None,
        where: _Where,
        entries: list[_Entry],
        *,
        at_start: bool = False,
    ) -> None:
        """Insert ``entries`` into the mapping ``value`` (or the null/{} standing for one)."""
        if not entries:
            return
        self._check_unshared(value, where)
        depth = len(where.ancestors)
        is_null = isinstance(value, ScalarNode) and value.tag == _NULL_TAG
        if is_null or (isinstance(value, MappingNode) and value.flow_style and not value.value):
            self._fill_empty(key_node, value, parent, where, entries, depth)
            return
        if not isinstance(value, MappingNode):
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(value)}) is not a mapping"
            )
        if value.flow_style:
            pos = self._content_end(value.value[-1][1])
            text, leaves = _render_flow(entries)
            self._add(_Splice(pos, pos, ", " + text, depth, [(o + 2, lf) for o, lf in leaves]))
        else:
            col = int(value.value[0][0].start_mark.column)
            if (
                at_start
                and key_node is not None
                and value.value[0][0].start_mark.line > key_node.end_mark.line
            ):
                pos = self._after_line(self.doc.end(key_node))
            else:
                pos = self._line_after_content(value)
            self._block_insert(pos, col, where, entries, depth)

    def _fill_empty(
        self,
        key_node: Node | None,
        value: Node,
        parent: Node | None,
        where: _Where,
        entries: list[_Entry],
        depth: int,
    ) -> None:
        start, end = self.doc.start(value), self.doc.end(value)
        block_parent = isinstance(parent, MappingNode) and not parent.flow_style
        if (
            key_node is not None
            and block_parent
            and self._token_start(value) == start
            and _REST_OF_LINE_EMPTY.match(self.body, end)
        ):
            # `key:`, `key: ~` or `key: {}` in block context becomes a block mapping.
            cut = start
            while cut > 0 and self.body[cut - 1] in " \t":
                cut -= 1
            if cut < end:
                self._add(_Splice(cut, end, "", depth))
            col = int(key_node.start_mark.column) + self._indent_width(where.ancestors)
            self._block_insert(self._after_line(end), col, where, entries, depth)
            return
        text, leaves = _render_flow(entries)
        if isinstance(value, MappingNode):  # {} inside a flow collection or before more text
            open_at = self.body.find("{", self._token_start(value), end)
            if open_at < 0 or self.body[open_at + 1 : end - 1].strip():
                raise errors.PermanentError(f"{where.path}: unexpected flow mapping text")
            self._add(_Splice(open_at + 1, end - 1, text, depth, leaves))
            return
        if start == end:
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(value)}) is an empty value inside a flow "
                "collection; refusing to guess its layout"
            )
        tstart = self._token_start(value)
        body = "{" + text + "}"
        self._add(_Splice(tstart, end, body, depth, [(o + 1, lf) for o, lf in leaves]))

    def _block_insert(
        self, pos: int, col: int, where: _Where, entries: list[_Entry], depth: int
    ) -> None:
        width = self._indent_width(where.ancestors)
        eol = self._eol_at(pos)
        at_eof_unterminated = pos == len(self.body) and not self.body.endswith("\n")
        text, leaves = _render_block(entries, col, width, eol)
        if at_eof_unterminated:  # keep "no newline at end of file" as it was
            text = eol + text[: -len(eol)]
            leaves = [(o + len(eol), lf) for o, lf in leaves]
        self._add(_Splice(pos, pos, text, depth, leaves))

    def _add(self, splice: _Splice) -> None:
        self.splices.append(splice)
        self.leaves.extend(lf for _, lf in splice.leaves)


def _render_block(
    entries: list[_Entry], col: int, width: int, eol: str
) -> tuple[str, list[tuple[int, _Leaf]]]:
    parts: list[str] = []
    leaves: list[tuple[int, _Leaf]] = []
    size = 0

    def walk(items: list[_Entry], indent: int) -> None:
        nonlocal size
        for e in items:
            if e.leaf is not None:
                prefix = f"{' ' * indent}{e.key}: "
                leaves.append((size + len(prefix), e.leaf))
                line = prefix + e.leaf.token + eol
            else:
                line = f"{' ' * indent}{e.key}:{eol}"
            parts.append(line)
            size += len(line)
            if e.leaf is None:
                walk(e.children, indent + width)

    walk(entries, col)
    return "".join(parts), leaves


def _render_flow(entries: list[_Entry]) -> tuple[str, list[tuple[int, _Leaf]]]:
    parts: list[str] = []
    leaves: list[tuple[int, _Leaf]] = []
    size = 0

    def emit(s: str) -> None:
        nonlocal size
        parts.append(s)
        size += len(s)

    def walk(items: list[_Entry]) -> None:
        for i, e in enumerate(items):
            emit((", " if i else "") + f"{e.key}: ")
            if e.leaf is not None:
                leaves.append((size, e.leaf))
                emit(e.leaf.token)
            else:
                emit("{")
                walk(e.children)
                emit("}")

    walk(entries)
    return "".join(parts), leaves


def _quote_of(node: Node) -> str:
    """The quote character the first scalar value below ``node`` uses ('' when plain)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ScalarNode):
            if n.tag != _NULL_TAG:
                return n.style if n.style in ('"', "'") else ""
        elif isinstance(n, MappingNode):
            stack.extend(v for _, v in reversed(n.value))
    return ""


def _plan(body: str, doc: _Doc, change: WorkloadChange) -> tuple[list[_Splice], list[_Leaf]]:
    splices: list[_Splice] = []
    leaves: list[_Leaf] = []
    p = _Planner(body, doc, splices, leaves)
    root = p._require_mapping(doc.root, _Where("", (), ()), "document")
    top = _Where("", (), (root,))

    if change.replicas is not None:
        spec_pair = p._lookup(root, "spec", top)
        if spec_pair is None:
            raise errors.PermanentError(f"{change.kind}/{change.name} has no spec")
        spec_where = top.child("spec", "spec", spec_pair[1])
        spec = p._require_mapping(spec_pair[1], spec_where, "spec")
        new = str(change.replicas)
        rep = p._lookup(spec, "replicas", spec_where)
        rep_where = spec_where.child("replicas", "replicas", spec)
        if rep is not None:
            p.replace(rep[1], rep_where, new, numeric=True)
        else:
            entry = p.leaf_entry("replicas", rep_where, new, "")
            p.put(spec_pair[0], spec, root, spec_where, [entry], at_start=True)

    if change.containers:
        _plan_containers(p, root, top, change)
    return splices, leaves


def _plan_containers(p: _Planner, root: MappingNode, top: _Where, change: WorkloadChange) -> None:
    node: Node = root
    where = top
    for key in _POD_SPEC_PATHS.get(change.kind, _DEFAULT_POD_SPEC_PATH):
        pair = p._lookup(node, key, where)
        if pair is None:
            raise errors.NotFoundError(f"{change.kind}/{change.name} has no {where.path}.{key}")
        node = pair[1]
        where = where.child(key, key, node)
        p._require_mapping(node, where, key)
    pod_spec, pod_where = node, where

    for cc in change.containers:
        found: tuple[MappingNode, _Where] | None = None
        for list_key in ("containers", "initContainers"):
            pair = p._lookup(pod_spec, list_key, pod_where)
            if pair is None or not isinstance(pair[1], SequenceNode):
                continue
            list_where = pod_where.child(list_key, list_key, pair[1])
            for i, item in enumerate(pair[1].value):
                if _scalar_value(_get(item, "name")) == cc.name:
                    item_where = list_where.child(i, f"[{cc.name}]", item)
                    p._check_unshared(item, item_where)
                    found = (p._require_mapping(item, item_where, "container"), item_where)
                    break
            if found:
                break
        if found is None:
            raise errors.NotFoundError(
                f"container {cc.name!r} not found in {change.kind}/{change.name} "
                f"(document {p.doc.index}, line {p.doc.line(root)})"
            )
        _plan_resources(p, found[0], found[1], cc)


def _plan_resources(p: _Planner, container: MappingNode, cw: _Where, cc: ContainerChange) -> None:
    sections = [(s, v) for s, v in (("requests", cc.requests), ("limits", cc.limits)) if v]
    if not sections:
        return
    res = p._lookup(container, "resources", cw)

    def new_section(sec: str, values: Mapping[str, str], at: _Where, quote: str) -> _Entry:
        sec_where = at.child(sec, sec, container)
        kids = [
            p.leaf_entry(k, sec_where.child(k, k, container), v, quote) for k, v in values.items()
        ]
        return _Entry(sec, children=kids)

    if res is None:
        rw = cw.child("resources", "resources", container)
        entries = [new_section(s, v, rw, "") for s, v in sections]
        p.put(None, container, None, cw, [_Entry("resources", children=entries)])
        return
    rkey, rval = res
    rw = cw.child("resources", "resources", rval)
    if not isinstance(rval, MappingNode):
        p.put(rkey, rval, container, rw, [new_section(s, v, rw, "") for s, v in sections])
        return
    quote = _quote_of(rval)
    missing: list[_Entry] = []
    for sec, values in sections:
        spair = p._lookup(rval, sec, rw)
        if spair is None:
            missing.append(new_section(sec, values, rw, quote))
            continue
        skey, sval = spair
        sw = rw.child(sec, sec, sval)
        squote = _quote_of(sval) if isinstance(sval, MappingNode) and sval.value else quote
        if not isinstance(sval, MappingNode):  # null: every value is new
            kids = [p.leaf_entry(k, sw.child(k, k, rval), v, squote) for k, v in values.items()]
            p.put(skey, sval, rval, sw, kids)
            continue
        new_kids: list[_Entry] = []
        for k, v in values.items():
            kw = sw.child(k, k, sval)
            vpair = p._lookup(sval, k, sw)
            if vpair is None:
                new_kids.append(p.leaf_entry(k, kw, v, squote))
            else:
                p.replace(vpair[1], kw, v)
        p.put(skey, sval, rval, sw, new_kids)
    p.put(rkey, rval, container, rw, missing)


# --------------------------------------------------------------------------- applying


def _merge_inserts(splices: list[_Splice]) -> list[_Splice]:
    """Order splices; inserts at one spot go deepest first so nesting stays right."""
    splices = sorted(splices, key=lambda s: (s.start, s.end != s.start, -s.depth))
    merged: list[_Splice] = []
    for s in splices:
        prev = merged[-1] if merged else None
        if prev is not None and prev.start == prev.end == s.start == s.end:
            shift = len(prev.text)
            prev.text += s.text
            prev.leaves.extend((o + shift, lf) for o, lf in s.leaves)
            continue
        if prev is not None and s.start < prev.end:
            raise errors.PermanentError(
                "two edits overlap in the same text; refusing (is one workload changed twice?)"
            )
        merged.append(_Splice(s.start, s.end, s.text, s.depth, list(s.leaves)))
    return merged


def _apply(body: str, splices: list[_Splice]) -> tuple[str, list[tuple[int, _Leaf]]]:
    out: list[str] = []
    placed: list[tuple[int, _Leaf]] = []  # (1-based line in new text, leaf)
    prev = 0
    line = 1
    for s in splices:
        out.append(body[prev : s.start])
        line += body.count("\n", prev, s.start)
        for off, leaf in s.leaves:
            placed.append((line + s.text.count("\n", 0, off), leaf))
        out.append(s.text)
        line += s.text.count("\n")
        prev = s.end
    out.append(body[prev:])
    return "".join(out), placed


def _set(obj: Any, pypath: tuple[str | int, ...], value: Any) -> None:
    for step in pypath[:-1]:
        if isinstance(step, int):
            obj = obj[step]
        else:
            if not isinstance(obj, dict):
                raise TypeError(f"not a mapping at {step!r}")
            if obj.get(step) is None:
                obj[step] = {}
            obj = obj[step]
    obj[pypath[-1]] = value


@functools.lru_cache(maxsize=4096)
def _token_value(token: str) -> Any:
    """What a written scalar token parses to (str/int/float: immutable, safe to cache)."""
    return yaml.load(token, Loader=_LOADER)


def _verify(
    old_body: str,
    new_body: str,
    old_segs: list[_Segment],
    edited: dict[int, tuple[_Doc, list[_Leaf]]],
) -> None:
    """Re-parse the result: it must equal the original data plus exactly the intended edits."""
    new_segs = _split_documents(new_body)
    if len(new_segs) != len(old_segs):
        raise errors.PermanentError("internal check failed: the edit changed the document count")
    for index, (doc, leaves) in edited.items():
        seg = new_segs[index]
        try:
            # ``construct`` builds the same data as SafeConstructor, faster; documents
            # with anchors keep the original path so aliases stay shared objects.
            if doc.shared:
                expected = copy.deepcopy(SafeConstructor().construct_document(doc.root))
            else:
                expected = construct(doc.root)
            for leaf in leaves:
                _set(expected, leaf.pypath, _token_value(leaf.token))
            actual = _load_one(new_body[seg.start : seg.end])
        except (yaml.YAMLError, TypeError, KeyError, IndexError) as e:
            raise errors.PermanentError(
                f"internal check failed for document {index}: {e}; refusing to write"
            ) from e
        if actual != expected:
            raise errors.PermanentError(
                f"internal check failed for document {index}: the edited text does not parse "
                "to the intended data; refusing to write"
            )


def _load_one(text: str) -> Any:
    """``yaml.load`` of one document (the fast constructor unless anchors are involved)."""
    if "&" in text or "*" in text:
        return yaml.load(text, Loader=_LOADER)
    node = yaml.compose(text, Loader=_LOADER)
    return None if node is None else construct(node)


def edit_many(
    text: str, changes: Sequence[WorkloadChange], *, default_namespace: str = "default"
) -> EditResult:
    """Apply several workload changes to one file in a single pass.

    Candidate documents are composed once; all splices are computed against the original
    text and applied in one ordered join, so positions never drift. A document without
    metadata.namespace counts as ``default_namespace``; a change with namespace None
    matches any. Raises errors.FieldError (a PermanentError) for a value that is not a
    plain quantity, errors.NotFoundError for a missing workload or container,
    AmbiguousTargetError when two documents match, and errors.PermanentError for anything
    it will not edit safely (anchors/aliases, merge keys, block scalars, a failed check).
    """
    for change in changes:
        _validate(change)
    bom, body = _strip_bom(text)
    if not changes:
        return EditResult(text, ())
    segs = _split_documents(body)
    pattern = _kind_filter(c.kind for c in changes)
    names = {c.name for c in changes}
    candidates: list[tuple[_Doc, tuple[str, str, str | None]]] = []
    for index, seg in enumerate(segs):
        if not pattern.search(body, seg.start, seg.end):
            continue
        part = body[seg.start : seg.end]
        if not any(n in part for n in names):
            continue
        doc = _compose(body, index, seg)
        ident = _identity(doc.root)
        if ident is not None:
            candidates.append((doc, ident))

    splices: list[_Splice] = []
    edited: dict[int, tuple[_Doc, list[_Leaf]]] = {}
    for change in changes:
        doc = _find_target(candidates, change, default_namespace)
        if doc.index in edited:
            raise errors.PermanentError(
                f"{change.kind}/{change.name} is changed twice in one edit; merge the changes"
            )
        doc_splices, doc_leaves = _plan(body, doc, change)
        splices.extend(doc_splices)
        edited[doc.index] = (doc, doc_leaves)

    if not splices:
        return EditResult(text, ())
    new_body, placed = _apply(body, _merge_inserts(splices))
    _verify(body, new_body, segs, {i: e for i, e in edited.items() if e[1]})
    placed.sort(key=lambda pl: pl[0])
    result = tuple(ValueChange(lf.path, lf.old, lf.new, line) for line, lf in placed)
    return EditResult(bom + new_body, result)


def _find_target(
    candidates: list[tuple[_Doc, tuple[str, str, str | None]]],
    change: WorkloadChange,
    default_namespace: str,
) -> _Doc:
    matches = [
        doc
        for doc, (kind, name, ns) in candidates
        if kind == change.kind
        and name == change.name
        and (change.namespace is None or (ns or default_namespace) == change.namespace)
    ]
    shown = f"{change.kind} {change.namespace or '*'}/{change.name}"
    if not matches:
        raise errors.NotFoundError(f"{shown} is not defined in this file")
    if len(matches) > 1:
        places = [(d.index, d.line(d.root)) for d in matches]
        where = " and ".join(f"document {i} (line {ln})" for i, ln in places)
        raise AmbiguousTargetError(f"{shown} is defined more than once: {where}", places)
    return matches[0]


def edit_workload(
    text: str, change: WorkloadChange, *, default_namespace: str = "default"
) -> EditResult:
    """Apply one workload change; see ``edit_many``."""
    return edit_many(text, [change], default_namespace=default_namespace)


# =========================================================================== values files
#
# Helm values files and Kustomize files hold the numbers a recommendation changes in
# places that are not a workload document: a dotted path in a values file, a partial
# Deployment in a strategic-merge patch, an entry of a kustomization's `replicas:` list.
# The functions below keep the same promises as ``edit_many``: splices into the original
# text, the file's own style for inserted keys, and a re-parse that must show exactly the
# intended change before any text is returned.

_VALUE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_REL_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_API_VERSION = re.compile(r"(?:[a-z0-9.-]+/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


def split_path(path: str) -> tuple[str, ...]:
    """``a.b.c`` -> ("a", "b", "c"); every key must be a plain identifier-like token.

    Plain keys only: a key that needs quoting could not be written back safely, and a
    dotted path cannot express a key that contains a dot anyway.
    """
    keys = tuple(path.split("."))
    if not path or not all(_VALUE_KEY.fullmatch(k) for k in keys):
        raise errors.FieldError(path or "<empty>", "not a dotted path of plain keys")
    return keys


def _value_token(path: str, value: object) -> tuple[str, bool]:
    """The text to write for ``value`` and whether it is a count (never quoted)."""
    if isinstance(value, bool):
        raise errors.FieldError(path, f"not a quantity or count: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise errors.FieldError(path, f"not a count: {value!r}")
        return str(value), True
    return _check_quantity(path, value), False


def _first_leaf_quote(node: Node) -> str:
    """Quote style of a mapping's own scalar values, so inserted siblings look the same."""
    if isinstance(node, MappingNode):
        for _, v in node.value:
            if isinstance(v, ScalarNode) and v.tag != _NULL_TAG:
                return v.style if v.style in ('"', "'") else ""
    return ""


def _only_document(body: str, what: str) -> tuple[list[_Segment], _Doc]:
    segs = _split_documents(body)
    if len(segs) != 1:
        raise errors.PermanentError(f"{what} must hold exactly one YAML document, not {len(segs)}")
    return segs, _compose(body, 0, segs[0])


def edit_values(text: str, changes: Mapping[str, str | int]) -> EditResult:
    """Set scalar values at dotted paths of a one-document values file (Helm values).

    Missing keys are inserted under the deepest existing mapping, in the file's own
    indentation and quoting; a ``key:``/``~``/``{}`` placeholder becomes a block mapping.
    Strings must be plain quantities, ints are counts. A path that runs through a sequence
    or a scalar, or one that is a prefix of another, raises errors.PermanentError.
    """
    wanted: list[tuple[tuple[str, ...], str, bool, str]] = []
    for path, value in changes.items():
        keys = split_path(path)
        token, numeric = _value_token(path, value)
        wanted.append((keys, token, numeric, path))
    seen = {w[0] for w in wanted}
    for keys, *_ in wanted:
        for i in range(1, len(keys)):
            if keys[:i] in seen:
                raise errors.PermanentError(f"{'.'.join(keys[:i])} is both a value and a parent")
    bom, body = _strip_bom(text)
    if not wanted:
        return EditResult(text, ())
    segs, doc = _only_document(body, "a values file")
    splices: list[_Splice] = []
    leaves: list[_Leaf] = []
    p = _Planner(body, doc, splices, leaves)
    root = p._require_mapping(doc.root, _Where("", (), ()), "document")
    keyed: dict[int, dict[str, list[tuple[Node, Node]]]] = {}
    # Inserts into the same mapping are gathered so they land as one block.
    pending: dict[int, tuple[Node | None, Node, Node | None, _Where, list[_Entry]]] = {}

    for keys, token, numeric, path in wanted:
        node: Node = root
        key_node: Node | None = None
        parent: Node | None = None
        where = _Where("", (), (root,))
        depth = 0
        while depth < len(keys):
            k = keys[depth]
            is_null = isinstance(node, ScalarNode) and node.tag == _NULL_TAG
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
        quote = "" if numeric else (_quote_of(node) if in_resources else _first_leaf_quote(node))
        slot = pending.setdefault(id(node), (key_node, node, parent, where, []))
        entries = slot[4]
        at = where
        for k in keys[depth:-1]:
            at = at.child(k, k, node)
            found = next((e for e in entries if e.key == k and e.leaf is None), None)
            if found is None:
                found = _Entry(k)
                entries.append(found)
            entries = found.children
        leaf_where = at.child(keys[-1], keys[-1], node)
        entries.append(p.leaf_entry(keys[-1], leaf_where, token, quote))
    for key_node, node, parent, where, entries in pending.values():
        p.put(key_node, node, parent, where, entries)
    if not splices:
        return EditResult(text, ())
    new_body, placed = _apply(body, _merge_inserts(splices))
    _verify(body, new_body, segs, {0: (doc, leaves)})
    placed.sort(key=lambda pl: pl[0])
    return EditResult(
        bom + new_body, tuple(ValueChange(lf.path, lf.old, lf.new, line) for line, lf in placed)
    )


def _lookup_cached(
    p: _Planner,
    mapping: MappingNode,
    key: str,
    where: _Where,
    keyed: dict[int, dict[str, list[tuple[Node, Node]]]],
) -> tuple[Node, Node] | None:
    """``_Planner._lookup`` with the mapping's keys indexed once: a values file with
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
        if _MERGE_KEY in index:
            raise errors.PermanentError(
                f"{where.path}.{key} may come from a YAML merge key (<<) at line "
                f"{p.doc.line(mapping)}; refusing to edit it"
            )
        return None
    p._check_unshared(found[0][1], where)
    return found[0]


def read_values(text: str) -> Any:
    """The data of a values file (the C loader: one parse per batch, not per target)."""
    _, body = _strip_bom(text)
    try:
        return yaml.load(body, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"invalid YAML: {e}") from e


# --------------------------------------------------------------------------- block rendering


def _seq_indent_of(root: Node) -> int | None:
    """How far this file indents a block sequence below its key (0 = `- ` under the key)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, MappingNode) and not node.flow_style:
            for k, v in node.value:
                if (
                    isinstance(v, SequenceNode)
                    and not v.flow_style
                    and v.value
                    and v.start_mark.line > k.start_mark.line
                ):
                    return max(0, int(v.start_mark.column) - int(k.start_mark.column))
                stack.append(v)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return None


def _scalar_token(value: object, where: str) -> str:
    if isinstance(value, bool):
        raise errors.FieldError(where, f"unexpected boolean {value!r}")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value:
        raise errors.FieldError(where, f"unexpected value {value!r}")
    if _TOKEN.fullmatch(value) and _is_quantity(value):
        return value
    if _REL_PATH.fullmatch(value) or _API_VERSION.fullmatch(value):
        # Names, kinds, file paths and apiVersions are plain YAML strings unless they
        # look like another type (true, null, 1e3): quote those.
        loaded = yaml.load(value, Loader=_LOADER)
        return value if loaded == value else f'"{value}"'
    raise errors.FieldError(where, f"refusing to write {value!r} into YAML")


def render_block(obj: Mapping[str, Any], col: int, width: int, seq_indent: int, eol: str) -> str:
    """Render a small nested mapping (mappings, lists of mappings, plain scalars) as block
    YAML starting at column ``col``, in the given indentation style."""
    out: list[str] = []

    def mapping(m: Mapping[str, Any], indent: int, first_prefix: str | None = None) -> None:
        for i, (k, v) in enumerate(m.items()):
            if not isinstance(k, str) or not _VALUE_KEY.fullmatch(k):
                raise errors.FieldError(str(k), "not a plain key")
            lead = first_prefix if (i == 0 and first_prefix is not None) else " " * indent
            if isinstance(v, Mapping):
                out.append(f"{lead}{k}:{eol}")
                mapping(v, indent + width)
            elif isinstance(v, list):
                out.append(f"{lead}{k}:{eol}")
                dash = indent + seq_indent
                for item in v:
                    if isinstance(item, Mapping) and item:
                        mapping(item, dash + 2, " " * dash + "- ")
                    else:
                        out.append(f"{' ' * dash}- {_scalar_token(item, k)}{eol}")
            else:
                out.append(f"{lead}{k}: {_scalar_token(v, k)}{eol}")

    mapping(obj, col)
    return "".join(out)


def _render_items(items: Sequence[Mapping[str, Any]], dash: int, eol: str, width: int,
                  seq_indent: int) -> str:
    out: list[str] = []
    for item in items:
        first = next(iter(item))
        head = {first: item[first]}
        rest = {k: v for k, v in item.items() if k != first}
        text = render_block(head, dash + 2, width, seq_indent, eol)
        out.append(" " * dash + "- " + text[dash + 2 :])
        if rest:
            out.append(render_block(rest, dash + 2, width, seq_indent, eol))
    return "".join(out)


def _doc_data(body: str, seg: _Segment) -> Any:
    return yaml.load(body[seg.start : seg.end], Loader=_LOADER)


def _check_data(new_body: str, index: int, expected: Any, what: str) -> None:
    segs = _split_documents(new_body)
    try:
        actual = _doc_data(new_body, segs[index])
    except (yaml.YAMLError, IndexError) as e:
        raise errors.PermanentError(f"internal check failed for {what}: {e}") from e
    if actual != expected:
        raise errors.PermanentError(
            f"internal check failed for {what}: the edited text does not parse to the "
            "intended data; refusing to write"
        )


def _eol_of(body: str) -> str:
    return "\r\n" if "\r\n" in body else "\n"


# --------------------------------------------------------------------------- kustomize


def _lines_of(body: str, start: int, text: str) -> list[int]:
    first = body.count("\n", 0, start) + 1
    return list(range(first, first + text.count("\n")))


def _container_item(cc: ContainerChange) -> dict[str, Any]:
    item: dict[str, Any] = {"name": cc.name}
    res = {sec: dict(v) for sec, v in (("requests", cc.requests), ("limits", cc.limits)) if v}
    if res:
        item["resources"] = res
    return item


def _find_lines(block: str, first_line: int, wanted: Sequence[tuple[str, str]]) -> list[int]:
    """Lines (1-based, in the new text) of ``key: value`` pairs written in this order."""
    lines = block.split("\n")
    out: list[int] = []
    i = 0
    for key, token in wanted:
        target = f"{key}: {token}"
        while i < len(lines):
            text = lines[i].rstrip("\r").lstrip(" \t")
            if text == target or text == "- " + target:
                break
            i += 1
        out.append(first_line + min(i, len(lines) - 1))
        i += 1
    return out


def edit_patch(text: str, change: WorkloadChange) -> EditResult:
    """Apply ``change`` to a Kustomize strategic-merge patch (a partial workload document).

    Containers the patch already lists are edited like any manifest; a container it does
    not list yet is appended to its ``containers`` list (``- name: X`` plus the resources),
    and a patch without a pod template (one that only sets replicas, say) gains the
    ``spec.template.spec.containers`` path. The patch document is matched by kind and name
    only: a patch carries no namespace of its own in most overlays.
    """
    _validate(change)
    for cc in change.containers:
        if not _DNS_LABEL.fullmatch(cc.name):
            raise errors.FieldError(f"{change.kind}/{change.name}.containers", cc.name)
    bom, body = _strip_bom(text)
    segs = _split_documents(body)
    pattern = _kind_filter([change.kind])
    candidates: list[tuple[_Doc, tuple[str, str, str | None]]] = []
    for index, seg in enumerate(segs):
        if pattern.search(body, seg.start, seg.end) and change.name in body[seg.start : seg.end]:
            doc = _compose(body, index, seg)
            ident = _identity(doc.root)
            if ident is not None:
                candidates.append((doc, ident))
    anyns = WorkloadChange(change.kind, change.name, None, change.containers, change.replicas)
    match = _find_target(candidates, anyns, "default")
    if not isinstance(match.root, MappingNode):
        raise errors.PermanentError("the patch document is not a mapping")
    pod_path = _POD_SPEC_PATHS.get(change.kind, _DEFAULT_POD_SPEC_PATH)

    listed: set[str] = set()
    pod = _walk(match.root, pod_path)
    if pod is not None:
        for list_key in ("containers", "initContainers"):
            pair = _get(pod, list_key)
            if pair is not None and isinstance(pair[1], SequenceNode):
                listed |= {str(_scalar_value(_get(i, "name"))) for i in pair[1].value}
    existing = tuple(cc for cc in change.containers if cc.name in listed)
    missing = [cc for cc in change.containers if cc.name not in listed]
    has_spec = _get(match.root, "spec") is not None

    first = edit_many(
        text,
        [WorkloadChange(change.kind, change.name, None, existing,
                        change.replicas if has_spec else None)],
    )
    if not missing and (has_spec or change.replicas is None):
        return first

    # Second pass, on the edited text: add what the patch does not hold yet.
    _, body2 = _strip_bom(first.text)
    segs2 = _split_documents(body2)
    doc = _compose(body2, match.index, segs2[match.index])
    p = _Planner(body2, doc, [], [])
    width = p._indent_width((doc.root,))
    seq_indent = _seq_indent_of(doc.root) or 0
    eol = _eol_of(body2)
    items = [_container_item(cc) for cc in missing]

    node: Node = doc.root
    depth = 0
    for key in pod_path:
        pair = _get(node, key)
        if pair is None:
            break
        if not isinstance(pair[1], MappingNode) or not pair[1].value or pair[1].flow_style:
            raise errors.PermanentError(
                f"{'.'.join(pod_path[: depth + 1])} in the patch (line {doc.line(pair[1])}) is "
                "not a non-empty block mapping; refusing to guess its layout"
            )
        node = pair[1]
        depth += 1
    assert isinstance(node, MappingNode)
    cpair = _get(node, "containers") if depth == len(pod_path) else None
    if cpair is not None:
        cseq = cpair[1]
        if not isinstance(cseq, SequenceNode) or cseq.flow_style or not cseq.value:
            raise errors.PermanentError(
                f"the containers list of the patch (line {doc.line(cseq)}) is not a block "
                "sequence; refusing to guess its layout"
            )
        pos = p._line_after_content(cseq)
        block = _render_items(items, int(cseq.start_mark.column), eol, width, seq_indent)
    else:
        tail: dict[str, Any] = {"containers": items} if items else {}
        for key in reversed(pod_path[depth:]):
            tail = {key: tail} if tail else {}
        if change.replicas is not None and not has_spec:
            tail = {"spec": {"replicas": change.replicas, **tail.get("spec", {})}}
        pos = p._line_after_content(node)
        block = render_block(tail, int(node.value[0][0].start_mark.column), width, seq_indent,
                             eol)
    if pos == len(body2) and not body2.endswith("\n"):
        block = eol + block[: -len(eol)]
    new_body = body2[:pos] + block + body2[pos:]

    expected = _doc_data(body2, segs2[match.index])
    if change.replicas is not None and not has_spec:
        expected["spec"] = {"replicas": change.replicas}
    if items:
        data = expected
        for key in pod_path:
            data = data.setdefault(key, {})
        data.setdefault("containers", []).extend(items)
    _check_data(new_body, match.index, expected, f"the patch for {change.kind}/{change.name}")

    at_line = body2.count("\n", 0, pos) + 1 + (1 if block.startswith(eol) else 0)
    n_new = block.count("\n")
    shifted = [
        ValueChange(c.path, c.old, c.new, c.line + n_new if c.line >= at_line else c.line)
        for c in first.changes
    ]
    written: list[tuple[str, str, str]] = []  # (path, key, token) in rendering order
    if change.replicas is not None and not has_spec:
        written.append(("spec.replicas", "replicas", str(change.replicas)))
    base = ".".join(pod_path)
    for cc in missing:
        for sec, values in (("requests", cc.requests), ("limits", cc.limits)):
            for res, qty in values.items():
                written.append((f"{base}.containers[{cc.name}].resources.{sec}.{res}", res, qty))
    lines = _find_lines(block, at_line, [(k, t) for _, k, t in written])
    added = [ValueChange(path, None, tok, ln) for (path, _, tok), ln in zip(written, lines,
                                                                             strict=True)]
    return EditResult(bom + new_body, tuple(sorted(shifted + added, key=lambda c: c.line)))


def _walk(node: Node, path: Sequence[str]) -> MappingNode | None:
    for key in path:
        pair = _get(node, key)
        if pair is None or not isinstance(pair[1], MappingNode):
            return None
        node = pair[1]
    return node if isinstance(node, MappingNode) else None


def new_patch(api_version: str, change: WorkloadChange, *, eol: str = "\n",
              header: str = "") -> str:
    """The text of a new strategic-merge patch that sets only what ``change`` sets."""
    _validate(change)
    if not _API_VERSION.fullmatch(api_version) or not _KIND_NAME.fullmatch(change.kind):
        raise errors.FieldError("patch", f"unexpected apiVersion/kind {api_version}/{change.kind}")
    if not _DNS_LABEL.fullmatch(change.name.replace(".", "-")):
        raise errors.FieldError("patch", f"unexpected name {change.name!r}")
    spec: dict[str, Any] = {}
    if change.replicas is not None:
        spec["replicas"] = change.replicas
    items = [_container_item(cc) for cc in change.containers]
    if items:
        data: dict[str, Any] = spec
        pod_path = _POD_SPEC_PATHS.get(change.kind, _DEFAULT_POD_SPEC_PATH)
        for key in pod_path[1:]:
            data = data.setdefault(key, {})
        data["containers"] = items
    for cc in change.containers:
        if not _DNS_LABEL.fullmatch(cc.name):
            raise errors.FieldError("patch.containers", cc.name)
    doc = {"apiVersion": api_version, "kind": change.kind, "metadata": {"name": change.name},
           "spec": spec}
    text = "".join(f"# {line}{eol}" for line in header.splitlines())
    text += render_block(doc, 0, 2, 0, eol)
    if _load_one(text) != doc:
        raise errors.PermanentError("internal check failed for a new patch; refusing to write")
    return text


def _root_seq(p: _Planner, root: MappingNode, key: str) -> tuple[Node, Node] | None:
    return p._lookup(root, key, _Where("", (), (root,)))


def add_kustomize_patches(text: str, entries: Sequence[Mapping[str, Any]]) -> EditResult:
    """Append ``patches:`` entries (``{path, target?}``) to a kustomization.yaml.

    An entry whose path is already listed is skipped, so a rerun adds nothing. The list is
    extended in place in its own indentation; a missing ``patches:`` key is added at the
    end of the file.
    """
    bom, body = _strip_bom(text)
    segs, doc = _only_document(body, "a kustomization")
    p = _Planner(body, doc, [], [])
    root = p._require_mapping(doc.root, _Where("", (), ()), "kustomization")
    data = _doc_data(body, segs[0])
    current = data.get("patches") or []
    if not isinstance(current, list):
        raise errors.PermanentError("patches in the kustomization is not a list")
    listed = {e.get("path") for e in current if isinstance(e, dict)}
    todo: list[dict[str, Any]] = []
    for e in entries:
        path = e.get("path")
        if not isinstance(path, str) or not _REL_PATH.fullmatch(path):
            raise errors.FieldError("patches.path", f"not a relative file path: {path!r}")
        if path not in listed:
            listed.add(path)
            todo.append(dict(e))
    if not todo:
        return EditResult(text, ())
    eol = _eol_of(body)
    width = p._indent_width((root,))
    seq_indent = _seq_indent_of(root) or 0
    pair = _root_seq(p, root, "patches")
    cut: tuple[int, int] | None = None
    if pair is not None and isinstance(pair[1], SequenceNode) and pair[1].value:
        seq = pair[1]
        if seq.flow_style:
            raise errors.PermanentError("a flow-style patches list is not edited")
        pos = p._line_after_content(seq)
        block = _render_items(todo, int(seq.start_mark.column), eol, width, seq_indent)
    elif pair is not None:
        key, value = pair
        is_empty = (isinstance(value, ScalarNode) and value.tag == _NULL_TAG) or (
            isinstance(value, SequenceNode) and not value.value
        )
        start, end = doc.start(value), doc.end(value)
        if not is_empty or not _REST_OF_LINE_EMPTY.match(body, end):
            raise errors.PermanentError("the patches key of the kustomization is not a list")
        cut_at = start
        while cut_at > 0 and body[cut_at - 1] in " \t":
            cut_at -= 1
        cut = (cut_at, end) if cut_at < end else None
        pos = p._after_line(end)
        col = int(key.start_mark.column)
        block = _render_items(todo, col + seq_indent, eol, width, seq_indent)
    else:
        pos = p._line_after_content(root)
        col = int(root.value[0][0].start_mark.column)
        block = f"{' ' * col}patches:{eol}" + _render_items(todo, col + seq_indent, eol,
                                                             width, seq_indent)
    if pos == len(body) and not body.endswith("\n"):
        block = eol + block[: -len(eol)]
    new_body = body[:pos] + block + body[pos:]
    if cut is not None:
        new_body = new_body[: cut[0]] + new_body[cut[1] :]
    data["patches"] = current + todo
    _check_data(new_body, 0, data, "the kustomization")
    first = new_body.count("\n", 0, pos - (cut[1] - cut[0] if cut else 0)) + 1
    first += 1 if block.startswith(eol) else 0
    wanted = [("path", e["path"]) for e in todo]
    lines = _find_lines(block.lstrip("\r\n"), first, wanted)
    return EditResult(
        bom + new_body,
        tuple(ValueChange(f"patches[{e['path']}]", None, e["path"], ln)
              for e, ln in zip(todo, lines, strict=True)),
    )


def kustomize_replicas(text: str) -> dict[str, int]:
    """The ``replicas:`` field of a kustomization: {name: count}."""
    _, body = _strip_bom(text)
    data = read_values(body)
    out: dict[str, int] = {}
    if isinstance(data, dict):
        for e in data.get("replicas") or []:
            if isinstance(e, dict) and isinstance(e.get("count"), int):
                out[str(e.get("name"))] = int(e["count"])
    return out


def edit_kustomize_replicas(text: str, counts: Mapping[str, int]) -> EditResult:
    """Change ``count`` of existing entries of a kustomization's ``replicas:`` list."""
    bom, body = _strip_bom(text)
    for name, count in counts.items():
        _value_token(f"replicas[{name}]", count)
    if not counts:
        return EditResult(text, ())
    segs, doc = _only_document(body, "a kustomization")
    splices: list[_Splice] = []
    leaves: list[_Leaf] = []
    p = _Planner(body, doc, splices, leaves)
    root = p._require_mapping(doc.root, _Where("", (), ()), "kustomization")
    top = _Where("", (), (root,))
    pair = p._lookup(root, "replicas", top)
    if pair is None or not isinstance(pair[1], SequenceNode):
        raise errors.NotFoundError("the kustomization has no replicas list")
    seq_where = top.child("replicas", "replicas", pair[1])
    todo = dict(counts)
    for i, item in enumerate(pair[1].value):
        entry = _scalar_value(_get(item, "name"))
        if entry is not None and entry in todo:
            item_where = seq_where.child(i, f"[{entry}]", item)
            cpair = p._lookup(p._require_mapping(item, item_where, "replicas entry"), "count",
                              item_where)
            if cpair is None:
                raise errors.PermanentError(f"replicas entry {entry} has no count")
            p.replace(cpair[1], item_where.child("count", "count", item), str(todo.pop(entry)),
                      numeric=True)
    if todo:
        raise errors.NotFoundError(
            f"the kustomization's replicas list has no entry for {', '.join(sorted(todo))}")
    if not splices:
        return EditResult(text, ())
    new_body, placed = _apply(body, _merge_inserts(splices))
    _verify(body, new_body, segs, {0: (doc, leaves)})
    placed.sort(key=lambda pl: pl[0])
    return EditResult(
        bom + new_body, tuple(ValueChange(lf.path, lf.old, lf.new, line) for line, lf in placed)
    )


def read_document(text: str, doc_index: int) -> Any:
    """One document of a stream as data, composing only that document."""
    _, body = _strip_bom(text)
    segs = _split_documents(body)
    if not 0 <= doc_index < len(segs):
        raise errors.NotFoundError(f"document {doc_index} does not exist")
    try:
        return _doc_data(body, segs[doc_index])
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"invalid YAML in document {doc_index}: {e}") from e


def document_lines(text: str) -> list[tuple[int, int]]:
    """(first, last) 1-based line of every document: to tell which document a line is in."""
    _, body = _strip_bom(text)
    segs = _split_documents(body)
    out: list[tuple[int, int]] = []
    for seg in segs:
        last = seg.line0 + body.count("\n", seg.start, max(seg.start, seg.end - 1)) + 1
        out.append((seg.line0 + 1, last))
    return out


_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Fallback(Exception):
    """A node the fast constructor does not handle: use PyYAML's SafeConstructor."""


def _fast(node: Node) -> Any:
    if isinstance(node, ScalarNode):
        tag, value = node.tag, node.value
        if tag == _STR_TAG:
            return value
        if tag == _NULL_TAG:
            return None
        if tag == _BOOL_TAG:
            return value.lower() in ("yes", "true", "on")
        if tag == _INT_TAG and value.isdigit() and (value == "0" or value[0] != "0"):
            return int(value)
        raise _Fallback
    if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
        out: dict[Any, Any] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode) or k.tag != _STR_TAG:
                raise _Fallback  # merge keys, non-string keys
            out[k.value] = _fast(v)
        return out
    if isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
        return [_fast(v) for v in node.value]
    raise _Fallback


def construct(node: Node) -> Any:
    """Data of a composed document, as PyYAML's safe loader builds it.

    Plain strings, decimal ints, booleans, nulls, mappings and sequences (all a manifest
    usually holds) are built directly, several times faster than SafeConstructor; any
    other node (floats, timestamps, merge keys, aliases shared across the tree) makes
    the whole document go through SafeConstructor, so the result is always the same.
    """
    try:
        return _fast(node)
    except (_Fallback, RecursionError):
        return SafeConstructor().construct_document(node)


def scan_documents(
    text: str, kinds: Collection[str], names: Collection[str]
) -> list[tuple[WorkloadRef, Any]]:
    """Like ``scan_workloads``, for documents named in ``names`` only, with their data:
    the index needs the object too, and composing each document once is the point."""
    _, body = _strip_bom(text)
    if not kinds or not names:
        return []
    wanted = set(kinds)
    pattern = _kind_filter(wanted)
    out: list[tuple[WorkloadRef, Any]] = []
    for index, seg in enumerate(_split_documents(body)):
        if not pattern.search(body, seg.start, seg.end):
            continue
        doc = _compose(body, index, seg)
        ident = _identity(doc.root)
        if ident is not None and ident[0] in wanted and ident[1] in names:
            data = (SafeConstructor().construct_document(doc.root) if doc.shared
                    else construct(doc.root))
            out.append((WorkloadRef(ident[0], ident[1], ident[2], index, doc.line(doc.root)),
                        data))
    return out
