"""``reconciler apply``: one batch of recommendations from files, through policy, to a pull
request (GitOps) or to the cluster (direct)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler import wiring
from reconciler.adapters import files
from reconciler.cli import flags, output
from reconciler.config import env
from reconciler.flow import audit
from reconciler.runtime import jobs


def register(sub: Any) -> None:
    ap = sub.add_parser(
        "apply", help="run one batch of recommendations through policy and the GitOps writer",
        description="Validate every recommendation in the file(s), ask policy about each, edit "
                    "the approved workloads' manifests in the repository with a minimal diff, "
                    "commit on one branch (dakr/batch-<hash>), push it, and write the "
                    "pull-request body. Refused and invalid recommendations are reported with "
                    "their reasons; nothing is written for them.")
    ap.add_argument("-f", "--filename", action="append", required=True, metavar="RECS.yaml",
                    help="recommendations (YAML or JSON; several documents or a List; '-' for "
                         "stdin); repeatable")
    flags.add_batch(ap)
    ap.set_defaults(func=cmd_apply)


def cmd_apply(args: argparse.Namespace) -> int:
    cfg = flags.settings_of(args, env.environ())
    docs: list[object] = []
    for f in args.filename:
        docs.extend(files.load_documents(f, cfg.limits))
    if cfg.mode == "audit":
        print(f"note: {audit.HOW}", file=sys.stderr)
    with wiring.open_parts(cfg) as parts:
        if "direct" in cfg.writers and not args.dry_run:
            for item in jobs.release_deletions(parts, cfg):
                print(f"deleted recommendation {item.id}: {item.phase}: {item.message}",
                      file=sys.stderr)
        batch = jobs.batch(parts, cfg, docs, dry_run=args.dry_run)
    output.print_batch(batch, args.output)
    return 0
