"""``reconciler rollback ID``: put back what an applied recommendation replaced."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from reconciler import wiring
from reconciler.cli import flags, output
from reconciler.config import env, settings
from reconciler.domain import errors, model
from reconciler.runtime import jobs


def register(sub: Any) -> None:
    rp = sub.add_parser(
        "rollback", help="put back the values an applied recommendation replaced",
        description="GitOps (--repo): open a revert pull request that restores the values "
                    "recorded in the recommendation's status.previous; it is refused when "
                    "the repository no longer holds what the recommendation set, and the "
                    "recommendation becomes RolledBack when the revert merges. Direct "
                    "(no --repo): restore them in the cluster with a patch that only applies "
                    "if the values it set are still there, then release the rollback "
                    "finalizer. Exit 0 when rolled back or proposed, 1 when refused or not "
                    "found.")
    rp.add_argument("id", metavar="ID", help="recommendation id")
    flags.add_gitops(rp)
    flags.add_kube(rp)
    rp.add_argument("--now", default="", metavar="RFC3339", help=argparse.SUPPRESS)
    flags.add_output(rp)
    rp.set_defaults(func=cmd_rollback)


def cmd_rollback(args: argparse.Namespace) -> int:
    args.mode = "gitops" if args.repo else "direct"
    cfg = flags.settings_of(args, env.environ())
    if cfg.mode == "direct":
        return _direct(cfg, args)
    cfg = dataclasses.replace(cfg, git=dataclasses.replace(cfg.git, scope="batch"))
    try:
        with wiring.open_parts(cfg, engine=False) as parts:
            item = jobs.gitops_rollback(parts, cfg, args.id)
    except (errors.NotFoundError, errors.PermanentError) as e:
        if isinstance(e, errors.ConfigError):
            raise
        print(f"reconciler: rollback of {args.id} refused: {e}", file=sys.stderr)
        return 1
    output.print_item(item, args.output)
    return 0


def _direct(cfg: settings.Settings, args: argparse.Namespace) -> int:
    """Exit 0 when rolled back (or nothing to do), 1 when refused or not found."""
    try:
        with wiring.open_parts(cfg, engine=False) as parts:
            item = jobs.direct_rollback(parts, args.id, model.WORKLOAD)
    except errors.NotFoundError as e:
        print(f"reconciler: {e}", file=sys.stderr)
        return 1
    refused = jobs.refused(item)
    if args.output == "json":
        print(json.dumps({"id": item.id, "phase": item.phase, "message": item.message,
                          "refused": refused}, indent=2))
    else:
        print(f"{item.id}: {item.phase}: {item.message}")
    return 1 if refused else 0
