"""The embedded policy engine: OPA's own Go engine (``opa_bindings``) in this process.

The default engine: no sidecar to run, one engine call per batch. It is loaded from
``policies/`` plus data files, reloads when the files change and keeps the last good
policy set when a new one does not compile. ``build_engine`` is also what the Rego test
runner (``regotest``) compiles its modules with, so tests run on the same engine.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


# What a policy set reads of its input: a tree of keys, where None is "the whole value"
# and an object "only these keys of it" (an empty one: only that it is there, and its
# type). The root None sends the input as it is.
Shape = dict[str, "Shape | None"]

# In Rego source: a comment, a string, a raw string, or the root `input` (not a field of
# something else, not part of a longer name). Comments and strings are skipped.
_TOKENS = re.compile(r'#[^\n]*|"(?:\\.|[^"\\\n])*"|`[^`]*`|(?<![\w.])input(?!\w)')
_STEP = re.compile(r'\.([A-Za-z_]\w*)|\[\s*("(?:\\.|[^"\\\n])*")\s*\]')
_LITERAL_PATH = re.compile(
    r'\s*,\s*("(?:\\.|[^"\\\n])*"|\[\s*"(?:\\.|[^"\\\n])*"(?:\s*,\s*"(?:\\.|[^"\\\n])*")*\s*\])'
    r'\s*,')
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')


def _need(shape: Shape, path: Sequence[str], whole: bool) -> None:
    """Add one read to ``shape``: ``path`` itself (``whole``) or only its presence."""
    node: Shape | None = shape
    for i, key in enumerate(path):
        if node is None:
            return  # an outer value is sent whole already
        last = i == len(path) - 1
        if last and whole:
            node[key] = None
        elif key not in node:
            node[key] = {}
        node = node[key]


def input_shape(sources: Iterable[str]) -> Shape | None:
    """The part of the input the Rego in ``sources`` can read; None when it may read any.

    Converting the input is much of what a decision costs the engine (each object key a
    few microseconds), and most of what the pipeline sends (the target's pod template, the
    recommendation's own quantities, its status) no rule reads. A read is recognized only
    where its extent is certain: a reference ``input.a.b`` (or ``input.a["b"]``) needs
    ``a.b`` whole, whatever follows it; ``object.get(input, <literal path>, ...)`` the value
    at that path; ``input.a != null``, ``input.a == null`` and ``is_object(input.a)`` only
    that ``a`` is there with its type (an object sent with fewer keys answers them alike).
    ``with input... as`` writes the input and ``import input.a`` reads ``a``. Any other use
    of ``input`` (``input[x]``, ``walk(input, ...)``, ``x := input``) could read anything,
    and the input is then sent as it is: a rule added by a policy author is analysed like
    the library's own, and when in doubt nothing is left out.
    """
    shape: Shape = {}
    for source in sources:
        for m in _TOKENS.finditer(source):
            if m.group(0) != "input":
                continue
            start, end = m.start(), m.end()
            path: list[str] = []
            pos = end
            while (step := _STEP.match(source, pos)) is not None:
                path.append(step.group(1) if step.group(1) else json.loads(step.group(2)))
                pos = step.end()
            before = source[:start].rstrip()
            after = source[pos:]
            if re.search(r'(?<![\w.])with$', before) and re.match(r'\s+as\b', after):
                continue  # written, not read
            if re.search(r'(?<![\w.])import$', before):
                if not path:
                    return None
                _need(shape, path, whole=True)
                continue
            lit = _LITERAL_PATH.match(after)
            if path and lit is not None and re.search(r'(?<![\w.])object\.get\($', before):
                # object.get(input.a, <literal path>, ...): a, with its type, and the value
                # at the path under it (an object along the way keeps its other keys out;
                # anything else is sent whole and answers as before).
                _need(shape, path, whole=False)
                _need(shape, [*path, *(json.loads(k) for k in _STRING.findall(lit.group(1)))],
                      whole=True)
                continue
            if path:
                presence = (re.match(r'\s*[!=]=\s*null(?![\w.\[])', after) is not None
                            or (re.search(r'(?<![\w.])is_object\($', before) is not None
                                and re.match(r'\s*\)', after) is not None))
                _need(shape, path, whole=not presence)
                continue
            keys = _STRING.findall(lit.group(1)) if lit is not None else []
            if keys and re.search(r'(?<![\w.])object\.get\($', before):
                _need(shape, [json.loads(k) for k in keys], whole=True)
                continue
            return None  # object.get(input, [], d) is the whole input, as is any other use
    return shape


def project(value: Any, shape: Shape | None) -> Any:
    """``value`` with only what ``shape`` reads: objects along the way keep the keys the
    shape names (those present); anything else (an array, a scalar, a value that is not
    the object the shape expects) is kept whole. Nothing is copied below the cut."""
    if shape is None or not isinstance(value, Mapping):
        return value
    out = {}
    for key, sub in shape.items():
        if key in value:
            v = value[key]
            out[key] = v if sub is None or not isinstance(v, Mapping) else project(v, sub)
    return out


def cut(input: Mapping[str, Any], shape: Shape | None) -> dict[str, Any]:
    """What a decision on ``input`` sends the engine when its set reads ``shape`` (all of
    the input when None): the one place a decision input is cut."""
    return dict(input) if shape is None else dict(project(input, shape))


def build_engine(
    modules: Sequence[tuple[str, str]],
    data: Mapping[str, Any],
    warm: Sequence[str] = (),
    derive: bool = False,
) -> OpaEngine:
    """Build and compile a fresh engine, raising OpaError when the set is unusable.

    Parse errors surface in ``add_policy`` but compile errors (unsafe vars, type errors,
    conflicts) only surface when a query is prepared, so the set is compiled here before
    the engine is ever swapped in. Each distinct query costs OPA a compilation of every
    module (~0.1 s for the default library), so the documents in ``warm`` are prepared
    now as well: the first real decision must not pay for it.

    With ``derive`` what the set derives from its data alone (``data.dakr.derived``, when
    it defines it) is evaluated once here and placed at ``data.dakr_derived``, so that
    decisions read it instead of computing it again (``place_derived``). Off for the Rego
    test runner: its tests replace ``data.config`` with ``with``, which a value derived
    from the loaded data would not follow.
    """
    eng = OpaEngine()
    try:
        for name, source in modules:
            eng.add_policy(name, source)
        if data:
            eng.add_data(dict(data))
        eng.eval_query("true")
        if derive:
            place_derived(eng)
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


def place_derived(eng: OpaEngine) -> bool:
    """Evaluate ``data.dakr.derived`` once and place it at ``data.dakr_derived``; True
    when placed.

    The document depends on data alone (the library's rules read it where present and
    compute the same values themselves where not), so it is evaluated with no input. A set
    that does not define it, or whose derivation fails (a malformed setting: the rules that
    read it fail per decision, as they always did), gets nothing. It is fetched as OPA
    writes it (``json.marshal``) and placed only when every number survives the trip
    through a Python float exactly: a number with more digits than a float keeps would
    come back rounded, and the rules would compare against another value than they compute.
    """
    ref = opa.DERIVED_PATH.replace("/", ".")
    try:
        rows = eng.eval_query(f"text := json.marshal(data.{ref})")
    except OpaError as e:  # an evaluation error: a malformed setting
        log.info("policy set derives nothing from its data: %s", e)
        return False
    if not rows:
        return False  # the set does not define it
    exact = True

    def number(text: str) -> float:
        nonlocal exact
        value = float(text)
        exact = exact and decimal.Decimal(text) == decimal.Decimal(repr(value))
        return value

    value = json.loads(rows[0]["text"], parse_float=number)
    if not exact:
        log.warning("values derived from the policy data do not survive JSON: computed per "
                    "decision instead")
        return False
    eng.add_data({opa.DERIVED_ROOT: value})
    return True


MAX_WORKERS = 2  # engines a batch is split over by default (see EmbeddedEngine.workers)


def _cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def _batch_docs(engine: OpaEngine, inputs: Sequence[Mapping[str, Any]],
                shape: Shape | None) -> list[Any] | None:
    """One engine call through ``data.dakr.batch`` for ``inputs`` (each cut to ``shape``):
    one document per input, or None when the call fails as a whole or answers otherwise.
    Never raises: it runs on a batch's worker threads."""
    items = [cut(i, shape) for i in inputs]
    try:
        docs = engine.eval_document(opa.BATCH_PATH.replace("/", "."), {"items": items})
    except Exception as e:
        log.debug("batch evaluation failed, deciding one by one: %s", e)
        return None
    if not isinstance(docs, list) or len(docs) != len(inputs):
        return None
    return docs


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
        lean_input: bool = True,
        workers: int | None = None,
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
        # Decisions send only what the set in use reads of the input (``input_shape``);
        # False sends every input whole, as the engine's floor is measured (bench_policy).
        self.lean_input = lean_input
        self._shape: Shape | None = None  # what the set in use reads; swapped with it
        # A batch is split over this many engines, each loaded with the same set and
        # evaluating on its own thread: the binding releases the GIL while OPA evaluates
        # (ctypes), and each engine serializes its own evaluations. Each engine is a copy
        # of the compiled set (about 30 MiB with the default library), so None is one per
        # CPU this process may run on, at most ``MAX_WORKERS``: a pod on a large node sees
        # all its CPUs, and its memory limit does not grow with them.
        self.workers = max(1, min(MAX_WORKERS, _cpus()) if workers is None else workers)
        self._lock = threading.Lock()
        self._engine: OpaEngine | None = None
        # The other engines of the set in use (workers - 1 of them), swapped with it.
        self._helpers: list[OpaEngine] = []
        self._pool: ThreadPoolExecutor | None = None
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
        if data.pop(opa.DERIVED_ROOT, None) is not None:
            # The engine's own (place_derived): a file cannot stand in for the derivation.
            log.warning("policy data sets %s, which the engine computes: ignored",
                        opa.DERIVED_ROOT)
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
            new, helpers = self._build(modules, data)
        except (OpaError, OSError, ValueError, errors.ConfigError) as e:
            # Remember the fingerprint so a broken file is reported once, not every second.
            self._fingerprint = fingerprint
            kept = "keeping the last good set" if self._engine else "no policy loaded"
            self.last_error = f"policy load failed, {kept}: {e}"
            log.error("%s", self.last_error)
            return False
        rev = opa.revision((src for _, src in modules), data.get(opa.CONFIG_PATH))
        shape = input_shape(src for _, src in modules) if self.lean_input else None
        with self._lock:
            if self._closed:
                for eng in (new, *helpers):
                    eng.close()
                return False
            old, self._engine = self._engine, new
            old_helpers, self._helpers = self._helpers, helpers
            self.revision, self.modules = rev, modules
            self._fingerprint = fingerprint
            self.last_error = None
            self.reloads += 1
            self._shape = shape
            self.cache.clear()  # kept under the old generation: never asked for again
            if old is not None:
                old.close()
            for eng in old_helpers:
                eng.close()
        log.info("loaded %d policy modules from %s", len(modules), self.policy_dir)
        return True

    def _build(self, modules: Sequence[tuple[str, str]], data: Mapping[str, Any]
               ) -> tuple[OpaEngine, list[OpaEngine]]:
        """The engine of a set, and the helpers a batch is split over (``workers``), all
        compiled at once: OPA compiles with the GIL released, so on several CPUs the
        helpers cost a load little more time."""
        warm = (self.path, opa.BATCH_PATH)
        if self.workers < 2:
            return build_engine(modules, data, warm=warm, derive=True), []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(build_engine, modules, data, warm, True)
                       for _ in range(self.workers)]
            built: list[OpaEngine] = []
            error: BaseException | None = None
            for f in futures:
                try:
                    built.append(f.result())
                except BaseException as failed:  # the built ones are closed first
                    error = error or failed
        if error is not None:
            for eng in built:
                eng.close()
            raise error
        return built[0], built[1:]

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

    def _evaluate_at(self, path: str, input: Any, lean: bool = False) -> tuple[Any, str, int]:
        """``_evaluate``, and the generation (count of loads) of the set that answered.

        With ``lean`` the input is a decision input, and the engine is sent only what the
        set in use reads of it (``input_shape``): cut under the same lock as the set is
        read, so a reload cannot have a new set read an input cut for the old one.
        """
        ref = path.strip("/").replace("/", ".")
        with self._lock:
            if self._engine is None:
                raise opa.PolicyError("unavailable", self.last_error or "no policy loaded")
            if lean:
                input = cut(input, self._shape)
            try:
                return self._engine.eval_document(ref, input), self.revision, self.reloads
            except OpaUndefinedError as e:
                raise opa.Undefined(f"data.{ref}" if ref else "data") from e
            except OpaError as e:
                raise opa.PolicyError(e.code, e.message) from e

    def sent(self, input: Mapping[str, Any]) -> dict[str, Any]:
        """What a decision on ``input`` sends the engine under the set in use: the part its
        rules read (all of it when they may read anything, or with ``lean_input`` off)."""
        with self._lock:
            shape = self._shape
        return cut(input, shape)

    def trace(self, input: Mapping[str, Any]) -> list[dict[str, Any]]:
        """OPA's evaluation trace of the decision for ``input`` (for explaining it).

        Slow (every step is recorded): for authors, never on the decision path. The input
        is cut as a decision's is (``sent``): the trace is of the evaluation a decision makes.
        """
        with self._lock:
            if self._engine is None:
                raise opa.PolicyError("unavailable", self.last_error or "no policy loaded")
            sent = cut(input, self._shape)
            # An evaluation error leaves no trace behind (the binding resets it): empty.
            with contextlib.suppress(OpaError):
                self._engine.eval_document(self.path.replace("/", "."), sent, trace=True)
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
            doc, rev, generation = self._evaluate_at(self.path, input, lean=True)
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
        """Evaluate a batch through ``data.dakr.batch``, one engine call per part, the
        parts split over the set's engines (``workers``) and evaluated at once; what the
        cache holds is not evaluated again. The answers keep the inputs' order.

        One call amortizes the per-call cost (JSON encoding, cgo, query preparation). When
        the batch entry point is missing or a part's call fails as a whole, each input of
        that part is decided alone so one bad input cannot deny its neighbours.
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

    # A batch is split over the engines only where each part has at least this many
    # inputs: handing a part to a thread costs about what deciding one input does.
    MIN_PART = 4

    def _decide_batch(self, inputs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[decision.Decision], list[int]]:
        """Decide ``inputs`` in one engine call per part, the parts (contiguous, in order)
        evaluated at once on the set's engines; a part whose call fails as a whole, or
        answers with anything but one document per input, is decided one input at a time.

        The set's lock is held until every part has answered: a reload cannot close an
        engine under a part, and every answer comes from the same set.
        """
        with self._lock:
            engine = self._engine
            if engine is None:
                parts: list[Sequence[Mapping[str, Any]]] = [inputs]
                answers: list[list[Any] | None] = [None]
                rev, generation = self.revision, self.reloads
            else:
                engines = [engine, *self._helpers]
                n = max(1, min(len(engines), len(inputs) // self.MIN_PART))
                size = -(-len(inputs) // n)
                parts = [inputs[k:k + size] for k in range(0, len(inputs), size)]
                shape = self._shape
                rev, generation = self.revision, self.reloads
                if len(parts) == 1:
                    answers = [_batch_docs(engine, parts[0], shape)]
                else:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(max_workers=len(engines) - 1,
                                                        thread_name_prefix="opa-batch")
                    futures = [self._pool.submit(_batch_docs, e, part, shape)
                               for e, part in zip(engines[1:], parts[1:], strict=False)]
                    answers = [_batch_docs(engine, parts[0], shape),
                               *(f.result() for f in futures)]
        out: list[decision.Decision] = []
        generations: list[int] = []
        for part, docs in zip(parts, answers, strict=True):
            if docs is None:
                pairs = [self._decide(i) for i in part]
                out.extend(d for d, _ in pairs)
                generations.extend(g for _, g in pairs)
                continue
            out.extend(decision.from_document(d, decision_id=str(uuid.uuid4()),
                                              policy_revision=rev) for d in docs)
            generations.extend([generation] * len(docs))
        return out, generations

    def healthy(self) -> bool:
        with self._lock:
            return self._engine is not None and not self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            for eng in self._helpers:
                eng.close()
            self._helpers = []
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
