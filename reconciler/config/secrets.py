"""The one reader of secrets from files (mounted Secrets): tokens for the forge, the OPA
sidecar and the platform.

A token never reaches a log line, an error message or a repr: errors name the file, not
its content. Files are read when needed, not cached, so a rotated Secret is picked up.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.domain import errors


def read_token(path: str | None, what: str) -> str | None:
    """The token in ``path``, stripped; None when no file is configured or it is empty.
    Raises ConfigError naming the file (never its content) when it cannot be read."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as e:
        raise errors.ConfigError(f"cannot read {what} file {path}: {e.strerror}") from e
