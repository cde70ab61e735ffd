"""Settings, grouped by the system they configure, with defaults.

Built once at the entry point (the CLI, from its flags and ``config.env``) and passed
explicitly: nothing below the entry point reads the environment or argv, and what a part
may do is visible from the settings it is given.
"""

from __future__ import annotations

import math
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.config import layout
from reconciler.domain import checkpoint, errors, policy_input
from reconciler.domain import limits as limits_mod


@dataclass(frozen=True)
class PolicySettings:
    policy_dir: Path = Path("policies")
    opa_url: str = ""          # empty: the embedded engine; else the OPA sidecar's base URL
    timeout: float = 2.0
    token_file: str = ""       # bearer token for the sidecar, read at start
    # The platform's policy parameters (data.platform), when `run` receives them.
    platform_data: Path | None = None
    decision_path: str = "dakr/decision"  # the decision document's path in OPA's data
    # Embedded engine: data files (None: DIR/data.yaml), and how often to look for changed
    # policy files (seconds; negative: never, for one-shot evaluations).
    data_files: tuple[Path, ...] | None = None
    reload_interval: float = 1.0


@dataclass(frozen=True)
class GitSettings:
    repo: str = ""             # URL or path of the GitOps repository (origin)
    base: str = "main"
    clone_dir: Path = Path("state/clone")
    # Where values live: plain manifests, a Kustomize overlay or a Helm values file, and
    # the namespace of manifests that set none (see examples/layouts/).
    layout: layout.Layout = field(default_factory=layout.Layout)
    # The Kustomize binary that builds a Kustomize layout's overlay before and after each
    # edit (gitops/kustomize_verify.py): "auto" (`kustomize`, else `kubectl kustomize`, on
    # PATH), a name or path, or "off"; a binary that is not there turns the check off.
    kustomize: str = "auto"
    branch_prefix: str = "dakr/"
    author_name: str = "dakr-reconciler"       # who the commits are by
    author_email: str = "dakr-reconciler@localhost"
    scope: str = "batch"       # one branch per: batch | namespace | workload
    depth: int = 0             # > 0: a shallow working clone of that many commits
    push_retries: int = 3
    # Render a Helm chart before and after each values edit and refuse an edit that does
    # not give the workload exactly the recommended values (gitops/verify.py); off only
    # where the Helm library cannot load or the chart is not in the repository.
    verify_renders: bool = True


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
class KubeSettings:
    """How to reach the API server, and how hard to press it."""

    kubeconfig: str | None = None  # None: $KUBECONFIG, ~/.kube/config or in-cluster
    context: str | None = None
    in_cluster: bool = False   # a service account is mounted: use it when nothing is named
    service_account: str = ""  # who the audit log names besides the field manager
    qps: float = 50.0          # client-side rate limit shared by every writer
    burst: int = 100
    cache_ttl: float | None = None  # reads served from memory this long (None: one batch)
    list_workloads: bool = True    # read workloads a namespace at a time (False: one GET each)


@dataclass(frozen=True)
class ClusterSettings:
    """Live cluster facts for the policy input in GitOps mode (HPA, PDBs, and with
    ``nodes`` the pods on the nodes a consolidation would drain). Off: the policy sees none,
    and refuses what needs them (a node drain); direct mode always reads them."""

    facts: bool = False
    nodes: bool = False        # reading pods cluster-wide is a broad right: opt in


@dataclass(frozen=True)
class DirectSettings:
    """Direct mode. ``server_dry_run``: send each workload change as a server-side dry-run
    before the real patch (admission refusals found before the status says Applying). The
    real patch is guarded by `test` operations either way, so turning it off only saves a
    request per change; a refusal then ends Failed after the way back is recorded."""

    server_dry_run: bool = True
    drain_timeout: float = 300.0  # node groups: seconds one node may take to drain
    # Node groups under nodeConsolidation "mark": seconds the node operator has to remove
    # a marked node (then the marks go, Failed), and the age past which a mark whose
    # recommendation is no longer Applying is removed by the operator's resync.
    mark_deadline: float = 3600.0
    mark_ttl: float = 86400.0


@dataclass(frozen=True)
class LiveSettings:
    """Live migration. ``webhook``: the admission webhook is deployed (chart value
    ``liveMigration.enabled``, env ``DAKR_LIVE_WEBHOOK``), so pods created after an in-place
    resize get the new values; without it a LiveMigration under ``persist: webhook`` still
    resizes the running pods and says that new pods start with the template's values."""

    webhook: bool = False


@dataclass(frozen=True)
class MoveSettings:
    """Moving a pod with its process state (checkpoint/restore, ``direct/move.py``).
    ``checkpoint_restore``: the cluster declares that every node's runtime restores
    checkpoints (chart value ``liveMigration.checkpointRestore``, env
    ``DAKR_CHECKPOINT_RESTORE``); runtimes ship restore switched off, so without it no
    move is tried. The checkpoint images go to ``registry`` (pushed with the credentials of
    the ``kubernetes.io/dockerconfigjson`` Secret ``registry_secret`` in ``job_namespace``,
    pulled with ``pull_secret`` in the pod's namespace); ``image`` runs the restore and
    cleanup Jobs; ``checkpoint_timeout``: seconds the kubelet may take per container."""

    checkpoint_restore: bool = False
    registry: str = ""
    registry_secret: str = ""
    pull_secret: str = ""
    image: str = checkpoint.DEFAULT_IMAGE
    job_namespace: str = ""        # empty: the moved pod's namespace
    checkpoint_timeout: int = 120

    def __post_init__(self) -> None:
        if not 1 <= self.checkpoint_timeout <= 3600:
            raise errors.ConfigError("the checkpoint timeout (DAKR_CHECKPOINT_TIMEOUT) must "
                                     f"be 1-3600 seconds, got {self.checkpoint_timeout}")
        if self.checkpoint_restore:
            why = checkpoint.registry_problem(self.registry)
            if why is not None:
                raise errors.ConfigError(why)


@dataclass(frozen=True)
class Settings:
    policy: PolicySettings = field(default_factory=PolicySettings)
    git: GitSettings = field(default_factory=GitSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    forge: ForgeSettings = field(default_factory=ForgeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    direct: DirectSettings = field(default_factory=DirectSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    move: MoveSettings = field(default_factory=MoveSettings)
    # gitops | direct: the writer this process was configured for; audit: none (no
    # repository and not direct mode), so it decides and reports and writes nothing.
    mode: str = "gitops"
    state_dir: Path = Path("state")  # local state: the store file, clones, stream cursor
    operator_namespace: str = "dakr-operator"
    cluster_id: str = "default"  # how this cluster introduces itself to the platform
    now: str = ""              # RFC 3339; empty: the wall clock at the start of the batch
    # How much untrusted input (files, messages, manifests) may make it read and build.
    limits: limits_mod.InputLimits = field(default_factory=limits_mod.InputLimits)

    @property
    def writers(self) -> frozenset[str]:
        """The writers this process can carry a decision to: a pull request when a
        repository is configured, a direct change when it works against a cluster (direct
        mode, or the custom-resource store). A decision for a writer it lacks ends with a
        WriterNotConfigured condition, never a silent "Approved"."""
        out: set[str] = set()
        if self.mode == "audit":
            return frozenset(out)
        if self.git.repo:
            out.add("gitops")
        if self.mode == "direct" or self.store.uri == "kube":
            out.add("direct")
        return frozenset(out)

    @property
    def reads_cluster(self) -> bool:
        """Whether the Kubernetes API is opened: to write, for the facts policy sees, or
        because the records live there (an audit of a cluster reads its targets)."""
        return "direct" in self.writers or self.cluster.facts or self.store.uri == "kube"

    def operator(self) -> policy_input.Operator:
        """What every policy input says of this process (``input.cluster``'s
        operatorNamespace, operatorMode, checkpointRestore)."""
        return policy_input.Operator(namespace=self.operator_namespace, mode=self.mode,
                                     checkpoint_restore=self.move.checkpoint_restore)


ENV_ENABLED = "DAKR_LEADER_ELECTION"
ENV_LEASE = "DAKR_LEADER_ELECTION_LEASE"
ENV_LEASE_DURATION = "DAKR_LEADER_ELECTION_LEASE_DURATION"
ENV_RENEW_DEADLINE = "DAKR_LEADER_ELECTION_RENEW_DEADLINE"
ENV_RETRY_PERIOD = "DAKR_LEADER_ELECTION_RETRY_PERIOD"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class LeaderSettings:
    """What the election needs; durations in seconds. Checked on construction (also after
    ``dataclasses.replace``) so that flags overriding the environment are checked too."""

    enabled: bool = False
    lease_name: str = "dakr-reconciler-leader"
    namespace: str = ""
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        for label, var, value in (
                ("lease duration", ENV_LEASE_DURATION, self.lease_duration),
                ("renew deadline", ENV_RENEW_DEADLINE, self.renew_deadline),
                ("retry period", ENV_RETRY_PERIOD, self.retry_period)):
            if not value > 0 or math.isinf(value):
                raise errors.ConfigError(f"leader election: the {label} ({var}) must be a "
                                         f"positive duration, got {value!r}")
        if not self.renew_deadline < self.lease_duration:
            raise errors.ConfigError(
                f"leader election: the renew deadline ({ENV_RENEW_DEADLINE}, "
                f"{self.renew_deadline:g}s) must be shorter than the lease duration "
                f"({ENV_LEASE_DURATION}, {self.lease_duration:g}s): a leader must give up "
                "before a standby may take over")
        if not self.retry_period < self.renew_deadline:
            raise errors.ConfigError(
                f"leader election: the retry period ({ENV_RETRY_PERIOD}, "
                f"{self.retry_period:g}s) must be shorter than the renew deadline "
                f"({ENV_RENEW_DEADLINE}, {self.renew_deadline:g}s): a leader must get at least "
                "one more try before it gives up")
        if self.lease_name and (len(self.lease_name) > 253
                                or not _DNS_SUBDOMAIN.fullmatch(self.lease_name)):
            raise errors.ConfigError(
                f"leader election: lease name {self.lease_name!r} ({ENV_LEASE}, "
                "--leader-elect-lease) is not a valid object name (lower-case DNS subdomain)")
        if self.namespace and (len(self.namespace) > 63
                               or not _DNS_LABEL.fullmatch(self.namespace)):
            raise errors.ConfigError(
                f"leader election: namespace {self.namespace!r} (POD_NAMESPACE, "
                "--leader-elect-namespace) is not a valid namespace name")


def candidate_identity(pod_name: str = "") -> str:
    """The pod name (or the hostname) plus a random suffix, like client-go's
    ``hostname_uuid``: a restarted pod keeps its name but is a new candidate, and must not
    be mistaken for the previous holder (which would let it skip the lease-duration wait)."""
    base = pod_name or socket.gethostname() or "reconciler"
    return f"{base}_{secrets.token_hex(4)}"


_ADDR = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})")


def check_addr(value: str, name: str) -> None:
    """``[HOST]:PORT`` or empty; a ConfigError naming the setting otherwise."""
    m = _ADDR.fullmatch(value) if value else None
    if value and (m is None or not 0 <= int(m.group(1)) <= 65535):
        raise errors.ConfigError(f"{name}: {value!r} is not [HOST]:PORT (e.g. :8081, "
                                 "127.0.0.1:8081)")


@dataclass(frozen=True)
class RunSettings:
    """`reconciler run`: where recommendations come from, probes, pace, leadership.
    Checked on construction, so that a bad flag or variable is a message naming it."""

    sources: tuple[str, ...] = ()  # platform:HOST:PORT, file:PATH, vpa:PATH, krr:PATH
    health_addr: str = ""          # /healthz, /readyz (and /metrics, POST /resync) here
    metrics_addr: str = ""         # /metrics alone here
    idle: float = 2.0              # --once: the stream ends after this long without news
    once: bool = False             # do what there is to do, then exit
    platform_token_file: str | None = None  # re-read at every connection (rotation)
    platform_token: str = ""       # from a Secret mounted as a variable; a file wins
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    workers: int = 4               # keys processed at once (never one key twice)
    resync: float = 60.0           # follow pull requests, re-read file sources, look again
    batch_window: float = 2.0      # GitOps: a burst is over after this long without news ...
    batch_max_wait: float = 30.0   # ... and never waits longer than this ...
    batch_max: int = 1000          # ... nor gathers more targets than this
    retry_base: float = 0.005      # a temporary outcome is retried after this, doubling ...
    retry_max: float = 300.0       # ... up to this
    watch_timeout: float = 300.0   # a watch request is renewed after this long
    sync_timeout: float = 60.0     # the first list of the store must be done by then
    shutdown_timeout: float = 25.0  # in-flight work may finish this long after SIGTERM
    api_cache_ttl: float = 5.0     # workloads, HPAs, PDBs read at most this long ago

    def __post_init__(self) -> None:
        check_addr(self.health_addr, "--health-addr (DAKR_HEALTH_ADDR)")
        check_addr(self.metrics_addr, "--metrics-addr (DAKR_METRICS_ADDR)")
        for name, value in (("--workers", self.workers), ("--batch-max", self.batch_max)):
            if value < 1:
                raise errors.ConfigError(f"{name} must be at least 1, got {value}")
        for name, v in (("--idle", self.idle), ("--resync", self.resync),
                        ("--batch-window", self.batch_window),
                        ("--batch-max-wait", self.batch_max_wait),
                        ("--watch-timeout", self.watch_timeout),
                        ("--shutdown-timeout", self.shutdown_timeout)):
            if not v > 0 or math.isinf(v):
                raise errors.ConfigError(f"{name} must be a positive number of seconds, "
                                         f"got {v!r}")


@dataclass(frozen=True)
class WebhookSettings:
    """`reconciler webhook`: the live-migration admission webhook. It serves HTTPS only (the
    API server calls webhooks over TLS), from certificate and key files it reloads when
    they change; its index comes from the store (``kube``: the custom resources, listed and
    watched; ``sqlite:PATH``: the local file's change log)."""

    tls_cert: str = ""             # PEM certificate (chain) file
    tls_key: str = ""              # PEM private key file
    port: int = 8443               # 0: any free port (tests)
    address: str = ""              # "" : every interface
    store: str = "kube"            # kube | sqlite:PATH
    kube: KubeSettings = field(default_factory=KubeSettings)
    metrics_addr: str = ""         # /metrics over plain HTTP here too (the TLS port has it)
    reload_interval: float = 1.0   # how often the certificate files are looked at
    watch_timeout: float = 300.0   # a watch request is renewed after this long
    max_body: int = 3 * 1024 * 1024 + 65536  # the API server's request limit, plus room

    def __post_init__(self) -> None:
        if not self.tls_cert or not self.tls_key:
            raise errors.ConfigError(
                "the webhook serves HTTPS only: give --tls-cert and --tls-key "
                "(DAKR_WEBHOOK_TLS_CERT, DAKR_WEBHOOK_TLS_KEY)")
        if not 0 <= self.port <= 65535:
            raise errors.ConfigError(f"--port (DAKR_WEBHOOK_PORT) must be 0-65535, got "
                                     f"{self.port}")
        check_addr(self.metrics_addr, "--metrics-addr (DAKR_METRICS_ADDR)")
        if self.store != "kube" and not (self.store.startswith("sqlite:")
                                         and len(self.store) > len("sqlite:")):
            raise errors.ConfigError(f"--store {self.store!r}: expected kube, sqlite or "
                                     "sqlite:PATH")
        for name, v in (("reload interval", self.reload_interval),
                        ("watch timeout", self.watch_timeout)):
            if not v > 0 or math.isinf(v):
                raise errors.ConfigError(f"webhook: the {name} must be a positive number "
                                         f"of seconds, got {v!r}")
