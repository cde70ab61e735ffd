"""decision.from_document turns whatever a policy answered into a Decision, failing closed.

Cases covered:
- well-formed allow and deny documents, with and without warnings, bounds, decision_id;
- every malformed shape (non-object, missing/non-boolean allow, unknown mode, deny or
  warnings not lists, deny entries of the wrong type, bounds not an object) becomes
  PolicyUnavailable with allow False and mode audit;
- deny wins over a contradictory allow; string deny entries get rule "policy";
- deny entries come out sorted, reasons read "rule: msg", to_dict round-trips;
- unavailable() is a deny;
- execution: liveMigration parsed with defaults for keys left out, nodeConsolidation
  mark/drain, and every malformed execution value fails closed; to_dict round-trips it.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.domain import decision

OK: dict[str, Any] = {"allow": True, "mode": "direct", "deny": [], "warnings": []}


@pytest.mark.parametrize(
    ("doc", "allow", "mode", "rules"),
    [
        (OK, True, "direct", []),
        ({"allow": True, "mode": "gitops"}, True, "gitops", []),
        ({"allow": True}, True, "audit", []),
        ({"allow": False, "mode": "direct", "deny": [{"rule": "Cooldown", "msg": "m"}]},
         False, "direct", ["Cooldown"]),
        ({"allow": True, "mode": "direct", "deny": [{"rule": "X", "msg": "m"}]},
         False, "direct", ["X"]),
        ({"allow": False, "deny": ["plain reason"]}, False, "audit", ["policy"]),
        ({"allow": False, "deny": [{"rule": "B", "msg": "2"}, {"rule": "A", "msg": "1"}]},
         False, "audit", ["A", "B"]),
    ],
    ids=["allow", "gitops", "default mode", "deny", "allow with deny", "string deny", "sorted"],
)
def test_well_formed(doc: dict[str, Any], allow: bool, mode: str, rules: list[str]) -> None:
    d = decision.from_document(doc)
    assert d.allow is allow
    assert d.mode == mode
    assert [x.rule for x in d.deny] == rules


@pytest.mark.parametrize(
    "doc",
    [
        None,
        "allow",
        True,
        [OK],
        {},
        {"allow": "true", "mode": "direct"},
        {"allow": 1, "mode": "direct"},
        {"allow": True, "mode": "yolo"},
        {"allow": True, "mode": None},
        {"allow": True, "deny": "nope"},
        {"allow": True, "warnings": "careful"},
        {"allow": True, "deny": [42]},
        {"allow": True, "deny": [{"msg": "no rule"}]},
        {"allow": True, "bounds": [1]},
    ],
    ids=["null", "string", "bool", "list", "empty", "allow str", "allow int", "bad mode",
         "null mode", "deny str", "warnings str", "deny int", "deny no rule", "bounds list"],
)
def test_malformed_fails_closed(doc: Any) -> None:
    d = decision.from_document(doc)
    assert d.allow is False
    assert d.mode == "audit"
    assert [x.rule for x in d.deny] == [decision.POLICY_UNAVAILABLE]


def test_reasons_and_round_trip() -> None:
    doc = {"allow": False, "mode": "gitops", "deny": [{"rule": "Cooldown", "msg": "wait"}],
           "warnings": ["w"], "bounds": {"replicas": 3}}
    d = decision.from_document(doc, decision_id="d-1")
    assert d.reasons == ["Cooldown: wait"]
    assert d.to_dict() == {**doc, "decision_id": "d-1"}
    assert "bounds" not in decision.from_document(OK).to_dict()


def test_unavailable_is_a_deny() -> None:
    d = decision.unavailable("OPA down")
    assert (d.allow, d.mode, d.reasons) == (False, "audit", ["PolicyUnavailable: OPA down"])


LIVE_FULL = {"fallback": "recreate", "persist": "template", "move": "checkpoint",
             "maxPodsResizing": 2,
             "deferredTimeoutSeconds": 60, "inProgressTimeoutSeconds": 600,
             "resizeRunning": True}


@pytest.mark.parametrize(
    ("execution", "live", "consolidation"),
    [
        ({}, None, ""),
        ({"liveMigration": {}}, decision.LivePolicy(), ""),
        ({"liveMigration": LIVE_FULL}, decision.LivePolicy(
            fallback="recreate", persist="template", move="checkpoint", max_pods_resizing=2,
            deferred_timeout=60.0, in_progress_timeout=600.0, resize_running=True), ""),
        ({"nodeConsolidation": "mark"}, None, "mark"),
        ({"nodeConsolidation": "drain"}, None, "drain"),
    ],
)
def test_execution(execution: dict[str, Any], live: decision.LivePolicy | None,
                   consolidation: str) -> None:
    d = decision.from_document({**OK, "execution": execution})
    assert d.allow and d.live == live and d.node_consolidation == consolidation
    again = decision.from_document(d.to_dict())
    assert again.live == live and again.node_consolidation == consolidation


@pytest.mark.parametrize(
    ("execution", "fragment"),
    [
        ([], "'execution' must be an object"),
        ({"liveMigration": "fast"}, "must be an object"),
        ({"liveMigration": {"fallback": "evict"}}, "fallback 'evict'"),
        ({"liveMigration": {"persist": "annotation"}}, "persist 'annotation'"),
        ({"liveMigration": {"maxPodsResizing": 0}}, "maxPodsResizing 0"),
        ({"liveMigration": {"move": "evict"}}, "move 'evict'"),
        ({"liveMigration": {"deferredTimeoutSeconds": "5m"}}, "deferredTimeoutSeconds '5m'"),
        ({"liveMigration": {"inProgressTimeoutSeconds": True}}, "inProgressTimeoutSeconds"),
        ({"liveMigration": {"resizeRunning": "yes"}}, "resizeRunning 'yes'"),
        ({"nodeConsolidation": "delete"}, "'delete' is not one of mark, drain"),
    ],
)
def test_malformed_execution_fails_closed(execution: Any, fragment: str) -> None:
    d = decision.from_document({**OK, "execution": execution})
    assert not d.allow and d.policy_unavailable
    assert fragment in d.deny[0].msg
