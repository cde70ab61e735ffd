"""The embedded policy engine: OPA's own Go engine (``opa_bindings``) in this process.

The default engine: no sidecar to run, one engine call per batch. It is loaded from
``policies/`` plus data files, reloads when the files change and keeps the last good
policy set when a new one does not compile. ``build_engine`` is also what the Rego test
runner (``regotest``) compiles its modules with, so tests run on the same engine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from reconciler.adapters.opa import engine as opa
from reconciler.domain import decision, errors
from reconciler.domain import limits as limits_mod

log = logging.getLogger(__name__)


def policy_files(policy_dir: Path) -> list[Path]:
    """The Rego modules that make up a policy set: tests are not part of the decision.

    Hidden paths are skipped, as OPA's ``--ignore=.*`` does: a ConfigMap mounted as a
    volume holds every file twice, once in a ``..<timestamp>`` directory.
    """
    return sorted(
        p for p in policy_dir.rglob("*.rego")
        if p.is_file() and not p.name.endswith("_test.rego")
        and not any(part.startswith(".") for part in p.relative_to(policy_dir).parts)
    )


def build_engine(
    modules: Sequence[tuple[str, str]],
    data: Mapping[str, Any],
    warm: Sequence[str] = (),
) -> OpaEngine:
    """Build and compile a fresh engine, raising OpaError when the set is unusable.

    Parse errors surface in ``add_policy`` but compile errors (unsafe vars, type errors,
    conflicts) only surface when a query is prepared, so the set is compiled here before
    the engine is ever swapped in. Each distinct query costs OPA a compilation of every
    module (~0.1 s for the default library), so the documents in ``warm`` are prepared
    now as well: the first real decision must not pay for it.
    """
    eng = OpaEngine()
    try:
        for name, source in modules:
            eng.add_policy(name, source)
        if data:
            eng.add_data(dict(data))
        eng.eval_query("true")
        for path in warm:
            try:
                eng.eval_document(path.strip("/").replace("/", "."), {})
            except OpaUndefinedError:
                pass
            except OpaError as e:
                if e.code != "eval_error":  # an eval error on {} is fine; compiling is not
                    raise
    except BaseException:
        eng.close()
        raise
    return eng


class EmbeddedEngine:
    """OPA's Go engine in-process, loaded from a policy directory plus data files.

    Policies are re-read when a file under ``policy_dir`` (or a data file) changes; the
    check costs one directory scan at most once per ``reload_interval`` seconds. A set
    that fails to load leaves the previous good set in place and its error in
    ``last_error``; with no good set at all every decision is ``PolicyUnavailable``.
    """

    def __init__(
        self,
        policy_dir: str | Path = "policies",
        data_files: Sequence[str | Path] | None = None,
        *,
        reload_interval: float = 1.0,
        path: str = opa.DECISION_PATH,
        optional_data: Sequence[str | Path] = (),
        limits: limits_mod.InputLimits = limits_mod.DEFAULT,
        cache_size: int = 4096,
    ) -> None:
        self.policy_dir = Path(policy_dir)
        if data_files is None:
            default = self.policy_dir / "data.yaml"
            self.data_files = [default] if default.exists() else []
        else:
            self.data_files = [Path(p) for p in data_files]
        # Loaded when present (and reloaded when they appear or change): data written at
        # run time, such as the platform's parameters (``platform_data``).
        self.optional_data = [Path(p) for p in optional_data]
        # The settings' limits (wiring): what the stream accepts into the platform's data
        # is checked against these same limits, so the engine can load whatever was acked.
        self.limits = limits
        self.reload_interval = reload_interval
        self.path = path.strip("/")
        self.last_error: str | None = None
        self.reloads = 0
        self.revision = ""  # of the set in use (engine.revision); swapped with it
        self.modules: list[tuple[str, str]] = []  # (path, source) of the set in use
        self._lock = threading.Lock()
        self._engine: OpaEngine | None = None
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._checked_at = 0.0
        self._closed = False
        # An unchanged question under an unchanged set is answered from here (0: off).
        self.cache = opa.DecisionCache(cache_size)
        self.reload(force=True)

    # -- loading ---------------------------------------------------------

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        files = [*self.data_files, *self.optional_data]
        if self.policy_dir.is_dir():
            files = [*policy_files(self.policy_dir), *files]
        out = []
        for p in files:
            try:
                st = p.stat()
            except OSError:
                out.append((str(p), -1, -1))
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _read(self) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        if not self.policy_dir.is_dir():
            raise OpaError("not_found", f"policy directory {self.policy_dir} does not exist")
        modules = [
            (p.relative_to(self.policy_dir).as_posix(), p.read_text(encoding="utf-8"))
            for p in policy_files(self.policy_dir)
        ]
        if not modules:
            raise OpaError("not_found", f"no .rego files under {self.policy_dir}")
        present = [p for p in self.optional_data if p.is_file()]
        data = opa.merge_data([opa.load_data_file(p, self.limits)
                               for p in [*self.data_files, *present]])
        return modules, data

    def reload(self, force: bool = False) -> bool:
        """Load the policy set again if files changed (or ``force``); True when swapped in.

        Compilation happens outside the evaluation lock so decisions keep flowing on the
        old set while the new one builds.
        """
        fingerprint = self._scan()
        if not force and fingerprint == self._fingerprint:
            return False
        try:
            modules, data = self._read()
            new = build_engine(modules, data, warm=(self.path, opa.BATCH_PATH))
        except (OpaError, OSError, ValueError, errors.ConfigError) as e:
            # Remember the fingerprint so a broken file is reported once, not every second.
            self._fingerprint = fingerprint
            kept = "keeping the last good set" if self._engine else "no policy loaded"
            self.last_error = f"policy load failed, {kept}: {e}"
            log.error("%s", self.last_error)
            return False
        rev = opa.revision((src for _, src in modules), data.get(opa.CONFIG_PATH))
        with self._lock:
            old, self._engine = self._engine, new
            self.revision, self.modules = rev, modules
            self._fingerprint = fingerprint
            self.last_error = None
            self.reloads += 1
            self.cache.clear()  # kept under the old generation: never asked for again
            if old is not None:
                old.close()
        log.info("loaded %d policy modules from %s", len(modules), self.policy_dir)
        return True

    def maybe_reload(self) -> None:
        """Reload when files changed, checking at most once per ``reload_interval``."""
        if self.reload_interval < 0:
            return
        now = time.monotonic()
        if now - self._checked_at < self.reload_interval:
            return
        self._checked_at = now
        self.reload()

    # -- evaluation --------------------------------------------------------

    def evaluate(self, path: str, input: Any) -> Any:
        """Raw document at ``data.<path>``: raises Undefined, or PolicyError on failure.

        The one place where the binding's errors become the project's.
        """
        return self._evaluate(path, input)[0]

    def _evaluate(self, path: str, input: Any) -> tuple[Any, str]:
        """The document and the revision of the set that produced it (read together: a
        reload between the two cannot mislabel a decision)."""
        doc, rev, _ = self._evaluate_at(path, input)
        return doc, rev

    def _evaluate_at(self, path: str, input: Any) -> tuple[Any, str, int]:
        """``_evaluate``, and the generation (count of loads) of the set that answered."""
        ref = path.strip("/").replace("/", ".")
        with self._lock:
            if self._engine is None:
                raise opa.PolicyError("unavailable", self.last_error or "no policy loaded")
            try:
                return self._engine.eval_document(ref, input), self.revision, self.reloads
            except OpaUndefinedError as e:
                raise opa.Undefined(f"data.{ref}" if ref else "data") from e
            except OpaError as e:
                raise opa.PolicyError(e.code, e.message) from e

    def trace(self, input: Mapping[str, Any]) -> list[dict[str, Any]]:
        """OPA's evaluation trace of the decision for ``input`` (for explaining it).

        Slow (every step is recorded): for authors, never on the decision path.
        """
        with self._lock:
            if self._engine is None:
                raise opa.PolicyError("unavailable", self.last_error or "no policy loaded")
            # An evaluation error leaves no trace behind (the binding resets it): empty.
            with contextlib.suppress(OpaError):
                self._engine.eval_document(
                    self.path.replace("/", "."), dict(input), trace=True)
            events: list[dict[str, Any]] = self._engine.last_trace or []
            return events

    def decide(self, input: Mapping[str, Any]) -> decision.Decision:
        if self._closed:
            return decision.unavailable("policy engine is closed")
        self.maybe_reload()
        digest = self.cache.key(input)
        hit = self.cache.get(self.reloads, digest)
        if hit is not None:
            return hit
        d, generation = self._decide(input)
        self.cache.put(generation, digest, d)
        return d

    def _decide(self, input: Mapping[str, Any]) -> tuple[decision.Decision, int]:
        try:
            doc, rev, generation = self._evaluate_at(self.path, dict(input))
        except opa.Undefined as e:
            return decision.unavailable(str(e.message)), -1
        except opa.PolicyError as e:
            return decision.unavailable(f"policy evaluation failed: {e}"), -1
        except Exception as e:  # unserializable input and the like: still fail closed
            return decision.unavailable(
                f"policy evaluation failed: {type(e).__name__}: {e}"), -1
        return decision.from_document(doc, decision_id=str(uuid.uuid4()),
                                      policy_revision=rev), generation

    def decide_many(self, inputs: Sequence[Mapping[str, Any]]) -> list[decision.Decision]:
        """Evaluate a batch in one engine call through ``data.dakr.batch``; what the cache
        holds is not evaluated again.

        One call amortizes the per-call cost (JSON encoding, cgo, query preparation). When
        the batch entry point is missing or fails as a whole, each input is decided alone so
        one bad input cannot deny its neighbours.
        """
        if not inputs:
            return []
        if self._closed:
            return [decision.unavailable("policy engine is closed") for _ in inputs]
        self.maybe_reload()
        digests = [self.cache.key(i) for i in inputs]
        out: list[decision.Decision | None] = [self.cache.get(self.reloads, d)
                                               for d in digests]
        todo = [n for n, d in enumerate(out) if d is None]
        if todo:
            for n, d, generation in zip(todo, *self._decide_batch([inputs[n] for n in todo]),
                                        strict=True):
                out[n] = d
                self.cache.put(generation, digests[n], d)
        return [d for d in out if d is not None]

    def _decide_batch(self, inputs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[decision.Decision], list[int]]:
        def one_by_one() -> tuple[list[decision.Decision], list[int]]:
            pairs = [self._decide(i) for i in inputs]
            return [d for d, _ in pairs], [g for _, g in pairs]

        try:
            docs, rev, generation = self._evaluate_at(
                opa.BATCH_PATH, {"items": [dict(i) for i in inputs]})
        except Exception as e:
            log.debug("batch evaluation failed, deciding one by one: %s", e)
            return one_by_one()
        if not isinstance(docs, list) or len(docs) != len(inputs):
            return one_by_one()
        return ([decision.from_document(d, decision_id=str(uuid.uuid4()), policy_revision=rev)
                 for d in docs], [generation] * len(docs))

    def healthy(self) -> bool:
        with self._lock:
            return self._engine is not None and not self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._engine is not None:
                self._engine.close()
                self._engine = None
