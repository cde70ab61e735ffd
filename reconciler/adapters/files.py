"""Recommendation files: YAML or JSON, several objects per file as documents or a ``List``.

A file that cannot be read or parsed at all, or that breaks an input limit (size,
documents, depth, aliases, expanded values, string length: ``domain.limits``), is unusable
input (``errors.ConfigError``, the CLI exits 2, with one line naming the file and the
limit); a file that parses yields raw documents, each validated on its own later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.domain import errors
from reconciler.domain import limits as limits_mod
from reconciler.yamledit import bounded


def load_documents(path: str | Path,
                   limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> list[Any]:
    """Every recommendation document in the file, ``List`` items flattened, empty docs dropped."""
    p = Path(path)
    try:
        raw = _read(p, limits.bytes + 1) if str(path) != "-" else _stdin_bytes(limits.bytes + 1)
    except OSError as e:
        raise errors.ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    if len(raw) > limits.bytes:
        raise limits.breach("bytes", f"more than {limits.bytes} bytes", str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise errors.ConfigError(f"{path}: not valid UTF-8 (byte {e.start})") from e
    return parse_documents(text, str(path), limits)


def _read(p: Path, most: int) -> bytes:
    """At most ``most`` bytes: a huge file (or /dev/zero) is not read to the end."""
    with p.open("rb") as f:
        return f.read(most)


def _stdin_bytes(most: int) -> bytes:
    import sys

    return sys.stdin.buffer.read(most)


def parse_documents(text: str, origin: str = "<input>",
                    limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> list[Any]:
    """Documents of a YAML or JSON text; ``List``/``<Kind>List`` objects and JSON arrays are
    unpacked, empty documents dropped. JSON is tried first (it is the faster parser); YAML,
    its superset, reads everything else, flow-style YAML documents included."""
    docs: list[Any]
    try:
        docs = [bounded.load_json(text, limits, origin)]
    except ValueError:
        docs = bounded.load_yaml(text, limits, origin)  # a ConfigError naming origin
    out: list[Any] = []
    for d in docs:
        if d is None:
            continue
        if isinstance(d, list):
            out.extend(d)
        elif isinstance(d, dict) and str(d.get("kind", "")).endswith("List") \
                and isinstance(d.get("items"), list):
            out.extend(d["items"])
        else:
            out.append(d)
    if len(out) > limits.documents:
        raise limits.breach("documents", f"{len(out)} documents", origin)
    return out
