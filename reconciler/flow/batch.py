"""The first stages of a batch, the same for every writer: intake (validate, store), the
supersede rule, and what a batch hands back.

Every stage turns the failure of one recommendation into a result for that recommendation;
only unusable settings or an unreachable repository or API server stop a batch. The store
is written before anything is decided, so what was taken in survives a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters.forge import port as forge
from reconciler.adapters.store import port as store
from reconciler.domain import clock, errors, model, results, status, supersede, validation
from reconciler.flow import report

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What one batch did: a result per recommendation and, in GitOps mode, the branch, its
    commit and the pull requests it opened or updated."""

    items: list[results.ItemResult] = field(default_factory=list)
    branch: str = ""
    commit: str = ""
    created_commit: bool = False
    pull_requests: list[forge.PullRequest] = field(default_factory=list)
    files_parsed: int = 0  # GitOps: repository files the index had to parse
    # Decided for the other writer (``decide.route``): the caller runs that writer on them.
    handoff: list[Work] = field(default_factory=list)
    # GitOps: LiveMigrations whose pull request is open and whose policy says
    # ``resizeRunning``: the caller resizes their running pods in place (direct/live.py).
    resize_now: list[Work] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [it.to_json() for it in self.items],
            "pullRequests": [{"number": p.number, "url": p.url, "branch": p.branch,
                              "state": p.state} for p in self.pull_requests],
            "branch": self.branch,
            "commit": self.commit,
            "createdCommit": self.created_commit,
            "filesParsed": self.files_parsed,
        }


@dataclass
class Work:
    """One valid recommendation on its way through the batch."""

    rec: model.Recommendation
    item: results.ItemResult
    document: dict[str, Any] = field(default_factory=dict)  # as received: what a handoff sends
    target: dict[str, Any] | None = None  # the manifest or the live object: what policy sees
    problem: str = ""  # why the target could not be found
    # Fields a newer recommendation for the same target sets: left to it (``rec`` is
    # already reduced to the rest).
    overridden: frozenset[supersede.Field] = frozenset()


def history(st: store.Store, kinds: set[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The last change applied to each target (what cooldown rules look at), read once per
    batch: one list per kind instead of one per recommendation."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind in sorted(kinds):
        for r in st.list(kind=kind, phase=model.APPLIED):
            key = model.target_key_of(r.kind, r.namespace, r.spec)
            at = str(r.status.get("appliedAt", ""))
            if key not in last or at > last[key]["at"]:
                last[key] = {"recommendationId": r.id, "at": at}
    return last


def intake(docs: Sequence[object], st: store.Store, batch: Batch) -> list[Work]:
    """Validate and store; return the recommendations that still need work, each reduced
    to the fields no newer recommendation for its target overrides."""
    valid: list[Work] = []
    for p in validation.parse_many(docs):
        if p.recommendation is None:
            batch.items.append(results.ItemResult(
                id=p.raw_id, phase=model.REJECTED, errors=list(p.errors),
                message="invalid recommendation: nothing applied"))
            _mark_invalid(st, docs[p.index], p)
            continue
        rec = p.recommendation
        item = results.ItemResult(id=rec.id, kind=rec.kind, namespace=rec.namespace,
                                  target=rec.target_label, savings=rec.projectedSavings)
        batch.items.append(item)
        st.upsert(rec.kind, rec.id, rec.namespace, rec.name, rec.spec_dict())
        doc = {k: v for k, v in rec.to_dict().items() if k != "status"}
        valid.append(Work(rec, item, document=doc))
    live: list[Work] = []
    for w in valid:
        stored = st.get(w.rec.kind, w.rec.id)
        if stored is not None and not stored.observed:
            live.append(w)  # its spec changed since the last decision: look again
            continue
        if stored is not None and stored.phase in (model.APPLIED, model.ROLLED_BACK,
                                                   model.SUPERSEDED):
            w.item.phase = stored.phase
            w.item.message = f"already {stored.phase.lower()}: nothing to do"
            continue
        if stored is not None and stored.phase == model.REJECTED and any(
                c.get("reason") == forge.REASON_CLOSED
                for c in stored.status.get("conditions", [])):
            # A reviewer closed its pull request: not proposed again until a newer
            # recommendation (another id, or this id with a new spec) comes.
            w.item.phase = model.REJECTED
            w.item.message = "its pull request was closed without merging: not proposed again"
            continue
        live.append(w)
    return _supersede(st, live)


IN_FLIGHT = (model.PENDING, model.APPROVED, model.APPLYING)
INVALID = "Invalid"


def _mark_invalid(st: store.Store, doc: object, p: validation.ParseResult) -> None:
    """An invalid document that is a stored record (a custom resource someone created, read
    back by the operator) gets its verdict on itself: Rejected, with a Valid=False
    condition naming every bad field, for its generation, so it is not looked at again
    until its spec changes. A document that merely shares a stored id (a file) leaves the
    stored record alone."""
    if not isinstance(doc, dict) or not p.raw_id or doc.get("kind") not in model.KINDS:
        return
    cur = st.get(str(doc["kind"]), p.raw_id)
    if cur is None or cur.spec != doc.get("spec"):
        return
    reason = "; ".join(str(e) for e in p.errors)
    message = f"invalid recommendation: {reason}"
    report.save_status(st, cur, model.Status(phase=model.REJECTED, message=message)
                       .with_condition(status.condition("Valid", False, INVALID, message,
                                                        clock.rfc3339())))


def _supersede(st: store.Store, live: list[Work]) -> list[Work]:
    """Field by field (``domain/supersede.py``): among one target's live recommendations
    (this batch's, and those still in flight in the store), a newer one overrides an older
    one in the fields both set; an older one whose every field is overridden is Superseded,
    the others keep what is theirs."""
    targets = {w.rec.target_key for w in live}
    mine = {(w.rec.kind, w.rec.id): w for w in live}
    order: dict[tuple[str, str], int] = {}
    others: dict[tuple[str, str], store.Record] = {}
    for kind in sorted({w.rec.kind for w in live}):
        for r in st.list(kind=kind):
            order[(r.kind, r.id)] = len(order)
            if (r.kind, r.id) not in mine and r.phase in IN_FLIGHT and \
                    model.target_key_of(r.kind, r.namespace, r.spec) in targets:
                others[(r.kind, r.id)] = r
    # Creation order is the store's list order; a document the store does not hold (a dry
    # run writes nothing) is newer than everything stored, in the order of the documents.
    rank = {key: order.get(key, len(order) + i) for i, key in enumerate([*others, *mine])}
    by_target: dict[tuple[str, str, str], list[tuple[int, model.Recommendation]]] = {}
    for key, w in mine.items():
        by_target.setdefault(w.rec.target_key, []).append((rank[key], w.rec))
    for key, r in others.items():
        try:
            rec = validation.parse(r.to_document())
        except errors.ValidationError:
            continue  # a stored record that no longer validates competes with nothing
        by_target.setdefault(rec.target_key, []).append((rank[key], rec))
    out: list[Work] = []
    superseded: dict[tuple[str, str], tuple[str, ...]] = {}
    for recs in by_target.values():
        ordered = [rec for _, rec in sorted(recs, key=lambda x: x[0])]
        res = supersede.resolve(ordered)
        for rec in ordered:
            key = (rec.kind, rec.id)
            if rec.id in res.superseded:
                superseded[key] = res.superseded[rec.id]
            elif key in mine and rec.id in res.overridden:
                w = mine[key]
                w.rec = supersede.without(w.rec, res.overridden[rec.id])
                w.overridden = res.overridden[rec.id]
    for key, w in mine.items():
        if key not in superseded:
            out.append(w)
            continue
        w.item.phase = model.SUPERSEDED
        w.item.message = _superseded_message(superseded[key])
        report.save_status(st, w.rec, model.Status(phase=model.SUPERSEDED,
                                                   message=w.item.message))
    for key, r in others.items():
        if key in superseded:
            new = dict(r.status)
            new.update(phase=model.SUPERSEDED, message=_superseded_message(superseded[key]))
            try:
                st.update_status(r.kind, r.id, new, r.resource_version)
            except errors.ConflictError:
                log.info("%s changed while superseding it; left for the next batch", r.id)
    return out


def _superseded_message(by: Sequence[str]) -> str:
    return (f"superseded by {', '.join(by)}: every field it sets is set by a newer "
            "recommendation for the same target")


class ReadOnly:
    """A store view for dry runs: reads pass through, writes are dropped."""

    def __init__(self, inner: store.Store) -> None:
        self._inner = inner

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        return self._inner.get(kind, rec_id)

    def list(self, kind: str | None = None, phase: str | None = None
             ) -> Sequence[store.Record]:
        return self._inner.list(kind, phase)

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (),
               current: Any = store.UNREAD) -> store.UpsertResult:
        cur = self._inner.get(kind, rec_id)
        rec = cur or store.Record(kind, rec_id, namespace, name, spec)
        return store.UpsertResult(rec, created=cur is None, changed=cur is None or
                                  cur.spec != spec)

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        cur = self._inner.get(kind, rec_id)
        if cur is None:
            raise errors.NotFoundError(f"{kind} {rec_id} not found")
        return cur

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> store.Record | None:
        return self._inner.get(kind, rec_id)

    def close(self) -> None:
        self._inner.close()
