"""CLI subcommands for the stream and the other sources: ingest, list, platform serve, import.

``register(subparsers)`` adds them to the main parser; each sets ``func(args) -> int``.
Exit codes: 0 done, 1 some input was refused, 2 unusable settings (``errors.ConfigError``,
mapped by ``cli.main`` like every command's).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

import yaml

from reconciler import wiring
from reconciler.adapters import importers
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.cli import flags, output
from reconciler.config import env
from reconciler.devtools import platform
from reconciler.domain import errors, model, validation
from reconciler.stream import client
from reconciler.stream import state as stream_state

log = logging.getLogger(__name__)

def open_store(args: argparse.Namespace) -> store.Store:
    """The store named by ``--store`` (sqlite:PATH, or kube with --kubeconfig/--context)."""
    return wiring.open_store(args.store, flags.kube_settings(args, env.environ()))


# -- ingest -------------------------------------------------------------------------------

def _ingest(args: argparse.Namespace) -> int:
    if args.until_idle is not None and args.until_idle <= 0:
        raise errors.ConfigError("--until-idle must be a positive number of seconds")
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        tls = client.TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key,
                              server_name=args.tls_server_name)
    cfg = client.ClientConfig(
        target=args.platform, cluster_id=args.cluster_id, tls=tls, token_file=args.token_file,
        keepalive_time_ms=args.keepalive_time_ms, keepalive_timeout_ms=args.keepalive_timeout_ms,
        heartbeat_timeout=args.heartbeat_timeout, backoff_max=args.backoff_max,
        backoff_initial=min(1.0, args.backoff_max),
        allowed_crd_groups=tuple(args.allow_crd_group or client.DEFAULT_ALLOWED_GROUPS),
        limits=flags.input_limits(args, env.environ()))
    st = open_store(args)
    state = stream_state.StreamState(stream_state.default_path(args.store, args.state))
    c = client.StreamClient(cfg, st, state)
    if args.until_idle is None:
        def stop(*_: object) -> None:
            c.stop()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
    try:
        stats = c.run(until_idle=args.until_idle)
    finally:
        state.close()
        st.close()
    print(f"stored {stats.stored}, duplicates {stats.duplicates}, refused {stats.nacked}, "
          f"connections {stats.connections}", file=sys.stderr)
    return 0


# -- list ---------------------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    st = open_store(args)
    try:
        records = st.list(kind=args.kind, phase=args.phase)
    finally:
        st.close()
    output.print_records(records, args.output)
    return 0


# -- import -------------------------------------------------------------------------------

def _import(args: argparse.Namespace) -> int:
    result = importers.load(args.source, args.file)
    for s in result.skipped:
        print(f"skipped {s.source}: {s.reason}", file=sys.stderr)
    good: list[dict[str, Any]] = []
    refused = 0
    items: list[batch.Item] = []
    for doc in result.documents:
        try:
            rec = validation.parse(doc)
        except errors.ValidationError as e:
            refused += 1
            print(f"refused {validation.raw_id(doc) or '(no id)'}: {e}", file=sys.stderr)
            continue
        good.append(doc)
        items.append(batch.Item.of(rec))
    if args.store:
        st = open_store(args)
        try:
            results = batch.upsert_many(st, items)
        finally:
            st.close()
        new = sum(1 for r in results if r.changed)
        print(f"stored {new}, unchanged {len(results) - new}, refused {refused}, "
              f"skipped {len(result.skipped)}", file=sys.stderr)
    elif args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": good}, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump_all(good, sort_keys=False) if good else "")
    return 1 if refused else 0


# -- registration -------------------------------------------------------------------------

def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ingest", help="receive recommendations from the platform stream into a store")
    p.add_argument("--platform", required=True, metavar="HOST:PORT")
    p.add_argument("--store", required=True, metavar="URI", help="sqlite:PATH or kube")
    flags.add_kube(p)
    p.add_argument("--until-idle", type=float, metavar="SECONDS",
                   help="exit once nothing arrived for this long (default: run until stopped)")
    p.add_argument("--tls", action="store_true", help="TLS with the system's trusted roots")
    p.add_argument("--tls-ca", metavar="FILE", help="CA bundle to verify the platform with")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="client key (mutual TLS)")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="name to expect in the platform's certificate")
    p.add_argument("--token-file", metavar="FILE",
                   help="bearer token, re-read on every connection (rotation)")
    p.add_argument("--cluster-id", default="default")
    p.add_argument("--state", metavar="FILE",
                   help="cursor and outbox file (default: next to a SQLite store, else "
                        f"{stream_state.DEFAULT_PATH})")
    p.add_argument("--keepalive-time-ms", type=int, default=10_000)
    p.add_argument("--keepalive-timeout-ms", type=int, default=5_000)
    p.add_argument("--heartbeat-timeout", type=float, default=20.0, metavar="SECONDS")
    p.add_argument("--backoff-max", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--allow-crd-group", action="append", metavar="GROUP",
                   help="API group whose CRDs the platform may install (repeatable)")
    flags.add_limits(p)
    p.set_defaults(func=_ingest)

    p = subparsers.add_parser("list", help="print stored recommendations with their phase")
    p.add_argument("--store", required=True, metavar="URI", help="sqlite:PATH or kube")
    flags.add_kube(p)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--kind", choices=model.KINDS)
    p.add_argument("--phase")
    p.set_defaults(func=_list)

    p = subparsers.add_parser("platform", help="the reference recommendation platform")
    sub = p.add_subparsers(dest="platform_command", required=True)
    serve = sub.add_parser("serve", help="stream recommendations from a file over gRPC")
    platform.add_arguments(serve)
    serve.set_defaults(func=platform.serve)

    p = subparsers.add_parser("import", help="recommendations from VPA objects or KRR output")
    sub = p.add_subparsers(dest="source", required=True)
    for source, text in (("vpa", "VerticalPodAutoscaler objects (YAML/JSON, '-' for stdin)"),
                         ("krr", "a `krr simple -f json` report ('-' for stdin)")):
        s = sub.add_parser(source, help=text)
        s.add_argument("file", metavar="FILE")
        s.add_argument("--store", metavar="URI",
                       help="store them (sqlite:PATH); without it they are printed")
        flags.add_kube(s)
        s.add_argument("--output", choices=("yaml", "json"), default="yaml")
        s.set_defaults(func=_import)
