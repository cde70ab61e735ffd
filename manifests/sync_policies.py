"""Copy the default policy library into the chart, so `helm install` ships it.

`make chart-policies` runs this. It copies every ``policies/**/*.rego`` (not the
``*_test.rego`` files, nor hidden paths) and ``policies/data.yaml`` to
``manifests/files/policies/`` with the same relative paths, and removes whatever is there
and no longer in ``policies/``. The chart's policies ConfigMap is built from that copy
(templates/configmap-policies.yaml): each Rego file under the key ``configmap_key(path)``
(ConfigMap keys cannot hold ``/``; OPA reads a Rego module's package, not its path) and one
``data.yaml``.

``python manifests/sync_policies.py --check`` changes nothing and exits 1 listing the
stale files; tests/unit/chart/test_chart_policies_fresh.py fails the same way. Only the
standard library is used, so any Python 3.11 runs it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent
SOURCE = CHART.parent / "policies"
DEST = CHART / "files" / "policies"
DATA_FILE = "data.yaml"
# What a ConfigMap key may hold (Kubernetes: [-._a-zA-Z0-9]+, at most 253 characters).
_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def configmap_key(path: str) -> str:
    """The ConfigMap key of a library file: its relative path with ``/`` made ``.``
    (``scope/rules.rego`` -> ``scope.rules.rego``), as the chart's template does."""
    return path.replace("/", ".")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def library(source: Path | None = None) -> dict[str, bytes]:
    """The files the chart ships, relative POSIX path -> bytes.

    Raises ValueError when ``data.yaml`` is missing or two files would share a ConfigMap
    key (or a key is not a valid one).
    """
    source = source or SOURCE
    files: dict[str, bytes] = {}
    for p in sorted(source.rglob("*.rego")):
        rel = p.relative_to(source)
        if p.is_file() and not p.name.endswith("_test.rego") and not _hidden(rel):
            files[rel.as_posix()] = p.read_bytes()
    data = source / DATA_FILE
    if not data.is_file():
        raise ValueError(f"{data} is missing: the library's parameters must ship with it")
    files[DATA_FILE] = data.read_bytes()
    keys: dict[str, str] = {}
    for rel in files:
        key = configmap_key(rel)
        if not _KEY.fullmatch(key):
            raise ValueError(f"{rel}: {key!r} is not a valid ConfigMap key")
        if key in keys:
            raise ValueError(f"{keys[key]} and {rel} would both be ConfigMap key {key!r}")
        keys[key] = rel
    return files


def copied(dest: Path | None = None) -> dict[str, bytes]:
    """What the chart holds now, relative POSIX path -> bytes."""
    dest = dest or DEST
    if not dest.is_dir():
        return {}
    return {p.relative_to(dest).as_posix(): p.read_bytes()
            for p in sorted(dest.rglob("*")) if p.is_file()}


def stale(source: Path | None = None, dest: Path | None = None) -> list[str]:
    """Why the chart's copy differs from the library, one line per file; empty when fresh."""
    want, have = library(source), copied(dest)
    out = [f"missing: {rel}" for rel in sorted(want.keys() - have.keys())]
    out += [f"differs: {rel}" for rel in sorted(want.keys() & have.keys())
            if want[rel] != have[rel]]
    out += [f"extra: {rel}" for rel in sorted(have.keys() - want.keys())]
    return out


def sync(source: Path | None = None, dest: Path | None = None) -> list[str]:
    """Make the chart's copy equal to the library; returns what changed (as ``stale``)."""
    dest = dest or DEST
    changes = stale(source, dest)
    want, have = library(source), copied(dest)
    for rel, content in want.items():
        if have.get(rel) != content:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    for rel in have.keys() - want.keys():
        (dest / rel).unlink()
    for d in sorted((p for p in dest.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the chart's copy is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale()
            for line in problems:
                print(line)
            if problems:
                print(f"{DEST} is stale: run make chart-policies", file=sys.stderr)
            return 1 if problems else 0
        changes = sync()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    print(f"{DEST}: {len(library())} files, {len(changes)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
