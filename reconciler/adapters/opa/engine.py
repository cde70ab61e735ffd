"""The policy port: what every caller of a policy engine uses, whichever engine answers.

Every change the reconciler makes is gated by ``data.dakr.decision``. Both engines answer
with a ``decision.Decision`` and never raise: whatever goes wrong (a policy that does not
compile, an undefined decision, a sidecar that times out or answers garbage) becomes
``decision.unavailable(...)``, a deny with rule ``PolicyUnavailable``, so a broken policy
path can never let a change through.

This module is that contract (``PolicyEngine``, the document paths, the policy errors) and
the data-file helpers that the embedded engine, the Rego test runner (``regotest``) and the
platform's policy data share. The engines live beside it: ``embedded`` (OPA's own Go
engine in-process) and ``sidecar`` (an OPA server over its REST Data API);
``reconciler.wiring`` picks one from the settings.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from reconciler.domain import decision, errors, lru, mappings
from reconciler.domain import limits as limits_mod
from reconciler.yamledit import bounded

DECISION_PATH = "dakr/decision"
BATCH_PATH = "dakr/batch"
CONFIG_PATH = "config"  # the library's parameters (policies/data.yaml): part of a revision
# What a policy set derives from its data alone, evaluated once per load by the embedded
# engine (policies/dakr/derived.rego), and where the engine places the result in data.
DERIVED_PATH = "dakr/derived"
DERIVED_ROOT = "dakr_derived"


def revision(sources: Iterable[str], config: Any) -> str:
    """Which policy set decided: a digest of the Rego sources and ``data.config``.

    Content only (no file names, no order), so the embedded engine and an OPA sidecar
    loaded with the same files (the chart's ConfigMap flattens the paths) give the same
    revision, and a reviewer can tell whether two decisions came from the same rules. The
    platform's parameters (``data.platform``) are left out: they are inputs, not rules.
    """
    doc = json.dumps({"modules": sorted(sources), "config": config}, sort_keys=True,
                     separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()[:16]


class PolicyError(errors.PermanentError):
    """Evaluating a policy document failed (OPA's error code and message kept)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Undefined(PolicyError):
    """The document asked for is undefined (OPA answers 200 without a result)."""

    def __init__(self, what: str) -> None:
        super().__init__("undefined", f"{what} is undefined")


class PolicyEngine(Protocol):
    def decide(self, input: Mapping[str, Any]) -> decision.Decision: ...

    def decide_many(self, inputs: Sequence[Mapping[str, Any]]) -> list[decision.Decision]: ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


class DecisionCache:
    """Decisions already made, by (policy generation, input digest), least recently used
    first out.

    The operator asks again on resyncs and retries; an unchanged question under an
    unchanged policy set then costs a digest. The generation is the engine's count of
    loads: any reload (rules, ``data.config`` or the platform's parameters) asks afresh.
    A failed answer (``PolicyUnavailable``) is never kept: it is the one answer that may
    change by itself.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        # Counted beside the map's own lock: a figure for benchmarks and tests, which may
        # miss a count when threads ask at the same instant.
        self.hits = 0
        self.misses = 0
        self._entries: lru.Lru[tuple[int, bytes], decision.Decision] | None = (
            lru.Lru(size) if size > 0 else None)

    # Inputs whose marshalled form is at most this long are kept by those bytes themselves.
    RAW_KEY_MAX = 4096

    @staticmethod
    def digest(input: Any) -> bytes | None:
        """The input's digest; None for one that cannot be digested (it is not cached).

        ``marshal`` (format 2: no back-references, so the bytes depend on the value alone)
        is ten times cheaper than JSON with sorted keys, and as exact: the same bytes load
        back as the same value, types included. It is not canonical (key order counts, and
        whether a string is interned), which can only cost a miss, never a wrong answer.

        Up to ``RAW_KEY_MAX`` bytes (a workload's input is about 1.5 KiB) the bytes are the
        key: hashing them costs a fifth of a hit, and the dictionary's own hash of a key is
        cheaper still (the cache then holds at most 16 MiB of keys at its default size).
        Longer ones are hashed (BLAKE2b, 128 bits), behind a NUL byte that no marshalled
        value starts with, so the two kinds of key never meet."""
        try:
            raw = marshal.dumps(input, 2)
        except (ValueError, TypeError, RecursionError):
            return None
        if len(raw) <= DecisionCache.RAW_KEY_MAX:
            return raw
        return b"\0" + hashlib.blake2b(raw, digest_size=16).digest()

    def key(self, input: Any) -> bytes | None:
        """What to look ``input`` up by: its digest, or None when the cache is off (then
        no digest is computed)."""
        return self.digest(input) if self.size > 0 else None

    def get(self, generation: int, digest: bytes | None) -> decision.Decision | None:
        """The kept decision, or None. It is the same decision, ``decision_id`` included:
        made once, by the same rules, on the same input (an audit trail shows it reused)."""
        if digest is None or self._entries is None:
            return None
        d = self._entries.get((generation, digest))
        if d is None:
            self.misses += 1
        else:
            self.hits += 1
        return d

    def put(self, generation: int, digest: bytes | None, d: decision.Decision) -> None:
        if digest is None or d.policy_unavailable or self._entries is None:
            return
        self._entries.put((generation, digest), d)

    def clear(self) -> None:
        if self._entries is not None:
            self._entries.clear()

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)


def load_data_file(path: Path, limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> Any:
    """Read a YAML or JSON data document (JSON is YAML, but json is faster and stricter),
    within the input limits: the platform's parameters come from outside."""
    return parse_data(path.read_text(encoding="utf-8"), path, limits)


def parse_data(text: str, path: Path, limits: limits_mod.InputLimits) -> Any:
    """``load_data_file`` on text meant for ``path``: a writer checks with it that the
    engine will load what it writes."""
    if path.suffix == ".json":
        return bounded.load_json(text, limits, str(path))
    docs = bounded.load_yaml(text, limits, str(path))
    return docs[0] if docs else None


def merge_data(docs: Sequence[Any]) -> dict[str, Any]:
    """Deep-merge data documents, later files winning.

    OPA's own data merge refuses conflicting values; merging here lets a site file
    override single parameters of ``policies/data.yaml`` instead of copying all of it.
    """
    out: dict[str, Any] = {}
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError("a data file must hold an object at its top")
        out = mappings.deep_merge(out, doc)
    return out
