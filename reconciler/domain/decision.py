"""Policy decisions as data.

The decision document is ``data.dakr.decision``. Whatever an engine returns is turned into
a ``Decision`` by ``from_document``, which fails closed: anything that is not a well-formed
allow is a deny, so a broken policy or an unreachable OPA can never cause a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("gitops", "direct", "audit")
POLICY_UNAVAILABLE = "PolicyUnavailable"
FALLBACKS = ("none", "recreate")
PERSISTS = ("webhook", "template")
MOVES = ("none", "checkpoint")
CONSOLIDATIONS = ("mark", "drain")


@dataclass(frozen=True)
class LivePolicy:
    """How a LiveMigration is carried out (``execution.liveMigration`` of the decision).

    The defaults are the library's: when a pod cannot be resized in place nothing else is
    tried (``fallback`` none), and pods created later get the new values from the
    admission webhook (``persist`` webhook), so no pod restarts unless a team says so."""

    fallback: str = "none"
    persist: str = "webhook"
    move: str = "none"  # checkpoint: an Infeasible pod moves with its state, if the cluster can
    max_pods_resizing: int = 1
    deferred_timeout: float = 300.0
    in_progress_timeout: float = 3600.0
    # GitOps mode: the running pods are resized in place as soon as the pull request is
    # open (it still carries the template change). Direct mode always resizes in place.
    resize_running: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "persist": self.persist, "move": self.move,
                "maxPodsResizing": self.max_pods_resizing,
                "deferredTimeoutSeconds": self.deferred_timeout,
                "inProgressTimeoutSeconds": self.in_progress_timeout,
                "resizeRunning": self.resize_running}


@dataclass(frozen=True)
class Denial:
    rule: str
    msg: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "msg": self.msg}


@dataclass(frozen=True)
class Decision:
    allow: bool
    mode: str = "audit"
    deny: tuple[Denial, ...] = ()
    warnings: tuple[str, ...] = ()
    bounds: dict[str, Any] = field(default_factory=dict)
    decision_id: str = ""
    # Which policy set decided: a digest of the modules and data.config the engine had
    # loaded (``engine.revision``); empty when the engine could not say.
    policy_revision: str = ""
    # How the change is carried out, where there is a choice (``execution``): set for a
    # LiveMigration (``live``) and a node group (``node_consolidation``: mark | drain).
    live: LivePolicy | None = None
    node_consolidation: str = ""

    @property
    def policy_unavailable(self) -> bool:
        """No policy answer (the engine or the sidecar failed), as opposed to a refusal:
        the same question may get an answer later, so it is asked again."""
        return (not self.allow and bool(self.deny)
                and all(d.rule == POLICY_UNAVAILABLE for d in self.deny))

    @property
    def reasons(self) -> list[str]:
        """Human-readable reasons, deny first: what a reviewer or an audit line shows."""
        return [f"{d.rule}: {d.msg}" for d in self.deny]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "allow": self.allow,
            "mode": self.mode,
            "deny": [d.to_dict() for d in self.deny],
            "warnings": list(self.warnings),
        }
        if self.bounds:
            out["bounds"] = self.bounds
        if self.decision_id:
            out["decision_id"] = self.decision_id
        if self.policy_revision:
            out["policy_revision"] = self.policy_revision
        execution: dict[str, Any] = {}
        if self.live is not None:
            execution["liveMigration"] = self.live.to_dict()
        if self.node_consolidation:
            execution["nodeConsolidation"] = self.node_consolidation
        if execution:
            out["execution"] = execution
        return out


def unavailable(msg: str) -> Decision:
    """The fail-closed answer: no policy answer means no change."""
    return Decision(allow=False, mode="audit", deny=(Denial(POLICY_UNAVAILABLE, msg),))


def from_document(doc: Any, decision_id: str = "", policy_revision: str = "") -> Decision:
    """Turn a raw ``data.dakr.decision`` value into a Decision, failing closed.

    A non-object, a missing or non-boolean ``allow``, an unknown ``mode`` or malformed
    ``deny``/``warnings`` all become ``unavailable``: a policy that answers in the wrong
    shape is as good as no policy.
    """
    if not isinstance(doc, dict):
        return unavailable(f"decision is {type(doc).__name__}, not an object")
    allow = doc.get("allow")
    if not isinstance(allow, bool):
        return unavailable("decision has no boolean 'allow'")
    mode = doc.get("mode", "audit")
    if mode not in MODES:
        return unavailable(f"decision mode {mode!r} is not one of {', '.join(MODES)}")
    raw_deny = doc.get("deny", [])
    raw_warn = doc.get("warnings", [])
    if not isinstance(raw_deny, list) or not isinstance(raw_warn, list):
        return unavailable("decision 'deny' and 'warnings' must be lists")
    deny: list[Denial] = []
    for d in raw_deny:
        if isinstance(d, dict) and isinstance(d.get("rule"), str):
            deny.append(Denial(d["rule"], str(d.get("msg", ""))))
        elif isinstance(d, str):
            deny.append(Denial("policy", d))
        else:
            return unavailable("decision 'deny' entries must be {rule, msg} objects")
    bounds = doc.get("bounds", {})
    if not isinstance(bounds, dict):
        return unavailable("decision 'bounds' must be an object")
    execution = doc.get("execution", {})
    if not isinstance(execution, dict):
        return unavailable("decision 'execution' must be an object")
    try:
        live = _live(execution.get("liveMigration"))
    except ValueError as e:
        return unavailable(f"decision 'execution.liveMigration': {e}")
    consolidation = execution.get("nodeConsolidation", "")
    if consolidation not in ("", *CONSOLIDATIONS):
        return unavailable(f"decision 'execution.nodeConsolidation' {consolidation!r} is not "
                           f"one of {', '.join(CONSOLIDATIONS)}")
    # A policy that says allow but also lists deny reasons is contradictory: deny wins.
    allowed = allow and not deny
    return Decision(
        allow=allowed,
        mode=mode,
        deny=tuple(sorted(deny, key=lambda d: (d.rule, d.msg))),
        warnings=tuple(str(w) for w in raw_warn),
        bounds=bounds,
        decision_id=decision_id,
        policy_revision=policy_revision,
        live=live,
        node_consolidation=str(consolidation),
    )


def _live(raw: Any) -> LivePolicy | None:
    """``execution.liveMigration`` as a LivePolicy; a key left out keeps its default, a
    value of the wrong shape is an error (the whole decision then fails closed)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("must be an object")
    base = LivePolicy()
    fallback = raw.get("fallback", base.fallback)
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback {fallback!r} is not one of {', '.join(FALLBACKS)}")
    persist = raw.get("persist", base.persist)
    if persist not in PERSISTS:
        raise ValueError(f"persist {persist!r} is not one of {', '.join(PERSISTS)}")
    move = raw.get("move", base.move)
    if move not in MOVES:
        raise ValueError(f"move {move!r} is not one of {', '.join(MOVES)}")
    numbers: dict[str, float] = {}
    for key, default in (("maxPodsResizing", base.max_pods_resizing),
                         ("deferredTimeoutSeconds", base.deferred_timeout),
                         ("inProgressTimeoutSeconds", base.in_progress_timeout)):
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"{key} {v!r} is not a positive number")
        numbers[key] = float(v)
    resize_running = raw.get("resizeRunning", base.resize_running)
    if not isinstance(resize_running, bool):
        raise ValueError(f"resizeRunning {resize_running!r} is not true or false")
    return LivePolicy(fallback=str(fallback), persist=str(persist), move=str(move),
                      resize_running=resize_running,
                      max_pods_resizing=max(1, int(numbers["maxPodsResizing"])),
                      deferred_timeout=numbers["deferredTimeoutSeconds"],
                      in_progress_timeout=numbers["inProgressTimeoutSeconds"])
