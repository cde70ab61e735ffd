"""``reconciler run``: the operator (``runtime.operator``), configured by flags over the
``DAKR_*`` environment the chart sets; and ``reconciler config check``, which prints the
settings ``run`` would use, secrets masked, and exits 2 naming whatever is invalid."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.adapters import git
from reconciler.cli import flags, output
from reconciler.config import env, settings
from reconciler.runtime import operator

DESCRIPTION = (
    "The operator. It watches its recommendations (the custom resources, or the SQLite "
    "file in local mode) and holds one gRPC stream to the platform; every new "
    "recommendation, changed spec, deletion or rollback request is worked on within "
    "seconds by --workers workers, one target at a time. Direct changes are applied at "
    "once; pull requests gather for --batch-window seconds into one commit and one pull "
    "request. Temporary failures (the policy engine, the API server or the forge "
    "unavailable) stay Pending with a Retrying condition and are tried again with backoff. "
    "Open pull requests are followed every --resync seconds. SIGTERM lets the work in "
    "flight finish (at most --shutdown-timeout seconds) and releases the leader lease.")


def add_run_flags(runp: argparse.ArgumentParser) -> None:
    """The flags of `run` (and of `config check`, which checks them)."""
    R = settings.RunSettings
    runp.add_argument("--source", action="append", default=None, metavar="KIND:WHERE",
                      help="platform:HOST:PORT, file:PATH, vpa:PATH or krr:PATH; repeatable "
                           "(default: platform:$DAKR_API_ENDPOINT)")
    runp.add_argument("--health-addr", default="", metavar="[HOST]:PORT",
                      help="serve /healthz, /readyz (ready once the store is synced, the "
                           "policy engine answers and the stream connected), /metrics and "
                           "POST /resync here")
    runp.add_argument("--metrics-addr", default="", metavar="[HOST]:PORT",
                      help="serve Prometheus /metrics here (default: only on --health-addr)")
    runp.add_argument("--workers", type=int, default=R.workers, metavar="N",
                      help="targets worked on at once (default: %(default)s)")
    runp.add_argument("--resync", type=float, default=R.resync, metavar="SECONDS",
                      help="follow open pull requests, re-read file sources and look at "
                           "everything unsettled this often (default: %(default)s)")
    runp.add_argument("--batch-window", type=float, default=R.batch_window, metavar="SECONDS",
                      help="GitOps: a burst ends after this long without news and becomes "
                           "one commit and one pull request (default: %(default)s)")
    runp.add_argument("--batch-max-wait", type=float, default=R.batch_max_wait,
                      metavar="SECONDS",
                      help="GitOps: the longest a change waits for its batch "
                           "(default: %(default)s)")
    runp.add_argument("--batch-max", type=int, default=R.batch_max, metavar="N",
                      help="GitOps: the most targets in one batch (default: %(default)s)")
    runp.add_argument("--retry-max", type=float, default=R.retry_max, metavar="SECONDS",
                      help="the longest backoff between tries of a temporary failure "
                           "(default: %(default)s)")
    runp.add_argument("--shutdown-timeout", type=float, default=R.shutdown_timeout,
                      metavar="SECONDS",
                      help="on SIGTERM, how long work in flight may finish "
                           "(default: %(default)s)")
    runp.add_argument("--idle", type=float, default=R.idle, metavar="SECONDS",
                      help="with --once: the platform stream ends after this long without "
                           "news (default: %(default)s)")
    runp.add_argument("--platform-token-file", default=None, metavar="FILE",
                      help="bearer token for the platform, read at every connection")
    runp.add_argument("--cluster-id", default="default", metavar="ID",
                      help="how this cluster introduces itself to the platform "
                           "(default: $DAKR_CLUSTER_ID, else %(default)s)")
    runp.add_argument("--once", action="store_true",
                      help="do what there is to do (the sources, the pending "
                           "recommendations, the open pull requests), print it, and exit")
    runp.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=None,
                      help="act only while holding a coordination.k8s.io Lease, stand by "
                           "otherwise; a leader that loses it exits 1 "
                           "(default: $DAKR_LEADER_ELECTION, else off)")
    runp.add_argument("--leader-elect-lease", default=None, metavar="NAME",
                      help="Lease name (default: $DAKR_LEADER_ELECTION_LEASE, else "
                           "dakr-reconciler-leader)")
    runp.add_argument("--leader-elect-namespace", default=None, metavar="NS",
                      help="Lease namespace (default: $POD_NAMESPACE, else the service "
                           "account's)")
    flags.add_batch(runp)


def register(sub: Any) -> None:
    runp = sub.add_parser(
        "run", help="the operator: watch, decide and apply as recommendations arrive",
        description=DESCRIPTION)
    add_run_flags(runp)
    runp.set_defaults(func=cmd_run, **env.run_defaults(env.environ()))

    cp = sub.add_parser("config", help="check the settings `run` would use")
    csub = cp.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = csub.add_parser(
        "check", help="print the effective settings of `run` (secrets masked)",
        description="Reads the same flags and DAKR_* variables as `run` and prints the "
                    "settings it would use as JSON, tokens masked. Exit 2 with the setting "
                    "named when one is invalid.")
    add_run_flags(check)
    check.set_defaults(func=cmd_config_check, **env.run_defaults(env.environ()))


def run_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> settings.RunSettings:
    endpoint = env.platform_endpoint(environ)
    # Read here, not in register: a bad variable must not break --help or other commands.
    lead = env.leader_settings(environ)
    lead = dataclasses.replace(lead, **{k: v for k, v in (
        ("enabled", args.leader_elect), ("lease_name", args.leader_elect_lease),
        ("namespace", args.leader_elect_namespace)) if v is not None})
    return settings.RunSettings(
        sources=tuple(args.source or ([f"platform:{endpoint}"] if endpoint else [])),
        health_addr=args.health_addr, metrics_addr=args.metrics_addr, idle=args.idle,
        once=args.once, platform_token_file=args.platform_token_file,
        platform_token=env.platform_token(environ), leader=lead, workers=args.workers,
        resync=args.resync, batch_window=args.batch_window,
        batch_max_wait=args.batch_max_wait, batch_max=args.batch_max,
        retry_max=args.retry_max, shutdown_timeout=args.shutdown_timeout)


def cmd_run(args: argparse.Namespace) -> int:
    environ = env.environ()
    cfg = flags.settings_of(args, environ)
    op = operator.Operator(cfg, run_settings(args, environ), dry_run=args.dry_run,
                           on_batch=lambda batch: output.print_batch(batch, args.output))
    return op.run()


SECRET = "***"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def cmd_config_check(args: argparse.Namespace) -> int:
    environ = env.environ()
    cfg = flags.settings_of(args, environ)
    run = run_settings(args, environ)
    operator.Operator(cfg, run)  # the same checks `run` makes before it starts
    doc = {"settings": _plain(cfg), "run": _plain(run), "writers": sorted(cfg.writers)}
    doc["settings"]["git"]["repo"] = git.redact(cfg.git.repo)  # a token in the URL
    # Secrets never leave the process: only whether one is set (files are named, not read).
    if cfg.forge.token:
        doc["settings"]["forge"]["token"] = SECRET
    if run.platform_token:
        doc["run"]["platform_token"] = SECRET
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0
