"""The platform's rollback requests: recorded on the recommendation, then carried out.

A request is acked once it is recorded (a ``RollbackRequested`` condition, durably stored),
so a dropped stream loses none; the operator carries it out and closes the condition with
what came of it (done, or refused with the reason), so none is carried out twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.adapters.store import port as store
from reconciler.domain import clock, errors, model, retry, status

ROLLBACK_REQUESTED = "RollbackRequested"


@dataclass(frozen=True)
class RollbackRequest:
    kind: str
    id: str
    reason: str


def _set_condition(st: store.Store, kind: str, rec_id: str, ok: bool, reason: str,
                   message: str) -> None:
    """Set the RollbackRequested condition on a stored recommendation (guarded, retried)."""
    cond = status.condition(ROLLBACK_REQUESTED, ok, reason, message, clock.rfc3339())

    def write(_: int) -> None:
        rec = st.get(kind, rec_id)
        if rec is None:
            raise errors.NotFoundError(f"{kind} {rec_id} is not known to this operator")
        st.update_status(kind, rec_id, status.set_condition(rec.status, cond),
                         rec.resource_version)

    retry.on_conflict(write, f"{kind} {rec_id} (rollback request not recorded)")


def request(st: store.Store, kind: str, rec_id: str, reason: str) -> None:
    """Record the platform's rollback request on the recommendation; the stream acks it once
    this returns (stored durably), and the next round carries it out. Unknown ids raise,
    which the stream turns into a nack naming the reason."""
    kind = kind or model.WORKLOAD
    if kind not in model.KINDS:
        raise errors.PermanentError(f"unknown recommendation kind {kind!r}")
    _set_condition(st, kind, rec_id, True, "PlatformRequest",
                   reason or "rollback requested by the platform")


def requested(st: store.Store) -> list[RollbackRequest]:
    """Rollback requests recorded and not yet carried out, oldest recommendation first."""
    out: list[RollbackRequest] = []
    for kind in model.KINDS:
        for r in st.list(kind=kind):
            for c in r.status.get("conditions") or []:
                if c.get("type") == ROLLBACK_REQUESTED and c.get("status") == "True":
                    out.append(RollbackRequest(r.kind, r.id, str(c.get("message", ""))))
    return out


def finish(st: store.Store, req: RollbackRequest, done: bool, message: str) -> None:
    """Close a request with what came of it: ``done`` (rolled back, a revert proposed, or
    nothing to roll back) or refused, with the reason; either way it is not tried again."""
    _set_condition(st, req.kind, req.id, False, "Done" if done else "Refused", message)
