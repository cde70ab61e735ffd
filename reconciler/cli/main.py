"""The ``reconciler`` command: parses arguments, runs one command group, maps failures to
exit codes.

Exit codes: 0 when the work ran (refusals are results, not errors), 2 for unusable input
or settings (the message names the problem), 1 for a failure while running, whatever it
is: a bug of ours (a RecursionError, a MemoryError, anything) is one line naming it, and
``--debug`` adds the traceback. No traceback reaches a user who did not ask for one. Each command
group lives in its own module with a ``register(subparsers)``; the work itself happens
below the CLI (``runtime``, ``devtools``), which never imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from reconciler import __version__
from reconciler.cli import apply, demo, policy, rollback, run, stream, webhook
from reconciler.config import env
from reconciler.domain import errors
from reconciler.domain import text as txt

# An error line: room for every problem of an invalid configuration, and a bound all the
# same (an error may echo a whole input).
ERROR_LIMIT = 2000

# The order of `reconciler --help`.
GROUPS = (apply, run, webhook, demo, rollback, policy, stream)


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
    parser.add_argument("--debug", action="store_true",
                        help="debug log output, and the traceback of a failure")
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
    debug = bool(getattr(args, "debug", False))
    try:
        level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
        if debug:
            level = logging.DEBUG
        elif not args.verbose:
            level = env.log_level(env.environ()) or level
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
        rc: int = args.func(args)
        return rc
    except errors.ConfigError as e:
        # The message may echo input (a path, a value, a server's answer): one line, no
        # escape sequence (domain/text.py).
        return _report("error", txt.said(e), 2, debug)
    except errors.ReconcilerError as e:
        return _report("failed", txt.said(e), 1, debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # the machine said no: a full disk, a permission, a lost file
        where = f" ({e.filename})" if e.filename else ""
        return _report("failed", f"{e.strerror or e}{where}", 1, debug)
    except Exception as e:  # a bug of ours, RecursionError and MemoryError included
        return _report("internal error", f"{type(e).__name__}: {txt.said(e)} (a bug: please report "
                       "it with the output of --debug)", 1, debug)


class OneLineFormatter(logging.Formatter):
    """Every log record on one line, whatever its arguments held: a value from a
    recommendation, a repository or a server cannot forge a second record or send an
    escape sequence to whatever shows the log (``text.escape_controls``). The modules
    escape what they log too; this is the one place nothing gets past. A traceback
    (``--debug``, ``log.exception``) follows on its own lines, as Python writes it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return txt.escape_controls(super().formatMessage(record))


def _report(label: str, message: str, rc: int, debug: bool) -> int:
    """One line on stderr, escaped and bounded; the traceback first under ``--debug``."""
    if debug:
        traceback.print_exc(file=sys.stderr)
    print(f"reconciler: {label}: {txt.terminal(message, ERROR_LIMIT)}", file=sys.stderr)
    return rc

