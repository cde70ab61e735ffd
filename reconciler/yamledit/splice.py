"""Byte-exact, minimal-diff edits of YAML: the machinery every edit in this package uses.

A GitOps pull request is reviewed as a diff, so the diff must hold only the values that
changed: a YAML dumper (even ruamel's round trip) re-indents sequences and drops quotes,
which buries the one real change in noise and fights the repository's own formatter. So
this package never dumps YAML. It composes the documents with PyYAML (C-backed when
available) only to learn where every node sits in the text, then splices new scalar text
into the original string at those positions, and writes inserted keys in the file's own
indentation, quoting and line-ending style.

Safety first: new values must be plain quantity-like tokens (no way to inject YAML);
values shared through anchors/aliases or hidden behind ``<<`` merge keys are refused
rather than edited in one place; and every edit is verified by re-parsing the result and
comparing it, as data, with the original plus exactly the intended changes. A failed check
raises instead of returning text that would corrupt a repository.

This module holds what keeps those promises, once: cutting a stream into documents,
composing them for node positions, planning splices, rendering inserted keys, applying the
splices and verifying the result. ``workload``, ``values`` and ``kustomize`` only decide
which nodes an edit of their kind of file touches. Everything here is pure (no I/O):
callers read and write the files.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.domain import errors, quantity
from reconciler.yamledit import bounded

# The C composer is ~10x faster; both report character indices of the str they were given
# (checked: identical marks for non-ASCII text). They differ on a leading BOM (libyaml skips
# it without counting it), which is why the BOM is cut off before composing.
LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = bounded.LOADER


_BOM = "\ufeff"
NULL_TAG = "tag:yaml.org,2002:null"
MERGE_KEY = "<<"
# Document markers are only markers at column 0 followed by a blank or the line end.
_MARKER = re.compile(r"^(?:(---)|\.\.\.)(?=[ \t\r\n]|$)", re.M)
# A line that makes a stream segment a document: not blank, not a comment, not a directive.
_CONTENT = re.compile(r"^[ \t]*[^\s#%]|^[ \t]+%", re.M)
REST_OF_LINE_EMPTY = re.compile(r"[ \t\r]*(?:#[^\n]*)?(?:\n|\Z)")
_TOKEN = re.compile(r"[0-9A-Za-z.+-]+")
_MAX_TOKEN = 64
VALUE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")  # written plain when it reads as itself
REL_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
API_VERSION = re.compile(r"(?:[a-z0-9.-]+/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


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
class Segment:
    """The slice of the (BOM-less) body that holds exactly one YAML document."""

    start: int
    end: int
    line0: int  # 0-based line number of ``start``


def split_documents(body: str) -> list[Segment]:
    """Cut the stream at document markers so each document can be composed on its own.

    Composing only the documents that may matter is what makes scanning a large rendered
    stream cheap. The rules mirror the YAML stream grammar: an implicit first document
    exists only if it has content; every ``---`` starts a document; comments and
    directives before a ``---`` belong to the document it starts. ``compose`` checks that
    each segment really holds one document, so a wrong cut cannot go unnoticed.
    """
    segs: list[Segment] = []
    seg_start = 0
    explicit = False
    line0 = 0  # line number of seg_start
    counted = 0  # position up to which newlines were counted into line0

    def close(end: int) -> None:
        nonlocal line0, counted
        line0 += body.count("\n", counted, seg_start)
        counted = seg_start
        segs.append(Segment(seg_start, end, line0))

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
class Doc:
    index: int
    seg: Segment
    root: Node
    shared: frozenset[int]  # ids of nodes reachable more than once (anchor + alias)

    def start(self, node: Node) -> int:
        return self.seg.start + int(node.start_mark.index)

    def end(self, node: Node) -> int:
        return self.seg.start + int(node.end_mark.index)

    def line(self, node: Node) -> int:
        return self.seg.line0 + int(node.start_mark.line) + 1


def compose(body: str, index: int, seg: Segment) -> Doc:
    part = body[seg.start : seg.end]
    try:
        nodes = bounded.go_tolerant(lambda t: list(yaml.compose_all(t, Loader=LOADER)), part)
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
    return Doc(index, seg, root, shared)


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


def get(mapping: Node, key: str) -> tuple[Node, Node] | None:
    if not isinstance(mapping, MappingNode):
        return None
    found = [(k, v) for k, v in mapping.value if isinstance(k, ScalarNode) and k.value == key]
    if len(found) > 1:
        raise errors.PermanentError(f"duplicate key {key!r} at line {found[1][0].start_mark.line}")
    return found[0] if found else None


def scalar_value(pair: tuple[Node, Node] | None) -> str | None:
    if pair is None or not isinstance(pair[1], ScalarNode) or pair[1].tag == NULL_TAG:
        return None
    return str(pair[1].value)


def identity(root: Node) -> tuple[str, str, str | None] | None:
    kind = scalar_value(get(root, "kind"))
    meta = get(root, "metadata")
    if kind is None or meta is None:
        return None
    name = scalar_value(get(meta[1], "name"))
    if name is None:
        return None
    return kind, name, scalar_value(get(meta[1], "namespace"))


def kind_filter(kinds: Iterable[str]) -> re.Pattern[str]:
    """A cheap textual test that never misses a document of one of ``kinds``.

    Besides ``kind: X``, ``"kind": "X"`` and ``? kind`` / ``: X``, the value may follow an
    anchor or a tag (``kind: &k X``, ``kind: !!str X``) or a block scalar header
    (``kind: >-``), or be an alias (``kind: *k``, whatever it names): a document missed
    here is one a change never sees, so a second definition of a workload went unnoticed
    and the first was edited as if it were the only one.
    """
    alternatives = "|".join(re.escape(k) for k in sorted(set(kinds)))
    return re.compile(
        rf"""\bkind["']?[ \t\r\n]*:[ \t\r\n]*(?:(?:[&!][^ \t\r\n]*|[|>][-+0-9]*)[ \t\r\n]+)*"""
        rf"""(?:\*|["']?(?:{alternatives})(?![\w-]))"""
    )


def strip_bom(text: str) -> tuple[str, str]:
    return (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)


def doc_data(body: str, seg: Segment) -> Any:
    return load_data(body[seg.start : seg.end])


def unbuildable(e: BaseException) -> errors.PermanentError:
    """The refusal of a text holding a value PyYAML cannot build: such a file is as
    unreadable as invalid YAML and is refused like it, never let escape as a traceback
    (callers, the repository index among them, only expect the project's own errors)."""
    return errors.PermanentError(f"a value in the YAML cannot be read ({type(e).__name__}: {e})")


def load_data(text: str) -> Any:
    """``yaml.load`` with the C loader; a value it cannot build is a PermanentError (a
    YAMLError stays one, for the caller to word)."""
    try:
        return bounded.go_tolerant(lambda t: yaml.load(t, Loader=LOADER), text)
    except bounded.UNBUILDABLE as e:
        raise unbuildable(e) from e


# --------------------------------------------------------------------------- validation


def _is_quantity(value: str) -> bool:
    try:
        quantity.parse(value)
    except quantity.QuantityError:
        return False
    return True


def _reads_as_itself(value: str) -> bool:
    """Whether YAML reads the plain token as the quantity it is: ``010`` is the quantity 10
    but YAML 1.1's octal 8, so written plain it would set 8 (``08`` and ``0.10`` are fine:
    a string, and a float of the same value)."""
    data = _token_value(value)
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        try:
            return quantity.parse(data).value == quantity.parse(value).value
        except quantity.QuantityError:
            return False
    return True


def check_quantity(where: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) > _MAX_TOKEN
        or not _TOKEN.fullmatch(value)
        or not _is_quantity(value)
        or not _reads_as_itself(value)
    ):
        raise errors.FieldError(where, f"not a plain Kubernetes quantity: {value!r}")
    return value


# The largest count written: what the YAML readers of Kubernetes and Helm (Go) hold in an
# int64. A larger int is a count nothing reads, and past 4300 digits Python cannot even
# write it (str() raises ValueError).
MAX_COUNT = 2**63 - 1


def check_count(where: str, value: int) -> None:
    """Refuse a count below 0 or past ``MAX_COUNT`` (named without ``str`` when it is huge)."""
    if not 0 <= value <= MAX_COUNT:
        shown = str(value) if abs(value) <= MAX_COUNT else f"{value.bit_length()} bits long"
        raise errors.FieldError(where, f"not a count (0 to 2**63 - 1): {shown}")


def value_token(path: str, value: object) -> tuple[str, bool]:
    """The text to write for ``value`` and whether it is a count (never quoted)."""
    if isinstance(value, bool):
        raise errors.FieldError(path, f"not a quantity or count: {value!r}")
    if isinstance(value, int):
        check_count(path, value)
        return str(value), True
    return check_quantity(path, value), False


# --------------------------------------------------------------------------- planning


@dataclass
class Leaf:
    path: str
    pypath: tuple[str | int, ...]
    old: str | None
    new: str
    token: str  # the scalar exactly as written into the text (with its quotes)


@dataclass
class Entry:
    """A key to insert: either a scalar leaf or a nested block of entries."""

    key: str
    leaf: Leaf | None = None
    children: list[Entry] = field(default_factory=list)


@dataclass
class Splice:
    start: int
    end: int
    text: str
    depth: int = 0
    leaves: list[tuple[int, Leaf]] = field(default_factory=list)  # offset in text


@dataclass
class Where:
    """Where a node sits: display path, data path, and the chain of nodes above it."""

    path: str
    pypath: tuple[str | int, ...]
    ancestors: tuple[Node, ...]

    def child(self, key: str | int, shown: str, node: Node) -> Where:
        sep = "" if shown.startswith("[") or not self.path else "."
        return Where(self.path + sep + shown, (*self.pypath, key), (*self.ancestors, node))


def _holds(node: ScalarNode, new: str, *, numeric: bool) -> bool:
    """Whether a scalar already means ``new``, judged by what YAML reads and not by how its
    text looks: ``010`` reads as 8 (YAML 1.1 octal) and an Arabic-Indic digit as a string,
    though Python's ``int`` reads both as numbers (and the quantity parser ``010`` as 10).
    A quoted count of the same digits ("3") is the file's own style and left alone."""
    try:
        have = SafeConstructor().construct_object(node)
    except (yaml.YAMLError, *bounded.UNBUILDABLE):
        return False
    if isinstance(have, bool):
        return False
    if numeric:
        return (isinstance(have, int) and have == int(new)) or have == new
    if not isinstance(have, (int, float, str)):
        return False
    try:
        return quantity.parse(have).value == quantity.parse(new).value
    except quantity.QuantityError:
        return False


class Planner:
    """Turns the edits of one document into splices against its text: each kind of file
    decides which nodes to change, the planner how, so all edits refuse and insert alike."""

    def __init__(self, body: str, doc: Doc, splices: list[Splice], leaves: list[Leaf]):
        self.body = body
        self.doc = doc
        self.splices = splices
        self.leaves = leaves
        self._width: int | None = None

    # ---- lookups

    def check_unshared(self, node: Node, where: Where) -> None:
        if id(node) in self.doc.shared:
            raise errors.PermanentError(
                f"{where.path or 'document'} (line {self.doc.line(node)}) is shared through a "
                "YAML anchor/alias; refusing to edit it in place"
            )

    def lookup(self, mapping: Node, key: str, where: Where) -> tuple[Node, Node] | None:
        pair = get(mapping, key)
        if pair is None and get(mapping, MERGE_KEY) is not None:
            raise errors.PermanentError(
                f"{where.path}.{key} may come from a YAML merge key (<<) at line "
                f"{self.doc.line(mapping)}; refusing to edit it"
            )
        if pair is not None:
            self.check_unshared(pair[1], where)
        return pair

    def require_mapping(self, node: Node, where: Where, what: str) -> MappingNode:
        if not isinstance(node, MappingNode):
            raise errors.PermanentError(
                f"{where.path or what} (line {self.doc.line(node)}) is not a mapping"
            )
        return node

    # ---- text geometry

    def after_line(self, pos: int) -> int:
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

    def line_after_content(self, node: Node) -> int:
        """Where a new line may go after ``node``: the start of the line after its content."""
        pos = self._content_end(node)
        return pos if pos > 0 and self.body[pos - 1] == "\n" else self.after_line(pos)

    def indent_width(self, near: Sequence[Node]) -> int:
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

    def replace(self, node: Node, where: Where, new: str, *, numeric: bool = False) -> None:
        """Splice a new scalar over an old one, keeping its quoting style."""
        self.check_unshared(node, where)
        if not isinstance(node, ScalarNode):
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(node)}) is not a scalar"
            )
        is_null = node.tag == NULL_TAG and node.style in (None, "")
        old = None if is_null else str(node.value)
        if old is not None and _holds(node, new, numeric=numeric):
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
        leaf = Leaf(where.path, where.pypath, old, new, f"{style}{new}{style}")
        self.leaves.append(leaf)
        if style:
            self.splices.append(Splice(start + 1, end - 1, new, 0, [(0, leaf)]))
        elif start == end:  # `key:` with nothing after the colon
            self.splices.append(Splice(start, end, " " + new, 0, [(1, leaf)]))
        else:
            self.splices.append(Splice(start, end, new, 0, [(0, leaf)]))

    def leaf_entry(self, key: str, where: Where, new: str, quote: str) -> Entry:
        leaf = Leaf(where.path, where.pypath, None, new, f"{quote}{new}{quote}")
        return Entry(key, leaf=leaf)

    def put(
        self,
        key_node: Node | None,
        value: Node,
        parent: Node | None,
        where: Where,
        entries: list[Entry],
        *,
        at_start: bool = False,
    ) -> None:
        """Insert ``entries`` into the mapping ``value`` (or the null/{} standing for one)."""
        if not entries:
            return
        self.check_unshared(value, where)
        depth = len(where.ancestors)
        is_null = isinstance(value, ScalarNode) and value.tag == NULL_TAG
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
            self._add(Splice(pos, pos, ", " + text, depth, [(o + 2, lf) for o, lf in leaves]))
        else:
            col = int(value.value[0][0].start_mark.column)
            if (
                at_start
                and key_node is not None
                and value.value[0][0].start_mark.line > key_node.end_mark.line
            ):
                pos = self.after_line(self.doc.end(key_node))
            else:
                pos = self.line_after_content(value)
            self._block_insert(pos, col, where, entries, depth)

    def _fill_empty(
        self,
        key_node: Node | None,
        value: Node,
        parent: Node | None,
        where: Where,
        entries: list[Entry],
        depth: int,
    ) -> None:
        start, end = self.doc.start(value), self.doc.end(value)
        block_parent = isinstance(parent, MappingNode) and not parent.flow_style
        if (
            key_node is not None
            and block_parent
            and self._token_start(value) == start
            and REST_OF_LINE_EMPTY.match(self.body, end)
        ):
            # `key:`, `key: ~` or `key: {}` in block context becomes a block mapping.
            cut = start
            while cut > 0 and self.body[cut - 1] in " \t":
                cut -= 1
            if cut < end:
                self._add(Splice(cut, end, "", depth))
            col = int(key_node.start_mark.column) + self.indent_width(where.ancestors)
            self._block_insert(self.after_line(end), col, where, entries, depth)
            return
        text, leaves = _render_flow(entries)
        if isinstance(value, MappingNode):  # {} inside a flow collection or before more text
            open_at = self.body.find("{", self._token_start(value), end)
            if open_at < 0 or self.body[open_at + 1 : end - 1].strip():
                raise errors.PermanentError(f"{where.path}: unexpected flow mapping text")
            self._add(Splice(open_at + 1, end - 1, text, depth, leaves))
            return
        if start == end:
            raise errors.PermanentError(
                f"{where.path} (line {self.doc.line(value)}) is an empty value inside a flow "
                "collection; refusing to guess its layout"
            )
        tstart = self._token_start(value)
        body = "{" + text + "}"
        self._add(Splice(tstart, end, body, depth, [(o + 1, lf) for o, lf in leaves]))

    def _block_insert(
        self, pos: int, col: int, where: Where, entries: list[Entry], depth: int
    ) -> None:
        width = self.indent_width(where.ancestors)
        eol = self._eol_at(pos)
        at_eof_unterminated = pos == len(self.body) and not self.body.endswith("\n")
        text, leaves = _render_block(entries, col, width, eol)
        if at_eof_unterminated:  # keep "no newline at end of file" as it was
            text = eol + text[: -len(eol)]
            leaves = [(o + len(eol), lf) for o, lf in leaves]
        self._add(Splice(pos, pos, text, depth, leaves))

    def _add(self, splice: Splice) -> None:
        self.splices.append(splice)
        self.leaves.extend(lf for _, lf in splice.leaves)


def _render_block(
    entries: list[Entry], col: int, width: int, eol: str
) -> tuple[str, list[tuple[int, Leaf]]]:
    parts: list[str] = []
    leaves: list[tuple[int, Leaf]] = []
    size = 0

    def walk(items: list[Entry], indent: int) -> None:
        nonlocal size
        for e in items:
            key = key_token(e.key)
            if e.leaf is not None:
                prefix = f"{' ' * indent}{key}: "
                leaves.append((size + len(prefix), e.leaf))
                line = prefix + e.leaf.token + eol
            else:
                line = f"{' ' * indent}{key}:{eol}"
            parts.append(line)
            size += len(line)
            if e.leaf is None:
                walk(e.children, indent + width)

    walk(entries, col)
    return "".join(parts), leaves


def _render_flow(entries: list[Entry]) -> tuple[str, list[tuple[int, Leaf]]]:
    parts: list[str] = []
    leaves: list[tuple[int, Leaf]] = []
    size = 0

    def emit(s: str) -> None:
        nonlocal size
        parts.append(s)
        size += len(s)

    def walk(items: list[Entry]) -> None:
        for i, e in enumerate(items):
            emit((", " if i else "") + f"{key_token(e.key)}: ")
            if e.leaf is not None:
                leaves.append((size, e.leaf))
                emit(e.leaf.token)
            else:
                emit("{")
                walk(e.children)
                emit("}")

    walk(entries)
    return "".join(parts), leaves


@functools.lru_cache(maxsize=1024)
def key_token(key: str) -> str:
    """A mapping key as written into YAML: plain when YAML reads it back as the same string
    (``cpu``, ``my-app``, ``nvidia.com/gpu``, as files write them), else double-quoted
    (``"on"``, ``"1"``, ``"my key"``): a quoted key never reads as another type, and JSON's
    escapes are YAML's."""
    if _PLAIN_KEY.fullmatch(key) and _token_value(key) == key:
        return key
    return json.dumps(key, ensure_ascii=False)


def quote_of(node: Node) -> str:
    """The quote character the first scalar value below ``node`` uses ('' when plain)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ScalarNode):
            if n.tag != NULL_TAG:
                return n.style if n.style in ('"', "'") else ""
        elif isinstance(n, MappingNode):
            stack.extend(v for _, v in reversed(n.value))
    return ""


# --------------------------------------------------------------------------- applying


def _merge_inserts(splices: list[Splice]) -> list[Splice]:
    """Order splices; inserts at one spot go deepest first so nesting stays right."""
    splices = sorted(splices, key=lambda s: (s.start, s.end != s.start, -s.depth))
    merged: list[Splice] = []
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
        merged.append(Splice(s.start, s.end, s.text, s.depth, list(s.leaves)))
    return merged


def _apply(body: str, splices: list[Splice]) -> tuple[str, list[tuple[int, Leaf]]]:
    out: list[str] = []
    placed: list[tuple[int, Leaf]] = []  # (1-based line in new text, leaf)
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


def _get(obj: Any, pypath: tuple[str | int, ...]) -> Any:
    for step in pypath:
        obj = obj[step]
    return obj


@functools.lru_cache(maxsize=4096)
def _token_value(token: str) -> Any:
    """What a written scalar token parses to (str/int/float: immutable, safe to cache)."""
    return yaml.load(token, Loader=LOADER)


def _verify(
    old_body: str,
    new_body: str,
    old_segs: list[Segment],
    edited: dict[int, tuple[Doc, list[Leaf]]],
) -> None:
    """Re-parse the result: it must equal the original data plus exactly the intended edits."""
    new_segs = split_documents(new_body)
    if len(new_segs) != len(old_segs):
        raise errors.PermanentError("internal check failed: the edit changed the document count")
    for index, (doc, leaves) in edited.items():
        seg = new_segs[index]
        try:
            # ``construct`` builds the same data as SafeConstructor, faster; documents
            # with anchors keep the original path so aliases stay shared objects.
            if doc.shared:
                expected = copy.deepcopy(safe_construct(doc.root))
            else:
                expected = construct(doc.root)
            for leaf in leaves:
                _set(expected, leaf.pypath, _token_value(leaf.token))
            try:
                actual = load_one(new_body[seg.start : seg.end])
            except errors.PermanentError as e:  # a value it cannot build: `!!float 10k`
                raise errors.PermanentError(
                    f"internal check failed for document {index}: {e}; refusing to write"
                ) from e
            # ``==`` takes 5.0 for 5 (and True for 1): the written values must also have the
            # type intended (``!!float 1`` rewritten as ``!!float 5`` reads as 5.0).
            same = actual == expected and all(
                type(_get(actual, leaf.pypath)) is type(_token_value(leaf.token))
                for leaf in leaves
            )
        except (yaml.YAMLError, TypeError, KeyError, IndexError, RecursionError) as e:
            # RecursionError: copying or comparing data nested deeper than the stack.
            raise errors.PermanentError(
                f"internal check failed for document {index}: {e}; refusing to write"
            ) from e
        if not same:
            raise errors.PermanentError(
                f"internal check failed for document {index}: the edited text does not parse "
                "to the intended data; refusing to write"
            )


def plan_single_document(body: str, what: str,
                         root_label: str) -> tuple[list[Segment], Planner, MappingNode]:
    """The planner for a file that must be one document with a mapping at its root (a values
    file, a kustomization): anything else is refused before a single edit is planned."""
    segs = split_documents(body)
    if len(segs) != 1:
        raise errors.PermanentError(f"{what} must hold exactly one YAML document, not {len(segs)}")
    p = Planner(body, compose(body, 0, segs[0]), [], [])
    return segs, p, p.require_mapping(p.doc.root, Where("", (), ()), root_label)


def apply_and_verify(
    text: str,
    bom: str,
    body: str,
    segs: list[Segment],
    splices: list[Splice],
    edited: dict[int, tuple[Doc, list[Leaf]]],
) -> EditResult:
    """Apply the planned splices in one ordered join and verify the documents in ``edited``:
    the one way every kind of edit turns a plan into text, so none can skip the check.

    ``text`` is returned as it was when there is nothing to splice; the changes are reported
    in line order of the new text.
    """
    if not splices:
        return EditResult(text, ())
    new_body, placed = _apply(body, _merge_inserts(splices))
    _verify(body, new_body, segs, edited)
    placed.sort(key=lambda pl: pl[0])
    return EditResult(
        bom + new_body, tuple(ValueChange(lf.path, lf.old, lf.new, line) for line, lf in placed)
    )


def load_one(text: str) -> Any:
    """``yaml.load`` of one document (the fast constructor unless anchors are involved)."""
    if "&" in text or "*" in text:
        return load_data(text)
    node = bounded.go_tolerant(lambda t: yaml.compose(t, Loader=LOADER), text)
    return None if node is None else construct(node)


# --------------------------------------------------------------------------- block rendering


def _scalar_token(value: object, where: str) -> str:
    if isinstance(value, bool):
        raise errors.FieldError(where, f"unexpected boolean {value!r}")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value:
        raise errors.FieldError(where, f"unexpected value {value!r}")
    if _TOKEN.fullmatch(value) and _is_quantity(value):
        return value
    if REL_PATH.fullmatch(value) or API_VERSION.fullmatch(value):
        # Names, kinds, file paths and apiVersions are plain YAML strings unless they
        # look like another type (true, null, 1e3): quote those.
        try:
            loaded = yaml.load(value, Loader=LOADER)
        except bounded.UNBUILDABLE:  # 0b_, 2001-13-45: plain, YAML could not even read them
            loaded = None
        return value if loaded == value else f'"{value}"'
    raise errors.FieldError(where, f"refusing to write {value!r} into YAML")


def render_block(obj: Mapping[str, Any], col: int, width: int, seq_indent: int, eol: str) -> str:
    """Render a small nested mapping (mappings, lists of mappings, plain scalars) as block
    YAML starting at column ``col``, in the given indentation style."""
    out: list[str] = []

    def mapping(m: Mapping[str, Any], indent: int, first_prefix: str | None = None) -> None:
        for i, (k, v) in enumerate(m.items()):
            if not isinstance(k, str) or not VALUE_KEY.fullmatch(k):
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


# --------------------------------------------------------------------------- reading


def read_document(text: str, doc_index: int) -> Any:
    """One document of a stream as data, composing only that document."""
    _, body = strip_bom(text)
    segs = split_documents(body)
    if not 0 <= doc_index < len(segs):
        raise errors.NotFoundError(f"document {doc_index} does not exist")
    try:
        return doc_data(body, segs[doc_index])
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"invalid YAML in document {doc_index}: {e}") from e


def document_lines(text: str) -> list[tuple[int, int]]:
    """(first, last) 1-based line of every document: to tell which document a line is in."""
    _, body = strip_bom(text)
    segs = split_documents(body)
    out: list[tuple[int, int]] = []
    for seg in segs:
        last = seg.line0 + body.count("\n", seg.start, max(seg.start, seg.end - 1)) + 1
        out.append((seg.line0 + 1, last))
    return out


_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Fallback(Exception):
    """A node the fast constructor does not handle: use PyYAML's SafeConstructor."""


def _fast(node: Node) -> Any:
    if isinstance(node, ScalarNode):
        tag, value = node.tag, node.value
        if tag == _STR_TAG:
            return value
        if tag == NULL_TAG:
            return None
        # ``!!bool x`` and ints of other digits, or past the interpreter's digit limit, are
        # left to SafeConstructor: it refuses or builds them, and so must this.
        if tag == _BOOL_TAG and value.lower() in SafeConstructor.bool_values:
            return SafeConstructor.bool_values[value.lower()]
        if tag == _INT_TAG and value.isascii() and value.isdigit() and len(value) < 19 and (
                value == "0" or value[0] != "0"):
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
        return safe_construct(node)


def safe_construct(node: Node) -> Any:
    """SafeConstructor's data of a composed document (aliases stay shared objects); a value
    it cannot build is a PermanentError, as in ``load_data``."""
    try:
        return SafeConstructor().construct_document(node)
    except bounded.UNBUILDABLE as e:
        raise unbuildable(e) from e


def scan_documents(
    text: str, kinds: Collection[str], names: Collection[str]
) -> list[tuple[WorkloadRef, Any]]:
    """Like ``workload.scan_workloads``, for documents named in ``names`` only, with their data:
    the index needs the object too, and composing each document once is the point."""
    _, body = strip_bom(text)
    if not kinds or not names:
        return []
    wanted = set(kinds)
    pattern = kind_filter(wanted)
    out: list[tuple[WorkloadRef, Any]] = []
    for index, seg in enumerate(split_documents(body)):
        if not pattern.search(body, seg.start, seg.end):
            continue
        doc = compose(body, index, seg)
        ident = identity(doc.root)
        if ident is not None and ident[0] in wanted and ident[1] in names:
            try:
                data = safe_construct(doc.root) if doc.shared else construct(doc.root)
            except yaml.YAMLError as e:  # composed, but not data: an unhashable key, say
                raise errors.PermanentError(
                    f"invalid YAML in document {index} (line {doc.line(doc.root)}): {e}"
                ) from e
            out.append((WorkloadRef(ident[0], ident[1], ident[2], index, doc.line(doc.root)),
                        data))
    return out
