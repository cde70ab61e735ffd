"""Standalone server: `python -m tests.fakes.kubeapi --port N --kubeconfig-out FILE`.

Serves until killed (SIGINT/SIGTERM) so the CLI, kubectl or a demo can talk to it; the
kubeconfig it writes points at http://127.0.0.1:N with a bearer token.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import types

import yaml

from tests.fakes.kubeapi import server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.kubeapi", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig-out", help="write a kubeconfig for this server here")
    parser.add_argument("--token", default=server.DEFAULT_TOKEN)
    parser.add_argument("--seed", action="append", default=[],
                        help="YAML file of objects to store at start (repeatable)")
    args = parser.parse_args(argv)
    srv = server.KubeApiServer(port=args.port, token=args.token).start()
    for path in args.seed:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                items = doc.get("items") or [] if doc.get("kind") == "List" else [doc]
                for obj in items:
                    rt = srv.store.find_type(obj["apiVersion"], obj["kind"])
                    srv.store._raw_put(rt, obj)
    if args.kubeconfig_out:
        srv.write_kubeconfig(args.kubeconfig_out)
    print(f"kubeapi serving on {srv.url}", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
