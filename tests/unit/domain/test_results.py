"""Batch results and their renderings (``reconciler.core.results``).

Cases covered:
- ``ItemResult.to_json``: keys ``id``, ``kind``, ``phase``, ``decision`` (``allowed``,
  ``mode``, ``reasons``, ``warnings``, ``policyRevision`` when known; ``None`` without a
  decision), ``errors`` as
  ``{field, reason}``, ``changes`` (resources and replicas), ``branch``, ``commit``,
  ``pullRequest``, ``file``/``lines``; optional keys absent when empty; JSON-serializable;
- ``summary_table``: a header plus one row per item, in order; mode only for allowed items;
  the reason column shows field errors, then deny reasons, then the message, truncated to
  80 characters; a newline in a message adds a line to the table;
- ``pull_request_body``: per-workload section with container before -> after rows
  (``(unset)`` for new keys), replicas before -> after (``(unset, 1)`` for an absent key),
  savings per item and in total (changed items only), decision mode and policy revision,
  warnings,
  file and lines, the refused items with their reasons, the recommendation ids, the
  rollback section naming branch and base; items without a commit are not listed as
  applied; the same input renders the same bytes;
- a pipe ``|`` or a newline in a reason, a target or a warning cannot break the Markdown
  table or list; a pipe in a value read from the target's manifest cannot break the
  before/after table;
- untrusted text never becomes markup (``domain/text.py``): a hostile string (image, link,
  autolink, mentions, raw HTML, backticks, a pipe, a newline and a heading, ESC) in any
  field (id, namespace, target, container, the values before and after, a warning, a deny
  reason, a field error, a message, a file path) renders, through markdown-it in GFM-like
  mode, with no image, link or HTML of its own and every marker inside ``<code>``; values
  and warnings are code spans, a newline in a warning shows as ``\\n``;
- ``summary_table``: a hostile id, target or reason (ESC, CSI, OSC, BEL, backspace, CR,
  newline, U+2028) leaves no control character and one line per row; long values are cut
  with an ellipsis and the original length;
- ``pull_request_title`` counts changed items and names their workloads in code spans;
  a hostile name stays inside its span, on one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from reconciler.domain import decision, errors, model, planner, results

ALLOW = decision.Decision(allow=True, mode="gitops", warnings=("window closes at 18:00",),
                          decision_id="dec-42", policy_revision="sha256:00aa11bb22cc33dd")
DENY = decision.Decision(
    allow=False, mode="audit",
    deny=(decision.Denial("guardrails.cpu", "request below 10m | floor\nsee runbook"),
          decision.Denial("scope", "namespace kube-system is excluded")),
)


def _plan(rec_id: str = "rec-1", name: str = "cartservice",
          edits: tuple[planner.ValueEdit, ...] = (), replicas: tuple[int | None, int] | None = None,
          ) -> planner.Plan:
    return planner.Plan(rec_id=rec_id, kind="Deployment", namespace="default", name=name,
                        resources=edits, replicas=replicas)


def _applied() -> results.ItemResult:
    return results.ItemResult(
        id="rec-1", namespace="default", target="Deployment/cartservice",
        phase=model.APPLYING, decision=ALLOW,
        plan=_plan(edits=(
            planner.ValueEdit("server", "requests", "cpu", "200m", "100m"),
            planner.ValueEdit("server", "limits", "memory", None, "128Mi"),
        ), replicas=(2, 4)),
        savings=model.Savings(42.30), file="apps/cart.yaml", lines=[31, 34],
        branch="dakr/rec-1", commit="0123abcd", pull_request="https://forge/pr/7",
    )


def _applied_2() -> results.ItemResult:
    return results.ItemResult(
        id="rec-2", namespace="shop", target="Deployment/frontend", phase=model.APPLYING,
        decision=decision.Decision(allow=True, mode="gitops"),
        plan=_plan("rec-2", "frontend", replicas=(None, 3)),
        savings=model.Savings(10.0), branch="dakr/rec-1", commit="0123abcd",
    )


def _rejected() -> results.ItemResult:
    return results.ItemResult(id="rec-3", namespace="default", target="Deployment/ad|service",
                              phase=model.REJECTED, decision=DENY)


def _invalid() -> results.ItemResult:
    return results.ItemResult(
        id="rec-4", phase=model.FAILED,
        errors=[errors.FieldError("spec.replicas", "must be an integer | got string"),
                errors.FieldError("spec.action", "unknown action\n'Delete'")],
    )


def _pending() -> results.ItemResult:
    return results.ItemResult(id="rec-5", target="Deployment/cart", phase=model.PENDING)


def test_to_json_full() -> None:
    out = _applied().to_json()
    assert out == {
        "id": "rec-1",
        "kind": model.WORKLOAD,
        "phase": model.APPLYING,
        "namespace": "default",
        "target": "Deployment/cartservice",
        "decision": {"allowed": True, "mode": "gitops", "reasons": [],
                     "warnings": ["window closes at 18:00"],
                     "policyRevision": "sha256:00aa11bb22cc33dd"},
        "errors": [],
        "changes": [
            {"container": "server", "field": "requests.cpu", "old": "200m", "new": "100m"},
            {"container": "server", "field": "limits.memory", "old": None, "new": "128Mi"},
            {"field": "replicas", "old": 2, "new": 4},
        ],
        "file": "apps/cart.yaml",
        "lines": [31, 34],
        "branch": "dakr/rec-1",
        "commit": "0123abcd",
        "pullRequest": "https://forge/pr/7",
    }
    assert json.loads(json.dumps(out)) == out


def test_to_json_denied_and_invalid() -> None:
    denied = _rejected().to_json()
    assert denied["decision"] == {
        "allowed": False, "mode": "audit", "warnings": [],
        "reasons": ["guardrails.cpu: request below 10m | floor\nsee runbook",
                    "scope: namespace kube-system is excluded"],
    }
    assert denied["errors"] == []
    invalid = _invalid().to_json()
    assert invalid["decision"] is None
    assert invalid["errors"] == [
        {"field": "spec.replicas", "reason": "must be an integer | got string"},
        {"field": "spec.action", "reason": "unknown action\n'Delete'"},
    ]
    for key in ("branch", "commit", "pullRequest", "changes", "file", "lines", "namespace",
                "target", "message"):
        assert key not in invalid


def test_to_json_empty_plan_has_no_changes() -> None:
    item = results.ItemResult(id="rec-6", plan=_plan(), phase=model.APPLIED)
    assert "changes" not in item.to_json()


ALL = [_applied, _applied_2, _rejected, _invalid, _pending]


def _clean_rejected() -> results.ItemResult:
    return results.ItemResult(
        id="rec-3", namespace="default", target="Deployment/adservice", phase=model.REJECTED,
        decision=decision.Decision(allow=False, mode="audit", deny=(
            decision.Denial("guardrails.cpu", "request below 10m"),)))


def _clean_invalid() -> results.ItemResult:
    return results.ItemResult(id="rec-4", phase=model.FAILED, errors=[
        errors.FieldError("spec.replicas", "must be an integer, got string")])


def test_summary_table_rows() -> None:
    items = [_applied(), _applied_2(), _clean_rejected(), _clean_invalid(), _pending()]
    lines = results.summary_table(items).splitlines()
    assert len(lines) == len(items) + 1
    assert lines[0].split() == ["ID", "TARGET", "PHASE", "MODE", "CHANGES", "SAVINGS", "REASON"]
    for line, it in zip(lines[1:], items, strict=True):
        assert line.startswith(it.id + " ")
    applied = lines[1]
    assert "default/Deployment/cartservice" in applied
    assert "gitops" in applied
    assert "3 value(s)" in applied
    assert "$42.30/month" in applied
    rejected = lines[3]
    assert "gitops" not in rejected and "audit" not in rejected  # mode only when allowed
    assert "guardrails.cpu" in rejected
    assert "spec.replicas: must be an integer" in lines[4]


def test_summary_table_truncates_long_reasons() -> None:
    item = results.ItemResult(id="rec-7", phase=model.FAILED, message="x" * 200)
    row = results.summary_table([item]).splitlines()[1]
    note = "… (200 chars)"
    assert row.endswith("x" * (results.REASON_WIDTH - len(note)) + note)
    assert "x" * (results.REASON_WIDTH - len(note) + 1) not in row


def test_summary_table_empty() -> None:
    assert results.summary_table([]).splitlines()[0].startswith("ID")
    assert len(results.summary_table([]).splitlines()) == 1


@pytest.mark.parametrize("make", [
    lambda: results.ItemResult(id="rec-8", phase=model.FAILED, message="push failed\nhint: x"),
    _rejected,  # a deny reason with a newline
    _invalid,   # a field error reason with a newline
], ids=["message", "deny-reason", "field-error"])
def test_summary_table_newline_keeps_one_row(make: Callable[[], results.ItemResult]) -> None:
    items = [make(), _pending()]
    assert len(results.summary_table(items).splitlines()) == 3


def _body(items: list[results.ItemResult]) -> str:
    return results.pull_request_body(items, branch="dakr/batch-1", base="main")


def test_pull_request_body_content() -> None:
    body = _body([f() for f in ALL])
    assert "**2** recommendation(s)" in body
    assert "**$52.30/month**" in body  # changed items only
    assert "### `default/Deployment/cartservice`" in body
    assert "| container | resource | before | after |" in body
    assert "| `server` | `requests.cpu` | `200m` | `100m` |" in body
    assert "| `server` | `limits.memory` | (unset) | `128Mi` |" in body
    assert "Replicas: 2 → 4" in body
    assert "### `shop/Deployment/frontend`" in body
    assert "Replicas: (unset, 1) → 3" in body
    assert ("- recommendation `rec-1`; projected savings $42.30/month; policy: allowed, "
            "mode `gitops`, revision `sha256:00aa11bb22cc33dd`") in body
    assert "- warning: `window closes at 18:00`" in body
    assert "- file: `apps/cart.yaml` (lines 31, 34)" in body
    # Refused items, with their reasons
    assert "### Not applied" in body
    assert "rec-3" in body and "rec-4" in body
    assert "namespace kube-system is excluded" in body
    assert "spec.replicas: must be an integer" in body
    assert "rec-5" not in body  # pending: neither applied nor refused
    # Ids and rollback
    assert "Recommendation ids: `rec-1`, `rec-2`" in body
    assert "### Rollback" in body
    assert "`dakr/batch-1`" in body and "on `main`" in body
    assert "status.previous" in body


def test_pull_request_body_orders_sections() -> None:
    body = _body([f() for f in ALL])
    positions = [body.index(s) for s in (
        "### `default/Deployment/cartservice`", "### `shop/Deployment/frontend`",
        "### Not applied", "### Rollback", "Recommendation ids:")]
    assert positions == sorted(positions)


def test_pull_request_body_skips_items_without_commit() -> None:
    item = _applied()
    item.commit = ""
    body = _body([item, _applied_2()])
    assert "cartservice" not in body
    assert "**1** recommendation(s)" in body
    assert "**$10.00/month**" in body


def test_pull_request_body_is_deterministic() -> None:
    assert _body([f() for f in ALL]) == _body([f() for f in ALL])


_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _table_blocks(body: str) -> list[list[str]]:
    """Consecutive lines that start with '|' (Markdown tables)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    # CommonMark line endings: LF, CR LF, or a CR alone.
    for line in re.split(r"\r\n|\r|\n", body):
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _assert_tables_intact(body: str, expected_rows: dict[str, int]) -> None:
    blocks = _table_blocks(body)
    by_header = {b[0]: b for b in blocks}
    for header, rows in expected_rows.items():
        block = by_header[header]
        assert len(block) == rows + 2, block  # header, separator, rows
        cells = len(_UNESCAPED_PIPE.findall(header))
        for line in block:
            assert len(_UNESCAPED_PIPE.findall(line)) == cells, line
            assert line.endswith("|"), line


@pytest.mark.parametrize(
    "reason",
    ["a | b", "first line\nsecond line", "| leading", "trailing |", "x\n| --- | --- |\ny",
     "||||",
     pytest.param("a\r\nb"),
     pytest.param("a\rb")],
)
def test_reason_cannot_break_the_table(reason: str) -> None:
    items = [
        _applied(),
        results.ItemResult(id="rec-9", target="Deployment/a", phase=model.REJECTED,
                           decision=decision.Decision(
                               allow=False, deny=(decision.Denial("r", reason),))),
        results.ItemResult(id="rec-10", phase=model.FAILED,
                           errors=[errors.FieldError("spec.source", reason)]),
        results.ItemResult(id="rec-11", phase=model.FAILED, message=reason),
        _rejected(),
    ]
    body = _body(items)
    _assert_tables_intact(body, {
        "| recommendation | target | phase | reason |": 4,
        "| container | resource | before | after |": 2,
    })


def test_warning_with_newline_stays_one_list_item() -> None:
    item = _applied()
    item.decision = decision.Decision(allow=True, mode="gitops",
                                      warnings=("line one\n## injected heading",))
    body = _body([item])
    assert "\n## injected heading" not in body
    assert "- warning: `line one\\n## injected heading`" in body


def test_target_value_cannot_break_the_table() -> None:
    item = _applied()
    item.plan = _plan(edits=(planner.ValueEdit("server", "requests", "cpu", "1|2\n| x", "1"),))
    _assert_tables_intact(_body([item]), {"| container | resource | before | after |": 1})


def test_pull_request_title() -> None:
    assert results.pull_request_title([f() for f in ALL]) == (
        "dakr: apply 2 recommendation(s) to `cartservice`, `frontend`")
    assert results.pull_request_title([_rejected()]) == (
        "dakr: apply 0 recommendation(s) to no workloads")
    many = []
    for i, name in enumerate(["a", "b", "c", "d", "e"]):
        it = _applied_2()
        it.id, it.target = f"rec-{i}", f"Deployment/{name}"
        many.append(it)
    assert results.pull_request_title(many) == (
        "dakr: apply 5 recommendation(s) to `a`, `b`, `c` and 2 more")


HOSTILE = ("![x](https://evil.example/p.png) @somebody @org/team "
           "<img src=x onerror=alert(1)> ``tick` | pipe\n## heading \x1b[31mred")
_MARKERS = ("evil.example", "@somebody", "@org/team", "onerror", "heading", "tick")


def _outside_code(html: str) -> str:
    return re.sub(r"<code>.*?</code>", "", html, flags=re.S)


def _hostile_item(field: str) -> list[results.ItemResult]:
    applied, refused = _applied(), _rejected()
    assert applied.plan is not None
    if field == "id":
        applied.id = refused.id = HOSTILE
    elif field == "namespace":
        applied.namespace = HOSTILE
    elif field == "target":
        applied.target = refused.target = f"Deployment/{HOSTILE}"
    elif field in ("container", "before", "after"):
        e = applied.plan.resources[0]
        e = planner.ValueEdit(HOSTILE if field == "container" else e.container, e.section,
                              e.resource, HOSTILE if field == "before" else e.old,
                              HOSTILE if field == "after" else e.new)
        applied.plan = _plan(edits=(e,))
    elif field == "warning":
        applied.decision = decision.Decision(allow=True, mode="gitops", warnings=(HOSTILE,))
    elif field == "deny":
        refused.decision = decision.Decision(allow=False,
                                             deny=(decision.Denial("r", HOSTILE),))
    elif field == "field-error":
        refused.decision = None
        refused.errors = [errors.FieldError(f"spec.{HOSTILE}", f"{HOSTILE!r} is not valid")]
    elif field == "message":
        refused.decision, refused.message = None, HOSTILE
    elif field == "file":
        applied.file = f"apps/{HOSTILE}.yaml"
    return [applied, refused]


@pytest.mark.parametrize("field", [
    "id", "namespace", "target", "container", "before", "after", "warning", "deny",
    "field-error", "message", "file"])
def test_hostile_text_never_becomes_markup(field: str) -> None:
    from markdown_it import MarkdownIt

    body = _body(_hostile_item(field))
    html = MarkdownIt("gfm-like").render(body)
    outside = _outside_code(html)
    assert "<img" not in html and "<a " not in html and "<h2>heading" not in html
    assert "<h2" not in outside.replace("<h2>dakr reconciler", "")
    for marker in _MARKERS:
        assert marker not in outside, (marker, outside)
    assert "evil.example" in html  # shown, inside code
    assert "\x1b" not in body and "\\x1b[31m" in body
    _assert_tables_intact(body, {"| recommendation | target | phase | reason |": 1})


def test_summary_table_has_no_control_characters() -> None:
    bad = "a\x1b[2J\x1b]0;title\x07\x08\rb\nc\u2028d\x9b1m"
    items = [results.ItemResult(id=bad, namespace=bad, target=bad, phase=model.FAILED,
                                message=bad), _pending()]
    table = results.summary_table(items)
    assert len(table.splitlines()) == 3
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", table)
    assert "a\\x1b[2J\\x1b]0;title\\x07\\x08\\rb\\nc\\u2028d\\x9b1m" in table


def test_summary_table_bounds_ids_and_targets() -> None:
    items = [results.ItemResult(id="i" * 300, target="t" * 300, phase=model.FAILED)]
    row = results.summary_table(items).splitlines()[1]
    assert "(300 chars)" in row and "i" * 300 not in row and "t" * 300 not in row
    assert len(row) < results.ID_WIDTH + results.TARGET_WIDTH + 40


def test_pull_request_title_hostile_name() -> None:
    item = _applied_2()
    item.target = f"Deployment/{HOSTILE}"
    title = results.pull_request_title([item])
    assert "\n" not in title and "\x1b" not in title
    assert title.startswith("dakr: apply 1 recommendation(s) to ``")
    assert len(title) < 120
