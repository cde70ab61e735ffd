"""The one place that turns settings into adapters."""

from __future__ import annotations

import logging
from pathlib import Path

from reconciler.adapters import git, kube
from reconciler.adapters.forge import port as forge
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import kube as kube_store
from reconciler.adapters.store import port as store
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.config import settings
from reconciler.domain import errors

log = logging.getLogger(__name__)


def open_store(uri: str, kubeconfig: str | None = None,
               context: str | None = None) -> store.Store:
    """``sqlite:PATH`` for a local SQLite file; ``kube`` for the custom resources in the
    cluster of ``kubeconfig``/``context`` (default: in-cluster, else ~/.kube/config)."""
    if uri.startswith("sqlite:"):
        path = uri[len("sqlite:"):]
        if not path:
            raise errors.ConfigError(
                "--store sqlite: needs a path, e.g. sqlite:state/reconciler.db")
        return sqlite_store.SqliteStore(Path(path))
    if uri == "kube":
        return kube_store.open_store(kubeconfig, context)
    raise errors.ConfigError(f"unknown store {uri!r}: expected sqlite:PATH or kube")


def read_secret(path: str, what: str) -> str | None:
    """A secret from a file (a mounted Secret), stripped; None when no file is configured."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as e:
        raise errors.ConfigError(f"cannot read {what} file {path}: {e.strerror}") from e


def pull_requests(s: settings.Settings) -> forge.Forge:
    """The forge that carries the batch's pull request (a local one needs nothing)."""
    token = read_secret(s.forge.token_file, "forge token") or s.forge.token or None
    remote, _ = git.split_credentials(s.git.repo)
    return forge.from_settings(s.forge.kind, s.forge.url, s.forge.repo, token,
                               s.forge.state_dir, remote)


def policy_engine(s: settings.PolicySettings) -> opa.PolicyEngine:
    token = read_secret(s.token_file, "OPA token")
    if s.opa_url:
        side = opa.SidecarEngine(s.opa_url, timeout=s.timeout, token=token)
        if s.platform_data is not None and s.platform_data.is_file():
            # The sidecar keeps data in memory: give it the platform's parameters again
            # (a restarted sidecar has lost them). Decisions do not wait on this.
            try:
                side.put_data(policy_data.ROOT, policy_data.load(s.platform_data))
            except errors.ReconcilerError as e:
                log.warning("platform policy data not sent to OPA: %s", e)
        return side
    if not s.policy_dir.is_dir():
        raise errors.ConfigError(f"policy directory {s.policy_dir} does not exist")
    return opa.EmbeddedEngine(s.policy_dir, optional_data=(
        [s.platform_data] if s.platform_data is not None else []))


def cluster_api(s: settings.ClusterSettings) -> kube.Kube | None:
    """The adapter the GitOps pipeline reads cluster facts through, when asked for."""
    if not s.facts:
        return None
    return kube.Kube(kube.load_client(s.kubeconfig, s.context))
