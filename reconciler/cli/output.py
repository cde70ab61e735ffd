"""What the commands print: a summary table per batch, or JSON for scripts.

Every value that did not come from us (ids, names, messages, forge URLs) is printed
through ``text.terminal``: no escape sequence or line break from a recommendation, a
policy, a repository or a forge reaches the terminal. JSON needs nothing: ``json.dumps``
escapes every control character."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.adapters.store import port as store
from reconciler.domain import results
from reconciler.domain import text as txt
from reconciler.flow import batch as flow


def print_batch(batch: flow.Batch, output: str) -> None:
    if output == "json":
        print(json.dumps(batch.to_json(), indent=2))
        return
    print(results.summary_table(batch.items))
    counts: dict[str, int] = {}
    for it in batch.items:
        counts[it.phase] = counts.get(it.phase, 0) + 1
    print()
    print("  ".join(f"{txt.terminal(k)}: {v}" for k, v in sorted(counts.items())))
    for pr in batch.pull_requests:
        print(f"pull request #{pr.number} ({txt.terminal(pr.state)}) for "
              f"{txt.terminal(pr.branch)}: {txt.terminal(pr.url)}")
    if batch.branch:
        state = "new commit" if batch.created_commit else "no new commit (already up to date)"
        print(f"branch {txt.terminal(batch.branch)} at {txt.terminal(batch.commit[:12])}: "
              f"{state}")


def print_item(item: results.ItemResult, output: str) -> None:
    if output == "json":
        print(json.dumps(item.to_json(), indent=2))
    else:
        print(f"{txt.terminal(item.id)}: {txt.terminal(item.phase)}: "
              f"{txt.terminal(item.message)}")


def print_records(records: Sequence[store.Record], output: str) -> None:
    if output == "json":
        items = [{"id": r.id, "kind": r.kind, "namespace": r.namespace, "name": r.name,
                  "phase": r.phase} for r in records]
        print(json.dumps({"items": items}, indent=2))
        return
    rows = [("KIND", "NAMESPACE", "ID", "PHASE")] + [
        (txt.terminal(r.kind), txt.terminal(r.namespace) or "-", txt.terminal(r.id),
         txt.terminal(r.phase)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
