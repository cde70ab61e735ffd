"""Recommendation files: YAML or JSON, several objects per file as documents or a ``List``.

A file that cannot be read or parsed at all is unusable input (``errors.ConfigError``, the
CLI exits 2); a file that parses yields raw documents, each validated on its own later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from reconciler.domain import errors

MAX_FILE_BYTES = 64 * 2**20

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(path: str | Path) -> list[Any]:
    """Every recommendation document in the file, ``List`` items flattened, empty docs dropped."""
    p = Path(path)
    try:
        raw = p.read_bytes() if str(path) != "-" else _stdin_bytes()
    except OSError as e:
        raise errors.ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise errors.ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise errors.ConfigError(f"{path}: not valid UTF-8 (byte {e.start})") from e
    return parse_documents(text, str(path))


def _stdin_bytes() -> bytes:
    import sys

    return sys.stdin.buffer.read()


def parse_documents(text: str, origin: str = "<input>") -> list[Any]:
    """Documents of a YAML or JSON text; ``List``/``<Kind>List`` objects and JSON arrays are
    unpacked, empty documents dropped. JSON is tried first (it is the faster parser); YAML,
    its superset, reads everything else, flow-style YAML documents included."""
    docs: list[Any]
    try:
        parsed = json.loads(text)
        docs = [parsed]
    except ValueError:
        try:
            docs = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise errors.ConfigError(f"{origin}: invalid YAML or JSON{where}: {problem}") from e
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
    return out
