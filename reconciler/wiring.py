"""The one place that turns settings into adapters.

Commands and the operator ask for ``Parts`` (the adapters of one process) and hand them to
the work; no module below builds an adapter from settings, so what talks to which system,
with which credentials, is decided here and nowhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.adapters import git, kube
from reconciler.adapters.forge import gitea, github, gitlab
from reconciler.adapters.forge import local as local_forge
from reconciler.adapters.forge import port as forge
from reconciler.adapters.opa import embedded, sidecar
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import kube as kube_store
from reconciler.adapters.store import port as store
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.config import secrets, settings
from reconciler.domain import errors
from reconciler.domain import limits as limits_mod

log = logging.getLogger(__name__)

# The forges ``--forge`` (and ``forge.kind`` in the settings) may name; local needs no server.
FORGE_KINDS = ("local", "github", "gitlab", "gitea")


def api_client(k: settings.KubeSettings) -> Any:
    """An ApiClient for the cluster the settings name (kubeconfig and context, else the
    mounted service account in a pod, else ~/.kube/config)."""
    return kube.load_client(k.kubeconfig, k.context, in_cluster=k.in_cluster)


def kube_api(k: settings.KubeSettings, client: Any | None = None) -> kube.Kube:
    """The API adapter every writer goes through (rate limit, retries, error translation)."""
    return kube.Kube(client if client is not None else api_client(k),
                     kube.Options(qps=k.qps, burst=k.burst, service_account=k.service_account,
                                  cache_ttl=k.cache_ttl, list_workloads=k.list_workloads))


def open_store(uri: str, k: settings.KubeSettings | None = None,
               api: kube.Kube | None = None) -> store.Watchable:
    """``sqlite:PATH`` for a local SQLite file; ``kube`` for the custom resources in the
    cluster (through ``api`` when given, else on its own client, closed with the store)."""
    if uri.startswith("sqlite:"):
        path = uri[len("sqlite:"):]
        if not path:
            raise errors.ConfigError(
                "--store sqlite: needs a path, e.g. sqlite:state/reconciler.db")
        return sqlite_store.SqliteStore(Path(path))
    if uri == "kube":
        if api is not None:
            return kube_store.KubeStore(api)
        return kube_store.KubeStore(kube_api(k or settings.KubeSettings()), owns_client=True)
    raise errors.ConfigError(f"unknown store {uri!r}: expected sqlite:PATH or kube")


def pull_requests(s: settings.Settings) -> forge.Forge:
    """The forge that carries the batch's pull request (a local one needs nothing)."""
    token = secrets.read_token(s.forge.token_file, "forge token") or s.forge.token or None
    remote, _ = git.split_credentials(s.git.repo)
    return from_settings(s.forge.kind, s.forge.url, s.forge.repo, token, s.forge.state_dir,
                         remote)


def from_settings(kind: str, url: str, repo: str, token: str | None, state_dir: Path,
                  remote_url: str) -> forge.Forge:
    """The forge for the settings / command line (``--forge``, ``--forge-url``, token file).

    ``url`` may be empty for GitHub (api.github.com) and GitLab (gitlab.com); GitLab and
    Gitea URLs may be given with or without their ``/api/v4`` / ``/api/v1`` suffix.
    """
    kind = kind.strip().lower()
    if kind == "local":
        return local_forge.LocalForge(state_dir, remote_url)
    repo = repo or forge.repo_from_remote(remote_url)
    if not repo:
        raise errors.ConfigError(f"forge {kind}: the repository (owner/name) is required")
    if kind == "github":
        return github.GitHubForge(url or "https://api.github.com", repo, token)
    if kind == "gitlab":
        return gitlab.GitLabForge(url or "https://gitlab.com", repo, token)
    if kind == "gitea":
        if not url:
            raise errors.ConfigError("forge gitea: the forge URL is required")
        return gitea.GiteaForge(url, repo, token)
    raise errors.ConfigError(
        f"unknown forge {kind!r} (expected one of {', '.join(FORGE_KINDS)})")


def policy_engine(s: settings.PolicySettings,
                  limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> opa.PolicyEngine:
    """The engine the settings name; ``limits`` bound the data files it reads (the
    platform's parameters among them, stored by the stream within the same limits)."""
    token = secrets.read_token(s.token_file, "OPA token")
    if s.opa_url:
        side = sidecar.SidecarEngine(s.opa_url, timeout=s.timeout, token=token,
                                     path=s.decision_path)
        if s.platform_data is not None and s.platform_data.is_file():
            # The sidecar keeps data in memory: give it the platform's parameters again
            # (a restarted sidecar has lost them). Decisions do not wait on this.
            try:
                side.put_data(policy_data.ROOT, policy_data.load(s.platform_data, limits))
            except errors.ReconcilerError as e:
                log.warning("platform policy data not sent to OPA: %s", e)
        return side
    if not s.policy_dir.is_dir():
        raise errors.ConfigError(f"policy directory {s.policy_dir} does not exist")
    return embedded.EmbeddedEngine(
        s.policy_dir, s.data_files, reload_interval=s.reload_interval,
        optional_data=[s.platform_data] if s.platform_data is not None else [],
        limits=limits)


@dataclasses.dataclass
class Parts:
    """The adapters one job (or the operator, for its whole life) works through, opened
    once and closed once: the store, the policy engine, the forge, the API adapter."""

    store: store.Watchable
    engine: opa.PolicyEngine | None = None
    prs: forge.Forge | None = None  # where pull requests are opened
    api: kube.Kube | None = None

    def need_engine(self) -> opa.PolicyEngine:
        if self.engine is None:
            raise errors.ConfigError("this work needs a policy engine and none was opened")
        return self.engine

    def need_prs(self) -> forge.Forge:
        if self.prs is None:
            raise errors.ConfigError("GitOps mode needs a repository (--repo)")
        return self.prs

    def need_api(self) -> kube.Kube:
        if self.api is None:
            raise errors.ConfigError("this work needs the Kubernetes API and none was opened")
        return self.api

    def close(self) -> None:
        for closer in (self.store.close,
                       self.engine.close if self.engine is not None else None,
                       getattr(self.prs, "close", None),
                       self.api.api_client.close if self.api is not None else None):
            if closer is not None:
                try:
                    closer()
                except Exception:  # closing one must not keep the others open
                    log.exception("closing %s failed", closer)


def build_parts(s: settings.Settings, *, engine: bool = True) -> Parts:
    """The adapters the configured writers need (``Settings.writers``): a forge for pull
    requests, the API for direct changes (and for cluster facts), which a ``kube`` store
    shares. ``engine=False`` for work that decides nothing (a rollback). The caller
    closes them (``Parts.close``); a long-lived operator keeps them for its life."""
    api = kube_api(s.kube) if s.reads_cluster else None
    parts = Parts(store=open_store(s.store.uri, s.kube, api), api=api)
    try:
        if "gitops" in s.writers:
            parts.prs = pull_requests(s)
        if engine:
            parts.engine = policy_engine(s.policy, s.limits)
    except BaseException:
        parts.close()
        raise
    return parts


@contextlib.contextmanager
def open_parts(s: settings.Settings, *, engine: bool = True) -> Iterator[Parts]:
    """``build_parts`` for one job: closed when the job is done."""
    parts = build_parts(s, engine=engine)
    try:
        yield parts
    finally:
        parts.close()
