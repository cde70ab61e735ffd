"""``reconciler policy``: test the Rego library and ask what it decides, and why.

``policy test`` is ``opa test`` on the embedded engine (see ``reconciler.policytest``).
``policy eval`` answers "what would happen to this recommendation": it prints the
decision, each deny with its rule, and with ``--explain`` the policy rules that fired,
taken from OPA's trace and trimmed to the library's own files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler import wiring
from reconciler.adapters import files
from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import regotest as policytest
from reconciler.cli import flags
from reconciler.config import settings
from reconciler.domain import clock, decision, errors, model, policy_input, validation

_OUTPUT_RULES = ("deny", "warnings", "mode", "bounds", "decision", "batch")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "policy", help="test Rego policies and explain decisions",
        description="Author tools for the Rego policy library: run its tests with coverage, "
                    "or evaluate a recommendation and see the decision and its reasons.")
    sub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    sub.required = True

    tp = sub.add_parser(
        "test", help="run the Rego tests (like opa test)",
        description="Load every .rego and data file under the paths, run each test_* rule "
                    "and print PASS/FAIL/ERROR; exits 1 on any failure or when no test ran.")
    policytest.add_arguments(tp)
    tp.set_defaults(func=cmd_test)

    ep = sub.add_parser(
        "eval", help="decide one recommendation (or a full policy input) and explain",
        description="FILE holds a recommendation in custom-resource form (a minimal input is "
                    "built around it: no target, no cluster facts) or a full policy input "
                    "(a document with a 'recommendation' key). Several YAML documents are "
                    "decided one by one. Exit 0 whatever the decision; 2 for unusable input.")
    src = ep.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", "-i", metavar="FILE",
                     help="recommendation or policy input, YAML or JSON ('-' for stdin)")
    src.add_argument("--id", metavar="REC_ID",
                     help="a recommendation id from the store (see --store)")
    ep.add_argument("--store", default="", metavar="URI",
                    help="recommendation store for --id, e.g. sqlite:PATH")
    ep.add_argument("--explain", action="store_true",
                    help="list the policy rules that fired (embedded engine only)")
    ep.add_argument("--opa-url", default="", metavar="URL",
                    help="ask an OPA sidecar instead of the embedded engine")
    ep.add_argument("--opa-timeout", type=float, default=2.0, metavar="SECONDS",
                    help="sidecar timeout (default: %(default)s)")
    ep.add_argument("--opa-token-file", default="", metavar="FILE",
                    help="bearer token for the sidecar, read from this file")
    ep.add_argument("--output", "-o", choices=("text", "json"), default="text",
                    help="text: decision and reasons; json: the decision document")
    ep.add_argument("--policies", type=Path, default=flags.DEFAULT_POLICIES, metavar="DIR",
                    help="policy directory for the embedded engine (default: %(default)s)")
    ep.add_argument("--data", action="append", default=None, metavar="FILE",
                    help="data file(s) for the embedded engine instead of DIR/data.yaml")
    flags.add_policy_data(ep)
    ep.add_argument("--now", default="", metavar="RFC3339",
                    help="the time the policies see (default: the input's, else now)")
    ep.set_defaults(func=cmd_eval)


def cmd_test(args: argparse.Namespace) -> int:
    return policytest.command(args)


# -- eval ---------------------------------------------------------------------


def _from_store(uri: str, rec_id: str) -> list[Any]:
    """The stored recommendation with this id, in its custom-resource form."""
    if not uri:
        raise errors.ConfigError("--id needs --store URI (e.g. sqlite:state/reconciler.db)")
    st = wiring.open_store(uri, settings.KubeSettings())
    try:
        for kind in model.KINDS:
            rec = st.get(kind, rec_id)
            if rec is not None:
                meta = {"name": rec.name, **({"namespace": rec.namespace} if rec.namespace else {})}
                return [{"apiVersion": model.API_VERSION, "kind": rec.kind, "metadata": meta,
                         "spec": rec.spec}]
    finally:
        st.close()
    raise errors.ConfigError(f"recommendation {rec_id} is not in the store {uri}")


def build_input(doc: Any, now: str = "") -> dict[str, Any]:
    """A policy input from a full input or from a bare recommendation.

    A bare recommendation goes through the project's own parser and input builder, so
    the minimal input has exactly the shape the pipeline sends (quantities normalized).
    """
    if not isinstance(doc, Mapping):
        raise errors.ConfigError(f"input must be an object, not {type(doc).__name__}")
    if "recommendation" in doc:
        inp = dict(doc)
        if now:
            inp["now"] = now
        return inp
    rec = validation.parse(dict(doc))
    return policy_input.build(rec, None, now=now or clock.rfc3339())


def _engine(args: argparse.Namespace) -> opa.PolicyEngine:
    eng = wiring.policy_engine(settings.PolicySettings(
        policy_dir=args.policies, opa_url=args.opa_url, timeout=args.opa_timeout,
        token_file=args.opa_token_file,
        data_files=(tuple(Path(d) for d in args.data) if args.data
                    else flags.policy_data_files(args, args.policies)),
        reload_interval=-1))
    if isinstance(eng, embedded.EmbeddedEngine) and eng.last_error:
        raise errors.ConfigError(eng.last_error)
    return eng


# How OPA prints a rule in a trace event: its name, optional args or key, then the head.
_RULE_NODE = re.compile(r"^(?:default\s+)?([A-Za-z_]\w*)(?:\(.*?\)|\[.*?\])?\s*(?::=|=|contains\b)")


def fired_rules(eng: embedded.EmbeddedEngine, inp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy rules whose bodies succeeded for this input, in evaluation order.

    From OPA's trace: an ``Exit`` event whose node is a rule (not an expression such as
    the inside of a ``not``) is a rule body that succeeded. Events outside the policy
    files are dropped, repeated exits of one rule are shown once, and each rule is shown
    with its head as written in the source.
    """
    sources: dict[str, list[str]] = {}
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for ev in eng.trace(inp):
        if ev.get("op") != "Exit":
            continue
        m = _RULE_NODE.match(str(ev.get("node") or ""))
        if not m or m.group(1).startswith("__"):
            continue
        loc = str(ev.get("location") or "")
        file, _, row = loc.rpartition(":")
        if not file.endswith(".rego") or not row.isdigit() or loc in seen:
            continue
        seen.add(loc)
        if file not in sources:
            try:
                sources[file] = (eng.policy_dir / file).read_text(encoding="utf-8").splitlines()
            except OSError:
                sources[file] = []
        name = m.group(1)
        out.append({"location": loc, "rule": name, "head": _head(sources[file], int(row), name),
                    "output": name in _OUTPUT_RULES})
    return out


def _head(lines: list[str], row: int, name: str) -> str:
    """The source line that starts the rule (an else branch points inside it)."""
    at = lines[row - 1].strip() if 0 < row <= len(lines) else name
    for i in range(min(row, len(lines)) - 1, -1, -1):
        text = lines[i].strip()
        if text.startswith(name) or text.startswith(f"default {name}"):
            return text if i == row - 1 else f"{text} ... {at}"
    return at


def _print_text(d: decision.Decision, label: str, fired: list[dict[str, Any]] | None) -> None:
    verdict = "ALLOW" if d.allow else "DENY"
    print(f"{label}: {verdict} (mode {d.mode})")
    for x in d.deny:
        print(f"  deny     {x.rule}: {x.msg}")
    for w in d.warnings:
        print(f"  warning  {w}")
    if d.bounds:
        print(f"  bounds   {json.dumps(d.bounds, sort_keys=True)}")
    if d.decision_id:
        print(f"  decision_id {d.decision_id}")
    if fired is not None:
        outputs = [r for r in fired if r["output"]]
        helpers = [r for r in fired if not r["output"]]
        print("  rules that fired:")
        for r in outputs:
            print(f"    {r['location']:<32} {r['head']}")
        if helpers:
            names = ", ".join(dict.fromkeys(r["rule"] for r in helpers))
            print(f"  helpers that fired: {names}")


def _label(inp: Mapping[str, Any]) -> str:
    rec = inp.get("recommendation") or {}
    spec = rec.get("spec") or {} if isinstance(rec, Mapping) else {}
    rid = spec.get("recommendationId") if isinstance(spec, Mapping) else None
    return str(rid or (rec.get("metadata") or {}).get("name") or "recommendation")


def cmd_eval(args: argparse.Namespace) -> int:
    if args.explain and args.opa_url:
        print("error: --explain traces the embedded engine; drop --opa-url", file=sys.stderr)
        return 2
    try:
        docs = _from_store(args.store, args.id) if args.id else files.load_documents(args.input)
        if not docs:
            raise errors.ConfigError(f"{args.input}: no document")
        inputs = [build_input(d, args.now) for d in docs]
        eng = _engine(args)
    except (OSError, yaml.YAMLError, errors.PermanentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        results = []
        for inp in inputs:
            d = eng.decide(inp)
            fired = None
            if args.explain and isinstance(eng, embedded.EmbeddedEngine):
                fired = fired_rules(eng, inp)
            results.append((inp, d, fired))
    finally:
        eng.close()
    if args.output == "json":
        docs_out = []
        for _, d, fired in results:
            doc = d.to_dict()
            if fired is not None:
                doc["explain"] = fired
            docs_out.append(doc)
        print(json.dumps(docs_out[0] if len(docs_out) == 1 else docs_out, indent=2))
    else:
        for inp, d, fired in results:
            _print_text(d, _label(inp), fired)
    return 0
