"""Untrusted text made inert for the medium it is shown in.

A recommendation's strings (ids, names, container names, messages), what a policy says
about it (deny messages, warnings), what a repository holds (file paths, values) and what
a forge or the API server answers all come from outside. They reach pull-request bodies
and titles (Markdown that GitHub, GitLab and Gitea render), commit messages, Kubernetes
Events, log lines and the terminal. None of them may become markup there: no image, link,
autolink, mention, HTML or table row in a pull request; no second line in a commit, an
Event or a log (a forged log line); no escape sequence on a terminal. And none may be
long enough to drown the rest.

One escaper (``escape_controls``) and one truncation rule (``clip``) serve every medium;
each medium then has one helper:

- ``md_code``: Markdown outside tables: the text inside a code span it cannot close;
- ``md_cell``: a GFM table cell: the same, with ``|`` escaped so the row stays whole;
- ``one_line``: commit messages, Event messages, log lines;
- ``terminal``: what the CLI prints.

Pure and deterministic: the same input always renders the same bytes (a rerun of a
batch must not rewrite its pull request).
"""

from __future__ import annotations

import re
import unicodedata

# Limits, in characters of the rendered text (the note included).
CELL_LIMIT = 200     # a table cell: a row must stay readable
TEXT_LIMIT = 500     # a value anywhere else
EVENT_LIMIT = 1000   # a whole Kubernetes Event message (the API keeps 1024)

ELLIPSIS = "…"

# Characters that are never shown as themselves: C0, DEL and C1 controls (newlines, ESC,
# CSI, BEL, backspace...), the Unicode line and paragraph separators (a line break to
# JavaScript and to some log viewers), format characters (bidirectional overrides that
# reorder what a reviewer sees, zero-width characters) and lone surrogates (which cannot
# even be written as UTF-8).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A quick test that most strings pass without a per-character look-up.
_PLAIN = re.compile(r"[ -~]*")


def _escape_char(c: str) -> str:
    """One character as itself, or as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    if unicodedata.category(c) not in _ESCAPED_CATEGORIES:
        return c
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def escape_controls(s: str) -> str:
    """``s`` with every control, separator and format character shown as an escape.

    Everything else, non-ASCII letters included, stays as it is: the point is that nothing
    invisible or line-breaking survives, not that the text becomes ASCII. Backslashes are
    not doubled, so the result is for reading, not for decoding: the exact value is kept
    where it is stored (the record, the JSON output, the audit log).
    """
    if _PLAIN.fullmatch(s):
        return s
    return "".join(map(_escape_char, s))


def _fitting_prefix(s: str, budget: int) -> str:
    """The escaped form of the longest prefix of ``s`` whose escaped form fits ``budget``:
    a cut never falls in the middle of an escape."""
    out: list[str] = []
    used = 0
    for c in s:
        e = _escape_char(c)
        if used + len(e) > budget:
            break
        out.append(e)
        used += len(e)
    return "".join(out)


def clip(s: str, limit: int) -> str:
    """``s`` escaped (``escape_controls``) and at most ``limit`` characters long.

    When it is longer, it is cut and ends with an ellipsis and the original length
    (``… (1234 chars)``), so a reader knows something is missing and how much. The result
    never exceeds ``limit``: every medium can budget its own space.
    """
    if limit <= 0:
        return ""
    escaped = escape_controls(s)
    if len(escaped) <= limit:
        return escaped
    note = f"{ELLIPSIS} ({len(s)} chars)"
    if limit <= len(note):  # no room for the note: the ellipsis alone
        return _fitting_prefix(s, max(limit - 1, 0)) + ELLIPSIS
    return _fitting_prefix(s, limit - len(note)) + note


def _code_span(s: str) -> str:
    """``s`` (already free of line breaks) as a CommonMark code span nothing inside closes.

    The fence is one backtick longer than the longest run of backticks in ``s``, so no run
    inside can close it. The content is padded with a space on each side when it starts or
    ends with a backtick (which would otherwise join the fence) or a space (CommonMark
    strips one space from each side when both are there, unless the content is only
    spaces): the padding is what is stripped, and the content shows exactly as it is.
    Inside a code span nothing is markup: no link, image, mention, HTML or emphasis.
    """
    if not s:
        return "` `"  # an empty span is not a code span in CommonMark
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    if s.strip(" ") and (s[0] in "` " or s[-1] in "` "):
        s = f" {s} "
    return f"{fence}{s}{fence}"


def md_code(s: str, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text for Markdown outside tables (headings, list items, paragraphs, pull
    request titles): escaped, truncated, inside a code span it cannot close.

    ``limit`` bounds the content of the span (the fence is extra).
    """
    return _code_span(clip(s, limit))


def md_cell(s: str, limit: int = CELL_LIMIT) -> str:
    """Untrusted text for a GFM table cell: ``md_code`` with every ``|`` written ``\\|``.

    GFM splits a row on ``|`` before it looks for code spans, so a pipe inside a code span
    would still start a new cell; ``\\|`` is the escape GFM honours in a cell, code spans
    included (the backslash is removed before the span is rendered). Outside a table the
    backslash would show: use ``md_code`` there.
    """
    return _code_span(clip(s, limit)).replace("|", "\\|")


def said(e: BaseException) -> str:
    """What an exception says, even when saying it fails (an argument whose ``str``
    raises, such as an integer past 4,300 digits): the reports of failures go through
    here, so reporting one never fails in turn."""
    try:
        return str(e)
    except Exception:
        return f"(a {type(e).__name__} whose message cannot be shown)"


def one_line(s: str, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text for a commit message, an Event message or a log line: one line,
    every control character escaped (a value cannot forge a second log line, a trailer
    in a commit message, or an escape sequence in whatever shows the log), truncated."""
    return clip(s, limit)


def terminal(s: str, limit: int = TEXT_LIMIT) -> str:
    """Untrusted text for the terminal (the summary table, error lines): no escape
    sequence (ESC, CSI, OSC, BEL, backspace, carriage return) can move the cursor, recolor,
    retitle or overwrite what was printed; one line; truncated."""
    return clip(s, limit)
