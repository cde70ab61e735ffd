"""Deleting a recommendation rolls its change back: the finalizer at work.

A recommendation direct mode created carries the ``dakr.devzero.io/rollback`` finalizer,
so ``kubectl delete`` only marks it for deletion; this is where such records are found
and rolled back, and the finalizer released so that the object goes away. One whose
rollback is refused (its values were changed since) keeps the finalizer and says why.
"""

from __future__ import annotations

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.direct import cache, rollback
from reconciler.domain import errors, model, results


def reconcile(st: store.Store, api: kube.Kube, *, now: str = "") -> list[results.ItemResult]:
    """Roll back every recommendation being deleted that still holds our finalizer."""
    out: list[results.ItemResult] = []
    for kind in model.KINDS:
        for rec in st.list(kind):
            if not rec.deleting or cache.FINALIZER not in rec.finalizers:
                continue
            try:
                out.append(rollback.rollback(rec.id, st, api, now=now, kind=kind))
            except errors.ReconcilerError as e:
                out.append(results.ItemResult(id=rec.id, kind=kind, phase=model.FAILED,
                                              message=f"rollback failed: {e}"))
    return out
