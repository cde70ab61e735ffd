"""Driving `reconciler run` in-process and scraping it, for the run tests.

`run_until` runs the real CLI in the calling (main) thread, so that `cmd_run` installs its
SIGTERM handler, while a watcher thread scrapes /metrics; once ``done(scrape)`` holds it
records what ``extra()`` reads, then sends SIGTERM, which ends the loop between rounds.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import parser

from reconciler.cli import main as cli

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """Status and body; 0 when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        e.close()
        return int(e.code), body
    except OSError:
        return 0, ""


def samples(text: str) -> Scrape:
    """Every sample of a Prometheus text exposition, parsed by the client's own parser."""
    out: Scrape = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: Scrape, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def run_until(argv: Sequence[str], metrics_port: int, done: Callable[[str], bool],
              extra: Callable[[], dict[str, Any]] = dict,
              timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """Run `reconciler <argv>` until ``done(metrics text)``; returns (exit code, seen) where
    ``seen`` holds the last scrape under "metrics" and what ``extra()`` returned then."""
    seen: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
            if code == 200 and done(text):
                seen["metrics"] = text
                seen.update(extra())
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # cmd_run's handler: stop between rounds

    # While this runs, SIGTERM is harmless to the test process: cmd_run puts its own
    # handler in place and restores this one, so a signal that arrives after the CLI has
    # returned (it failed early, say) cannot kill pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rc = cli.main(list(argv))
    finally:
        watcher.join(timeout + 10)
        signal.signal(signal.SIGTERM, previous)
    return rc, seen
