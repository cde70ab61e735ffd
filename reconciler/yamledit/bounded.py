"""Reading untrusted YAML and JSON within the input limits (``domain.limits``).

PyYAML builds what an alias names once and shares it, so a few hundred bytes of nested
aliases load quickly and then blow up whatever walks the result (validation, JSON
encoding, a deep copy); and libyaml's composer recurses in C, so a few hundred kilobytes
of ``[[[[...`` crash the interpreter with a segmentation fault before Python can raise
anything. Both are stopped here, before anything is built:

- a cheap look at the text proves most inputs safe: no anchor, nesting that the
  indentation and brackets bound below the depth limit, sizes below the rest;
- anything else is walked as libyaml's event stream (a flat loop, no recursion), counting
  documents, depth, aliases, the values an alias expands to, and string lengths.

JSON goes through the same checks on its brackets, then ``json.loads``. Every breach is an
``errors.InputLimitError`` naming the input, the limit and the setting that raises it.

Files are read as the cluster's tools read them: ``go_tolerant`` retries a parse that
PyYAML's pure-Python scanner refuses over tabs Go's parser (and libyaml) skips, on a copy
with those tabs as spaces; every reader of YAML here, and the limits walk, goes through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from reconciler.domain import errors
from reconciler.domain import limits as limits_mod

LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Besides a YAMLError, PyYAML's SafeConstructor raises these for a value it cannot build:
# ``0b_`` or ``!!int x`` (ValueError), ``2001-13-45`` (ValueError), ``!!bool x`` (KeyError),
# ``!!timestamp x`` (AttributeError), an int past the interpreter's digit limit
# (ValueError); and nesting deeper than the stack ends in a RecursionError. Every reader of
# YAML here (this module, the editor in splice.py) catches this one tuple.
UNBUILDABLE = (ValueError, LookupError, AttributeError, TypeError, OverflowError, RecursionError)

_LEADING = re.compile(r"^[ \-?:]*", re.M)  # block indentation and entry markers of a line
# A JSON string, or an unterminated one to the end of the text: it always matches from its
# quote, so no quote is tried twice (linear, where a pattern that must find the closing
# quote is quadratic on many unterminated strings).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_BRACKETS = re.compile(r"[^\[\]{}]+")
# Tabs that Go's YAML parser (Helm, Kustomize, Argo CD, kubectl) and libyaml skip as blanks
# but PyYAML's pure-Python scanner refuses: a run of blanks after a line's content that ends
# the line or comes before a comment (`cpu: 100m<TAB>`), before a key's `:` (`cpu<TAB>:`)
# or after it (`cpu:<TAB>100m`). Checked against `kubectl kustomize` (test_tabs.py).
# Possessive runs keep this linear on a hostile line of a million blanks.
_GO_BLANKS = re.compile(
    r"(?<=[^ \t\r\n])(?=[ \t]*\t)[ \t]++(?=[\r\n#]|:[ \t\r\n]|\Z)"
    r"|(?<=\S:)(?=[ \t]*\t)[ \t]++(?=\S)"
)
_T = TypeVar("_T")


def tabs_as_spaces(text: str) -> str:
    """``text`` with the tabs of ``_GO_BLANKS`` made spaces, one for one: every character
    keeps its index, line and column, so positions found in the copy are positions in the
    original, and an edit can be spliced into the original bytes. Only blanks between
    tokens change, never the structure (inside a quoted or literal scalar such a tab is
    content, and the copy reads a space there: only the unedited text of that scalar)."""
    return _GO_BLANKS.sub(lambda m: " " * len(m.group(0)), text) if "\t" in text else text


def go_tolerant(parse: Callable[[str], _T], text: str) -> _T:
    """``parse(text)``; when the YAML parser refuses a text that holds tabs Go's parser
    skips, ``parse`` of ``tabs_as_spaces(text)`` instead (the original error when that
    changes nothing or fails too). libyaml already reads such tabs as Go does; this keeps
    the pure-Python loader (PyYAML without libyaml) from refusing files the cluster reads."""
    try:
        return parse(text)
    except yaml.YAMLError as e:
        first = e
    same = tabs_as_spaces(text)
    if same != text:
        try:
            return parse(same)
        except yaml.YAMLError:
            pass
    raise first  # the error of the file as it is


def load_yaml(text: str, limits: limits_mod.InputLimits, origin: str) -> list[Any]:
    """Every document of ``text`` (None for an empty one), within ``limits``.

    The one place where PyYAML's failures become ours: ``errors.InputLimitError`` for a
    breach, ``errors.ConfigError`` naming ``origin`` and the line for anything it cannot
    read, including the values its constructors cannot build and let escape as Python
    errors (``0b_``, ``2001-13-45``, ``!!int x``, an integer past 4,300 digits).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: libyaml cannot even take it
        raise errors.ConfigError(f"{origin}: not valid Unicode text (character "
                                 f"{e.start + 1} is a lone surrogate)") from e
    check_yaml(text, limits, origin)
    try:
        return go_tolerant(lambda t: list(yaml.load_all(t, Loader=LOADER)), text)
    except RecursionError as e:  # cannot happen within the depth limit; never a traceback
        raise limits.breach("depth", "nesting too deep to build", origin) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise errors.ConfigError(f"{origin}: invalid YAML or JSON{where}: {problem}") from e
    except UNBUILDABLE as e:  # RecursionError is caught above, as the depth limit
        raise errors.ConfigError(f"{origin}: a value YAML cannot build "
                                 f"({type(e).__name__}: {str(e)[:200]})") from e


def load_json(text: str, limits: limits_mod.InputLimits, origin: str) -> Any:
    """The JSON value of ``text`` within ``limits``; ValueError when it is not JSON."""
    _check_size(text, limits, origin)
    # With every string emptied, the brackets left are JSON's structure: the depth is exact
    # (for text that is not JSON, json.loads says so below).
    depth = _bracket_depth(_STRING.sub('""', text))
    if depth > limits.depth:
        raise limits.breach("depth", f"nesting {depth} levels deep", origin)
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise limits.breach("depth", "nesting too deep to build", origin) from e
    if len(text) > limits.string:
        _check_strings(value, limits, origin)
    if isinstance(value, list) and len(value) > limits.documents:
        raise limits.breach("documents", f"{len(value)} items", origin)
    return value


def check_yaml(text: str, limits: limits_mod.InputLimits, origin: str) -> None:
    """Raise InputLimitError when ``text`` breaks a limit; return when it does not."""
    _check_size(text, limits, origin)
    if _plainly_within(text, limits):
        return
    _walk_events(text, limits, origin)


def _check_size(text: str, limits: limits_mod.InputLimits, origin: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > limits.bytes \
        else len(text)
    if size > limits.bytes:
        raise limits.breach("bytes", f"{size} bytes", origin)


def _plainly_within(text: str, limits: limits_mod.InputLimits) -> bool:
    """True when the text alone proves every limit holds (the common case, cheaply)."""
    if "&" in text and "*" in text:
        return False  # an anchor and maybe an alias: only the events can tell
    if len(text) > min(limits.string, limits.nodes):
        return False  # a value per character at most, a string at most the whole text
    if text.count("---") + 1 > limits.documents:
        return False
    # In block style each level of nesting moves right by at least one column for every
    # two levels (a sequence may sit at its mapping key's column); flow brackets add theirs.
    leading = max((len(m.group(0)) for m in _LEADING.finditer(text)), default=0)
    return 2 * leading + 2 + _bracket_depth(text) <= limits.depth


def _bracket_depth(text: str) -> int:
    """The deepest running nesting of brackets (an over-estimate: quoted ones count too)."""
    depth = deepest = 0
    for ch in _BRACKETS.sub("", text):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def _walk_events(text: str, limits: limits_mod.InputLimits, origin: str) -> None:
    documents = depth = aliases = expanded = 0
    sizes: dict[str, int] = {}           # anchor -> the values it expands to
    open_: list[tuple[str | None, int]] = []  # collections being read: anchor, count before
    try:
        for ev in yaml.parse(text, Loader=LOADER):
            if isinstance(ev, yaml.DocumentStartEvent):
                documents += 1
                if documents > limits.documents:
                    raise limits.breach("documents", f"more than {limits.documents} "
                                        "documents", origin)
            elif isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.depth:
                    raise limits.breach("depth", f"nesting more than {limits.depth} "
                                        "levels deep", origin)
                open_.append((ev.anchor, expanded))
                expanded += 1
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
                anchor, before = open_.pop()
                if anchor is not None:
                    sizes[anchor] = expanded - before
            elif isinstance(ev, yaml.ScalarEvent):
                if len(ev.value) > limits.string:
                    raise limits.breach("string", f"a string of {len(ev.value)} "
                                        "characters", origin)
                expanded += 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.aliases:
                    raise limits.breach("aliases", f"more than {limits.aliases} aliases",
                                        origin)
                if ev.anchor not in sizes:  # an alias inside its own anchor: a cycle
                    raise limits.breach("aliases", f"alias *{ev.anchor} refers to itself "
                                        "(a recursive structure)", origin)
                expanded += sizes[ev.anchor]
            if expanded > limits.nodes:
                raise limits.breach("nodes", f"more than {limits.nodes} values once "
                                    "aliases are expanded", origin)
    except yaml.YAMLError:
        same = tabs_as_spaces(text)
        if same != text:  # the copy the loader reads (go_tolerant) is the one to bound
            _walk_events(same, limits, origin)
        return  # not YAML at all: the loader says where, with its own message


def _check_strings(value: Any, limits: limits_mod.InputLimits, origin: str) -> None:
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if len(v) > limits.string:
                raise limits.breach("string", f"a string of {len(v)} characters", origin)
        elif isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)

