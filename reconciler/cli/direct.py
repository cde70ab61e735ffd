"""CLI for direct mode: `reconciler rollback ID`, and the pieces `reconciler apply
--mode direct` and `--store kube` are built from (called by reconciler/cli.py and
reconciler/wiring.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import kube as kube_store
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import drain
from reconciler.domain import errors
from reconciler.gitops import pipeline


def add_kube_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, metavar="FILE",
                   help="kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the "
                        "in-cluster service account)")
    p.add_argument("--context", default=None, metavar="NAME",
                   help="kubeconfig context (default: the current context)")


def add_direct_args(apply_parser: argparse.ArgumentParser) -> None:
    """Flags `apply --mode direct` needs (the caller adds --mode and --dry-run)."""
    add_kube_args(apply_parser)
    apply_parser.add_argument("--qps", type=float, default=kube.Options.qps, metavar="N",
                              help="client-side rate limit shared by every writer "
                                   "(requests/s; default: %(default)s)")
    apply_parser.add_argument("--burst", type=int, default=kube.Options.burst, metavar="N",
                              help="requests allowed at once above --qps "
                                   "(default: %(default)s)")
    apply_parser.add_argument("--server-dry-run", action=argparse.BooleanOptionalAction,
                              default=True,
                              help="direct mode: send each change as a server-side dry-run "
                                   "before the real (test-guarded) patch; --no-server-dry-run "
                                   "saves that request (default: on)")
    apply_parser.add_argument("--drain-timeout", type=float,
                              default=drain.DrainOptions.timeout, metavar="SECONDS",
                              help="node group recommendations: how long one node may take "
                                   "to drain (PodDisruptionBudgets may hold evictions back) "
                                   "before the drain stops, incomplete (default: "
                                   "%(default)s)")


def _options(args: argparse.Namespace) -> kube.Options:
    qps = float(getattr(args, "qps", kube.Options.qps))
    burst = int(getattr(args, "burst", kube.Options.burst))
    if qps <= 0 or burst < 1:
        raise errors.ConfigError(f"--qps must be > 0 and --burst >= 1 (got {qps}, {burst})")
    return kube.Options(qps=qps, burst=burst)


def _open(args: argparse.Namespace) -> tuple[store.Store, kube.Kube]:
    options = _options(args)
    client = kube.load_client(args.kubeconfig, args.context)
    api = kube.Kube(client, options)
    uri = getattr(args, "store", "") or "kube"
    if uri == "kube":
        return kube_store.KubeStore(api), api
    from reconciler import wiring

    return wiring.open_store(uri), api


def _policy(args: argparse.Namespace) -> settings.PolicySettings:
    return settings.PolicySettings(
        policy_dir=Path(getattr(args, "policies", "policies")),
        opa_url=getattr(args, "opa_url", ""), timeout=getattr(args, "opa_timeout", 2.0),
        token_file=getattr(args, "opa_token_file", ""),
        platform_data=getattr(args, "platform_data", None))


def apply_direct(args: argparse.Namespace, docs: list[Any]) -> pipeline.Batch:
    """One direct-mode batch against the cluster (records in the CR store there unless
    --store says otherwise); deletions waiting for a rollback are handled first."""
    from reconciler import wiring

    timeout = float(getattr(args, "drain_timeout", drain.DrainOptions.timeout))
    if timeout <= 0:
        raise errors.ConfigError(f"--drain-timeout must be > 0 (got {timeout})")
    cfg = settings.Settings(policy=_policy(args),
                            store=settings.StoreSettings(uri=getattr(args, "store", "") or
                                                         "kube"),
                            direct=settings.DirectSettings(
                                server_dry_run=bool(getattr(args, "server_dry_run", True)),
                                drain_timeout=timeout),
                            now=getattr(args, "now", ""))
    st, api = _open(args)
    engine = wiring.policy_engine(cfg.policy)
    try:
        if not getattr(args, "dry_run", False):
            for item in direct.reconcile_deletions(st, api, now=cfg.now):
                print(f"deleted recommendation {item.id}: {item.phase}: {item.message}",
                      file=sys.stderr)
        return direct.run(docs, cfg, st, engine, api, dry_run=getattr(args, "dry_run", False))
    finally:
        engine.close()
        st.close()
        api.api_client.close()


def run_apply_direct(args: argparse.Namespace, docs: list[Any]) -> int:
    """`reconciler apply --mode direct`: one batch, printed like the GitOps mode does."""
    from reconciler.cli import main as cli

    cli.print_batch(apply_direct(args, docs), getattr(args, "output", "text"))
    return 0


def rollback(args: argparse.Namespace, rec_id: str, kind: str) -> Any:
    """One direct-mode rollback (a results.ItemResult), against the cluster of ``args``."""
    st, api = _open(args)
    try:
        return direct.rollback(rec_id, st, api, kind=kind)
    finally:
        st.close()
        api.api_client.close()


def cmd_rollback(args: argparse.Namespace) -> int:
    """Exit 0 when rolled back (or nothing to do), 1 when refused or not found."""
    st, api = _open(args)
    try:
        item = direct.rollback(args.id, st, api)
    except errors.NotFoundError as e:
        print(f"reconciler: {e}", file=sys.stderr)
        return 1
    finally:
        st.close()
        api.api_client.close()
    refused = item.message.startswith("rollback refused")
    if args.output == "json":
        print(json.dumps({"id": item.id, "phase": item.phase, "message": item.message,
                          "refused": refused}, indent=2))
    else:
        print(f"{item.id}: {item.phase}: {item.message}")
    return 1 if refused else 0
