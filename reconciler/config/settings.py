"""Settings, grouped by the system they configure. Read once at the entry point (the CLI)
and passed explicitly; nothing below the entry point reads the environment or argv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.gitops import layout


@dataclass(frozen=True)
class PolicySettings:
    policy_dir: Path = Path("policies")
    opa_url: str = ""          # empty: the embedded engine; else the OPA sidecar's base URL
    timeout: float = 2.0
    token_file: str = ""       # bearer token for the sidecar, read at start
    # The platform's policy parameters (data.platform), when `run` receives them.
    platform_data: Path | None = None


@dataclass(frozen=True)
class GitSettings:
    repo: str = ""             # URL or path of the GitOps repository (origin)
    base: str = "main"
    clone_dir: Path = Path("state/clone")
    # Where values live: plain manifests, a Kustomize overlay or a Helm values file, and
    # the namespace of manifests that set none (see examples/layouts/).
    layout: layout.Layout = field(default_factory=layout.Layout)
    branch_prefix: str = "dakr/"
    scope: str = "batch"       # one branch per: batch | namespace | workload
    depth: int = 0             # > 0: a shallow working clone of that many commits
    push_retries: int = 3


@dataclass(frozen=True)
class ForgeSettings:
    kind: str = "local"        # local | github | gitlab | gitea
    url: str = ""              # API base URL (empty: github.com / gitlab.com)
    repo: str = ""             # owner/name; empty: derived from the remote URL
    token_file: str = ""       # read once at start; never logged
    token: str = ""            # from the environment (a Secret) when there is no file
    labels: tuple[str, ...] = ("dakr",)
    state_dir: Path = Path("state")  # local forge: PR records and bodies


@dataclass(frozen=True)
class StoreSettings:
    uri: str = "sqlite:state/reconciler.db"


@dataclass(frozen=True)
class ClusterSettings:
    """Live cluster facts for the policy input (HPA, PDBs, and with ``nodes`` the pods on
    the nodes a consolidation would drain). Off: the policy sees none, and refuses what
    needs them (a node drain); direct mode always reads them."""

    facts: bool = False
    nodes: bool = False        # reading pods cluster-wide is a broad right: opt in
    kubeconfig: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class DirectSettings:
    """Direct mode. ``server_dry_run``: send each workload change as a server-side dry-run
    before the real patch (admission refusals found before the status says Applying). The
    real patch is guarded by `test` operations either way, so turning it off only saves a
    request per change; a refusal then ends Failed after the way back is recorded."""

    server_dry_run: bool = True
    drain_timeout: float = 300.0  # node groups: seconds one node may take to drain


@dataclass(frozen=True)
class Settings:
    policy: PolicySettings = field(default_factory=PolicySettings)
    git: GitSettings = field(default_factory=GitSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    forge: ForgeSettings = field(default_factory=ForgeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    direct: DirectSettings = field(default_factory=DirectSettings)
    operator_namespace: str = "dakr-operator"
    now: str = ""              # RFC 3339; empty: the wall clock at the start of the batch
