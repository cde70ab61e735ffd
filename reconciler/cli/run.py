"""``reconciler run``: the operator (``runtime.operator``), configured by flags over the
``DAKR_*`` environment the chart sets."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from reconciler.cli import flags, output
from reconciler.config import env, settings
from reconciler.runtime import operator


def register(sub: Any) -> None:
    runp = sub.add_parser(
        "run", help="the operator loop: take in recommendations from sources, run batches",
        description="Each round takes in what the sources have (the platform's gRPC stream "
                    "until it is idle for --idle seconds, files, VPA objects, KRR reports) "
                    "into the store, then runs one batch over everything still Pending, in "
                    "GitOps or direct mode, and waits --interval seconds. SIGINT/SIGTERM "
                    "stop it between rounds.")
    runp.add_argument("--source", action="append", default=None, metavar="KIND:WHERE",
                      help="platform:HOST:PORT, file:PATH, vpa:PATH or krr:PATH; repeatable "
                           "(default: platform:$DAKR_API_ENDPOINT)")
    runp.add_argument("--health-addr", default="", metavar="[HOST]:PORT",
                      help="serve /healthz and /readyz (ready after the first round) here, "
                           "and /metrics too")
    runp.add_argument("--metrics-addr", default="", metavar="[HOST]:PORT",
                      help="serve Prometheus /metrics here (default: only on --health-addr)")
    runp.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                      help="pause between rounds (default: %(default)s)")
    runp.add_argument("--idle", type=float, default=2.0, metavar="SECONDS",
                      help="a platform stream quiet this long ends its part of a round "
                           "(default: %(default)s)")
    runp.add_argument("--platform-token-file", default=None, metavar="FILE",
                      help="bearer token for the platform, read at every connection")
    runp.add_argument("--once", action="store_true", help="one round, then exit")
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
    runp.set_defaults(func=cmd_run, **env.run_defaults(env.environ()))


def run_settings(args: argparse.Namespace, environ: Any) -> settings.RunSettings:
    endpoint = env.platform_endpoint(environ)
    # Read here, not in register: a bad variable must not break --help or other commands.
    lead = env.leader_settings(environ)
    lead = dataclasses.replace(lead, **{k: v for k, v in (
        ("enabled", args.leader_elect), ("lease_name", args.leader_elect_lease),
        ("namespace", args.leader_elect_namespace)) if v is not None})
    return settings.RunSettings(
        sources=tuple(args.source or ([f"platform:{endpoint}"] if endpoint else [])),
        health_addr=args.health_addr, metrics_addr=args.metrics_addr,
        interval=args.interval, idle=args.idle, once=args.once,
        platform_token_file=args.platform_token_file,
        platform_token=env.platform_token(environ), leader=lead)


def cmd_run(args: argparse.Namespace) -> int:
    environ = env.environ()
    cfg = flags.settings_of(args, environ)
    op = operator.Operator(cfg, run_settings(args, environ), dry_run=args.dry_run,
                           on_batch=lambda batch: output.print_batch(batch, args.output))
    return op.run()
