"""The ``reconciler`` command: parses arguments, runs one command group, maps failures to
exit codes.

Exit codes: 0 when the work ran (refusals are results, not errors), 2 for unusable input
or settings (the message names the problem), 1 for a failure while running. Each command
group lives in its own module with a ``register(subparsers)``; the work itself happens
below the CLI (``runtime``, ``devtools``), which never imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from reconciler import __version__
from reconciler.cli import apply, demo, policy, rollback, run, stream
from reconciler.config import env
from reconciler.domain import errors

# The order of `reconciler --help`.
GROUPS = (apply, run, demo, rollback, policy, stream)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="dakr reconciler: checks cost recommendations against Rego policies and "
                    "applies the approved ones as a reviewed GitOps change or through the "
                    "Kubernetes API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
        if not args.verbose:
            level = env.log_level(env.environ()) or level
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        rc: int = args.func(args)
        return rc
    except errors.ConfigError as e:
        print(f"reconciler: error: {e}", file=sys.stderr)
        return 2
    except errors.ReconcilerError as e:
        print(f"reconciler: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
