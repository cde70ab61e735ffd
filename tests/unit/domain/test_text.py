"""Untrusted text made inert per medium (``reconciler.domain.text``).

Cases, as tables:
- ``escape_controls``: printable text (ASCII and not: accents, CJK, emoji) unchanged;
  ``\\n``, ``\\r``, ``\\t`` as two characters; other C0 controls, DEL and C1 controls
  (NUL, ESC, BEL, backspace, CSI U+009B) as ``\\xNN``; U+2028/U+2029, bidirectional
  overrides, zero-width and BOM characters as ``\\uNNNN``; a lone surrogate and a
  format character beyond the BMP as escapes; the empty string; never a control
  character in the result; idempotent;
- ``clip``: text within the limit unchanged (exactly at it too); longer text cut with an
  ellipsis and the original length, never longer than the limit, never cut in the middle
  of an escape; a limit too small for the note still bounded;
- ``md_code``: a code span whose fence is longer than the longest backtick run inside,
  padded when the content starts or ends with a backtick or a space; newlines, CR, ESC,
  U+2028 and NUL made visible; long strings truncated inside the span; the empty string
  an (empty-looking) code span; non-ASCII kept; and, rendered by markdown-it (CommonMark),
  the span's text is exactly the escaped input: nothing inside became markup;
- ``md_cell``: the same with every ``|`` escaped; in a GFM table (markdown-it GFM-like)
  each hostile cell stays one cell and renders its text exactly, with no link, image or
  HTML;
- ``said``: what an exception says, and a stand-in when saying it fails (a message past
  the interpreter's digit limit);
- ``one_line`` and ``terminal``: one line, no control character (ESC sequences, OSC, BEL,
  backspace, CR, U+2028), truncated at the limit, non-ASCII kept, empty stays empty.
"""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from reconciler.domain import text

# Anything a terminal, a log reader or a commit message would act on.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                     r"\u2066-\u2069\ufeff]")

HOSTILE = ("![x](https://evil.example/p.png) @somebody @org/team "
           "<img src=x onerror=alert(1)> <https://auto.example> www.evil.example [l](j:x)")


@pytest.mark.parametrize(("raw", "shown"), [
    ("cartservice", "cartservice"),
    ("", ""),
    ("café 日本語 ✓ 🚀", "café 日本語 ✓ 🚀"),
    ("a\nb", "a\\nb"),
    ("a\r\nb", "a\\r\\nb"),
    ("a\tb", "a\\tb"),
    ("nul\x00", "nul\\x00"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("abc\x08\x08x", "abc\\x08\\x08x"),
    ("del\x7f", "del\\x7f"),
    ("csi\x9b2J", "csi\\x9b2J"),
    ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
    ("bidi\u202eevil\u202c", "bidi\\u202eevil\\u202c"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("soft\u00adhyphen", "soft\\xadhyphen"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("lone\ud800", "lone\\ud800"),
    ("back\\slash `tick` | pipe", "back\\slash `tick` | pipe"),
], ids=lambda v: repr(v)[:24])
def test_escape_controls(raw: str, shown: str) -> None:
    out = text.escape_controls(raw)
    assert out == shown
    assert not CONTROL.search(out)
    assert text.escape_controls(out) == out  # idempotent
    out.encode("utf-8")  # always writable


@pytest.mark.parametrize(("raw", "limit", "shown"), [
    ("short", 10, "short"),
    ("x" * 10, 10, "x" * 10),
    ("x" * 11, 10, "x" * 9 + "…"),  # no room for the note
    ("x" * 100, 30, "x" * 17 + "… (100 chars)"),
    ("x" * 1000, 30, "x" * 16 + "… (1000 chars)"),
    ("a\nb" * 50, 31, "a\\nb" * 4 + "a… (150 chars)"),  # no escape cut in half
    ("\x1b" * 50, 30, "\\x1b" * 4 + "… (50 chars)"),
    ("日本" * 100, 30, "日本" * 8 + "日… (200 chars)"),
    ("", 5, ""),
    ("abc", 0, ""),
], ids=lambda v: repr(v)[:16])
def test_clip(raw: str, limit: int, shown: str) -> None:
    out = text.clip(raw, limit)
    assert out == shown
    assert len(out) <= max(limit, 0)


def test_clip_never_exceeds_the_limit() -> None:
    raw = "é\n\x1b`|" * 400
    for limit in range(0, 200):
        out = text.clip(raw, limit)
        assert len(out) <= limit
        assert not CONTROL.search(out)


def _span_text(md: str) -> str:
    """The text of the only code span markdown-it finds in ``md`` (CommonMark)."""
    rendered = MarkdownIt("commonmark").renderInline(md)
    spans = re.findall(r"<code>(.*?)</code>", rendered, flags=re.S)
    assert len(spans) == 1, rendered
    assert re.sub(r"<code>.*?</code>", "", rendered, flags=re.S) == "", rendered
    return html.unescape(spans[0])


@pytest.mark.parametrize(("raw", "md"), [
    ("cartservice", "`cartservice`"),
    ("", "` `"),
    ("a`b", "``a`b``"),
    ("a``b`c", "```a``b`c```"),
    ("`start", "`` `start ``"),
    ("end`", "`` end` ``"),
    ("`", "`` ` ``"),
    (" spaced ", "`  spaced  `"),
    ("  ", "`  `"),
    ("a\nb", "`a\\nb`"),
    ("a\rb", "`a\\rb`"),
    ("\x1b[1mbold", "`\\x1b[1mbold`"),
    ("a\u2028b", "`a\\u2028b`"),
    ("nul\x00", "`nul\\x00`"),
    ("café", "`café`"),
    ("a|b", "`a|b`"),
], ids=lambda v: repr(v)[:20])
def test_md_code(raw: str, md: str) -> None:
    assert text.md_code(raw) == md


@pytest.mark.parametrize("raw", [
    HOSTILE, "`", "``", "a`b", "`a`", " `x` ", "```fence```", "<b>x</b>", "&amp; &lt;",
    "*em* _em_ **strong**", "\\`escaped\\`", "line\n# heading", "café 日本語", "x" * 2000,
    "a\x1b]8;;https://evil.example\x07link\x1b]8;;\x07", "@somebody", "  ", "a  ",
], ids=lambda v: repr(v)[:20])
def test_md_code_renders_exactly_its_text(raw: str) -> None:
    md = text.md_code(raw)
    assert "\n" not in md
    assert _span_text(md) == text.clip(raw, text.TEXT_LIMIT)


def test_md_code_truncates_inside_the_span() -> None:
    md = text.md_code("y" * 2000)
    assert md.startswith("`y") and md.endswith("… (2000 chars)`")
    assert len(md) == text.TEXT_LIMIT + 2
    assert len(text.md_code("y" * 2000, 50)) == 52


@pytest.mark.parametrize(("raw", "md"), [
    ("cartservice", "`cartservice`"),
    ("a|b", "`a\\|b`"),
    ("||", "`\\|\\|`"),
    ("`|`", "`` `\\|` ``"),
    ("a\\|b", "`a\\\\|b`"),
    ("a\n| --- |", "`a\\n\\| --- \\|`"),
    ("", "` `"),
], ids=lambda v: repr(v)[:20])
def test_md_cell(raw: str, md: str) -> None:
    assert text.md_cell(raw) == md


@pytest.mark.parametrize("raw", [
    HOSTILE, "a | b", "| leading", "trailing |", "x\n| --- | --- |\ny", "||||", "a\r\nb",
    "`|`", "a\\|b", "pipe ` | ` in ticks", "z" * 1000,
], ids=lambda v: repr(v)[:20])
def test_md_cell_stays_one_cell(raw: str) -> None:
    table = f"| a | b | c |\n| --- | --- | --- |\n| {text.md_cell(raw)} | mid | end |\n"
    rendered = MarkdownIt("gfm-like").render(table)
    cells = re.findall(r"<td>(.*?)</td>", rendered, flags=re.S)
    assert len(cells) == 3 and cells[1:] == ["mid", "end"], rendered
    span = re.fullmatch(r"<code>(.*)</code>", cells[0], flags=re.S)
    assert span is not None, cells[0]
    assert html.unescape(span.group(1)) == text.clip(raw, text.CELL_LIMIT)
    assert "<a " not in rendered and "<img" not in rendered


@pytest.mark.parametrize("helper", [text.one_line, text.terminal])
@pytest.mark.parametrize(("raw", "shown"), [
    ("rec-1", "rec-1"),
    ("", ""),
    ("café ✓", "café ✓"),
    ("a\nb", "a\\nb"),
    ("fake\r\n2026-01-01 INFO forged", "fake\\r\\n2026-01-01 INFO forged"),
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("ok\rEVIL", "ok\\rEVIL"),
    ("abc\x08\x08\x08xyz", "abc\\x08\\x08\\x08xyz"),
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("\x9b31m", "\\x9b31m"),
    ("nul\x00", "nul\\x00"),
], ids=lambda v: repr(v)[:20])
def test_one_line_and_terminal(helper: object, raw: str, shown: str) -> None:
    assert callable(helper)
    out = helper(raw)
    assert out == shown
    assert "\n" not in out and not CONTROL.search(out)


@pytest.mark.parametrize("helper", [text.one_line, text.terminal])
def test_one_line_and_terminal_truncate(helper: object) -> None:
    assert callable(helper)
    out = helper("\n" * 5000)
    assert len(out) == text.TEXT_LIMIT and out.endswith("… (5000 chars)")
    assert helper("q" * 100, 20) == "q" * 7 + "… (100 chars)"


class _Unshowable(Exception):
    def __str__(self) -> str:
        return str(10**5000)  # past the interpreter's digit limit: str() raises


@pytest.mark.parametrize(("error", "shown"), [
    (KeyError("bug"), "'bug'"),
    (ValueError("bad value"), "bad value"),
    (RecursionError(), ""),
    (_Unshowable(), "(a _Unshowable whose message cannot be shown)"),
])
def test_said_never_fails(error: BaseException, shown: str) -> None:
    assert text.said(error) == shown
