"""The one place that turns settings into adapters."""

from __future__ import annotations

from pathlib import Path

from reconciler import errors, settings
from reconciler.adapters import opa, sqlite_store, store


def open_store(uri: str) -> store.Store:
    """``sqlite:PATH`` for a local SQLite file; ``kube`` for the CR store (later)."""
    if uri.startswith("sqlite:"):
        path = uri[len("sqlite:"):]
        if not path:
            raise errors.ConfigError(
                "--store sqlite: needs a path, e.g. sqlite:state/reconciler.db")
        return sqlite_store.SqliteStore(Path(path))
    if uri == "kube":
        raise errors.ConfigError("--store kube is not available yet: use sqlite:PATH")
    raise errors.ConfigError(f"unknown store {uri!r}: expected sqlite:PATH or kube")


def policy_engine(s: settings.PolicySettings) -> opa.PolicyEngine:
    token = None
    if s.token_file:
        try:
            token = Path(s.token_file).read_text().strip()
        except OSError as e:
            raise errors.ConfigError(f"cannot read token file {s.token_file}: {e.strerror}") from e
    if s.opa_url:
        return opa.SidecarEngine(s.opa_url, timeout=s.timeout, token=token)
    if not s.policy_dir.is_dir():
        raise errors.ConfigError(f"policy directory {s.policy_dir} does not exist")
    return opa.EmbeddedEngine(s.policy_dir)
