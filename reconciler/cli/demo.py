"""``reconciler demo``: the whole flow on the bundled example (``devtools.demo``), printed
for a new user to follow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.cli import flags, output
from reconciler.devtools import demo

DEMO_POLICY_DATA = flags.PROJECT_ROOT / "examples" / "policy-data.yaml"


def register(sub: Any) -> None:
    dp = sub.add_parser(
        "demo", help="run the whole flow on the bundled example (no cluster, no network)",
        description="Creates a Git repository with the Online Boutique manifests and a bare "
                    "origin, runs examples/recommendations.yaml through the embedded OPA engine "
                    "and the GitOps writer, pushes a branch and writes the pull-request body. "
                    "Run it twice with the same --workdir: the second run makes no commit.")
    dp.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                    help="keep everything under DIR (origin at DIR/origin.git, store, "
                         "DIR/pull-request.md); default: a new temporary directory")
    dp.add_argument("-f", "--filename", type=Path,
                    default=flags.PROJECT_ROOT / "examples" / "recommendations.yaml",
                    metavar="RECS.yaml", help="recommendations to use (default: %(default)s)")
    dp.add_argument("--manifests", type=Path,
                    default=flags.PROJECT_ROOT / "examples" / "microservices-demo",
                    metavar="DIR",
                    help="manifests that seed the demo repository (default: %(default)s)")
    dp.add_argument("--source", choices=("stream", "file"), default="stream",
                    help="stream: serve the file from the reference gRPC platform on "
                         "loopback and ingest it over the stream; file: read it directly "
                         "(default: %(default)s)")
    dp.add_argument("--now", default="", metavar="RFC3339", help="the time policies see")
    flags.add_policy(dp)
    flags.add_output(dp)
    # Coverage is opt-in: the demo opts its namespace in, the step a new user takes too.
    dp.set_defaults(func=cmd_demo, policy_data=[DEMO_POLICY_DATA])


def cmd_demo(args: argparse.Namespace) -> int:
    d = demo.run(args.workdir, args.manifests, args.filename, args.source,
                 flags.policy_settings(args), args.now)
    batch, origin = d.batch, d.origin
    if args.output == "json":
        output.print_batch(batch, "json")
        return 0
    print(f"dakr reconciler demo in {d.workdir}")
    print(f"  {d.received} recommendations from {args.filename}, policies from {args.policies}")
    print(f"  opted in by {', '.join(str(p) for p in args.policy_data)} (coverage is opt-in: "
          "the library alone covers no workload)")
    if d.via:
        print(f"  {d.via}")
    print()
    output.print_batch(batch, "text")
    print()
    if batch.branch:
        print(f"Pushed {batch.branch} to {origin}:")
        print(demo.diff_stat(origin, batch.branch))
        print()
        print("Look at it:")
        print(f"  git --git-dir {origin} log --oneline main..{batch.branch}")
        print(f"  git --git-dir {origin} diff main {batch.branch}")
        print(f"  less {d.pull_request_body}")
        print(f"  reconciler demo --workdir {d.workdir}   # again: no new commit, no new PR")
    return 0
