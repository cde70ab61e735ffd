"""The flags several commands share, and the one conversion from flags to settings.

Every command that changes something takes the same groups of flags (policy, repository,
cluster, output) with the same defaults and help, so a flag learnt on `apply` means the
same on `run` and `rollback`. ``settings_of`` is where flags and the environment become
``config.settings.Settings``; nothing below the CLI sees argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

from reconciler import wiring
from reconciler.config import env, layout, settings
from reconciler.domain import errors
from reconciler.domain import limits as limits_mod

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICIES = PROJECT_ROOT / "policies"
# Data files layered over DIR/data.yaml when --policy-data is not given (none as shipped).
DEFAULT_POLICY_DATA: tuple[Path, ...] = ()


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", choices=("text", "json"), default="text",
                   help="text: a summary table; json: {\"results\": [...]} (default: text)")


def add_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", type=Path, default=DEFAULT_POLICIES, metavar="DIR",
                   help="Rego policy directory for the embedded OPA engine (default: %(default)s)")
    add_policy_data(p)
    p.add_argument("--opa-url", default="", metavar="URL",
                   help="ask an OPA sidecar (e.g. http://localhost:8181) instead of the "
                        "embedded engine")
    p.add_argument("--opa-timeout", type=float, default=2.0, metavar="SECONDS",
                   help="sidecar timeout; no answer in time means deny (default: %(default)s)")
    p.add_argument("--opa-token-file", default="", metavar="FILE",
                   help="bearer token for the sidecar, read from this file")
    p.add_argument("--opa-decision-path", default=settings.PolicySettings.decision_path,
                   metavar="PATH",
                   help="the decision document's path in the sidecar's data "
                        "(default: %(default)s)")


def add_policy_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy-data", action="append", type=Path, default=None, metavar="FILE",
                   help="a data file (YAML or JSON) layered over DIR/data.yaml for the "
                        "embedded engine, key by key (lists replace lists): the namespaces "
                        "you opt in, your own limits, without editing the library; "
                        "repeatable, later files win")


def add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-limit", action="append", default=None, metavar="NAME=N",
                   help="raise or lower one limit on untrusted input (files, stream "
                        "messages, repository manifests): bytes (16Mi), documents (10000), "
                        "depth (64), aliases (100), nodes (1000000, after alias "
                        "expansion), string (1Mi); repeatable; over DAKR_INPUT_LIMITS")


def add_kube(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, metavar="FILE",
                   help="kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the "
                        "in-cluster service account)")
    p.add_argument("--context", default=None, metavar="NAME",
                   help="kubeconfig context (default: the current context)")


def add_direct(p: argparse.ArgumentParser) -> None:
    """Flags `apply --mode direct` needs (the caller adds --mode and --dry-run)."""
    add_kube(p)
    p.add_argument("--qps", type=float, default=settings.KubeSettings.qps, metavar="N",
                   help="client-side rate limit shared by every writer (requests/s; "
                        "default: %(default)s)")
    p.add_argument("--burst", type=int, default=settings.KubeSettings.burst, metavar="N",
                   help="requests allowed at once above --qps (default: %(default)s)")
    p.add_argument("--server-dry-run", action=argparse.BooleanOptionalAction, default=True,
                   help="direct mode: send each change as a server-side dry-run before the "
                        "real (test-guarded) patch; --no-server-dry-run saves that request "
                        "(default: on)")
    p.add_argument("--drain-timeout", type=float, default=settings.DirectSettings.drain_timeout,
                   metavar="SECONDS",
                   help="node group recommendations: how long one node may take to drain "
                        "(PodDisruptionBudgets may hold evictions back) before the drain "
                        "stops, incomplete (default: %(default)s)")
    p.add_argument("--mark-deadline", type=float, metavar="SECONDS",
                   default=settings.DirectSettings.mark_deadline,
                   help="node groups marked for the node operator: how long it has to remove "
                        "a marked node before the marks are removed and the recommendation "
                        "fails (default: %(default)s)")
    p.add_argument("--mark-ttl", type=float, metavar="SECONDS",
                   default=settings.DirectSettings.mark_ttl,
                   help="`run` removes marks older than this whose recommendation is no "
                        "longer Applying (default: %(default)s)")


def add_gitops(p: argparse.ArgumentParser) -> None:
    """Where the repository, its layout, the store and the forge are (apply, rollback)."""
    p.add_argument("--repo", default="", metavar="URL_OR_PATH",
                   help="the GitOps repository (its origin: a URL or a path to a "
                        "repository); required with --mode gitops")
    p.add_argument("--base", default="main", metavar="BRANCH",
                   help="branch the change is proposed against (default: %(default)s)")
    p.add_argument("--depth", type=int, default=0, metavar="N",
                   help="keep a shallow working clone of N commits (default: full history)")
    p.add_argument("--repo-path", default="", metavar="DIR",
                   help="look for manifests under this directory of the repository only "
                        "(default: the whole repository, or the layout's paths)")
    p.add_argument("--branch-prefix", default=settings.GitSettings.branch_prefix,
                   metavar="PREFIX", help="of the branches the writer pushes "
                                          "(default: %(default)s)")
    p.add_argument("--author-name", default=settings.GitSettings.author_name, metavar="NAME",
                   help="author of the writer's commits (default: %(default)s)")
    p.add_argument("--author-email", default=settings.GitSettings.author_email,
                   metavar="EMAIL", help="(default: %(default)s)")
    p.add_argument("--layout", type=Path, default=None, metavar="FILE",
                   help="where values live in the repository: plain manifests (default), a "
                        "Kustomize overlay or a Helm values file; see examples/layouts/")
    p.add_argument("--default-namespace", default="", metavar="NS",
                   help="namespace of manifests that do not set one (default: the layout's, "
                        "else 'default')")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="where the store, the working clone and the pull-request body live "
                        f"(default: {env.state_dir(env.environ())})")
    p.add_argument("--store", default="", metavar="URI",
                   help="recommendation store: sqlite:PATH (default: sqlite:STATE_DIR/"
                        "reconciler.db) or kube")
    p.add_argument("--forge", choices=wiring.FORGE_KINDS, default="local",
                   help="where the pull request is opened; local: the branch in the remote "
                        "and the body in STATE_DIR/pull-request.md (default: %(default)s)")
    p.add_argument("--forge-url", default="", metavar="URL",
                   help="forge API URL (default: api.github.com / gitlab.com; required for "
                        "gitea)")
    p.add_argument("--forge-repo", default="", metavar="OWNER/NAME",
                   help="repository on the forge (default: derived from --repo)")
    p.add_argument("--token-file", default="", metavar="FILE",
                   help="forge API token, read from this file (never logged)")
    p.add_argument("--label", action="append", default=None, metavar="LABEL",
                   help="label for the pull request; repeatable (default: dakr)")


def add_batch(p: argparse.ArgumentParser) -> None:
    """Everything a batch needs besides its input (apply, run)."""
    p.add_argument("--mode", choices=("gitops", "direct", "audit"), default="gitops",
                   help="gitops: a pull request against --repo; direct: patch the cluster "
                        "through the Kubernetes API, records in the CR store there; audit: "
                        "decide and report, write nothing, which is also what gitops "
                        "without --repo does (default: %(default)s)")
    add_gitops(p)
    p.add_argument("--scope", choices=("batch", "namespace", "workload"), default="batch",
                   help="one branch and pull request per batch, namespace or workload "
                        "(default: %(default)s)")
    p.add_argument("--kustomize", default=settings.GitSettings.kustomize, metavar="BINARY",
                   help="Kustomize layout: the binary that builds the overlay before and "
                        "after each edit to check it ('auto': kustomize, else kubectl, on "
                        "PATH; a name or path; 'off'); without one the check is off (env "
                        "DAKR_GITOPS_KUSTOMIZE; default: %(default)s)")
    p.add_argument("--verify-render", action=argparse.BooleanOptionalAction, default=True,
                   help="render the chart with the real Helm library (Helm layout), or build "
                        "the overlay with --kustomize (Kustomize layout), before and after "
                        "each edit, and refuse an edit whose workload does not get exactly "
                        "the recommended values; --no-verify-render skips both (env "
                        "DAKR_GITOPS_VERIFY_RENDER; default: on)")
    p.add_argument("--now", default="", metavar="RFC3339",
                   help="the time policies see (default: now); for reproducible runs")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and plan only: print what would change, write nothing "
                        "(no record, no commit, no push)")
    add_policy(p)
    add_output(p)
    add_direct(p)
    add_limits(p)
    p.add_argument("--cluster-facts", action="store_true",
                   help="gitops mode: give the policy the live cluster's facts too (the HPA "
                        "targeting the workload, the PDBs covering it), read with "
                        "--kubeconfig/--context; a recommendation whose facts cannot be read "
                        "is not decided (direct mode always reads them)")
    p.add_argument("--node-facts", action="store_true",
                   help="with --cluster-facts: also the pods on each node a node-group "
                        "recommendation would drain (needs pods list cluster-wide); without "
                        "it such recommendations are refused for missing node facts")


# --------------------------------------------------------------------------- settings


def state_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    given: Path | None = getattr(args, "state_dir", None)
    return given or env.state_dir(environ)


def policy_data_files(args: argparse.Namespace, policy_dir: Path) -> tuple[Path, ...] | None:
    """DIR/data.yaml and the --policy-data files over it; None: DIR/data.yaml alone."""
    given = getattr(args, "policy_data", None)
    layered = tuple(given) if given is not None else DEFAULT_POLICY_DATA
    for f in layered:
        if not f.is_file():
            raise errors.ConfigError(f"--policy-data {f}: no such file")
    if not layered:
        return None
    base = policy_dir / "data.yaml"
    return ((base,) if base.is_file() else ()) + layered


def policy_settings(args: argparse.Namespace) -> settings.PolicySettings:
    policy_dir = Path(getattr(args, "policies", DEFAULT_POLICIES))
    return settings.PolicySettings(
        policy_dir=policy_dir, data_files=policy_data_files(args, policy_dir),
        opa_url=getattr(args, "opa_url", ""), timeout=getattr(args, "opa_timeout", 2.0),
        token_file=getattr(args, "opa_token_file", ""),
        decision_path=getattr(args, "opa_decision_path", settings.PolicySettings.decision_path),
        platform_data=getattr(args, "platform_data", None))


def kube_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> settings.KubeSettings:
    qps = float(getattr(args, "qps", settings.KubeSettings.qps))
    burst = int(getattr(args, "burst", settings.KubeSettings.burst))
    if qps <= 0 or burst < 1:
        raise errors.ConfigError(f"--qps must be > 0 and --burst >= 1 (got {qps}, {burst})")
    return settings.KubeSettings(
        kubeconfig=getattr(args, "kubeconfig", None), context=getattr(args, "context", None),
        in_cluster=env.in_cluster(environ), service_account=env.service_account(environ),
        qps=qps, burst=burst)


def _layout(args: argparse.Namespace) -> layout.Layout:
    lay = layout.load_layout(getattr(args, "layout", None))
    if getattr(args, "default_namespace", ""):
        lay = dataclasses.replace(lay, default_namespace=args.default_namespace)
    where = str(getattr(args, "repo_path", "") or "").strip("/")
    if where and lay.paths == ("",):  # a layout file that names its paths wins
        lay = dataclasses.replace(lay, paths=(where,))
    return lay


def _slug(repo: str) -> str:
    """A readable, unique folder name for a repository's working clone."""
    tail = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "repo"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40]
    return f"{safe}-{hashlib.sha256(repo.encode()).hexdigest()[:8]}"


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> settings.Settings:
    """The settings a command's flags (and the environment under them) describe."""
    state = state_dir(args, environ)
    mode = getattr(args, "mode", "gitops")
    repo = getattr(args, "repo", "")
    if mode == "gitops" and not repo:
        mode = "audit"  # no writer: decide and report (flow/audit.py says why)
    default_store = "kube" if mode == "direct" else f"sqlite:{state / 'reconciler.db'}"
    timeout = float(getattr(args, "drain_timeout", settings.DirectSettings.drain_timeout))
    if timeout <= 0:
        raise errors.ConfigError(f"--drain-timeout must be > 0 (got {timeout})")
    marks = {k: float(getattr(args, k, getattr(settings.DirectSettings, k)))
             for k in ("mark_deadline", "mark_ttl")}
    for k, v in marks.items():
        if not v > 0 or math.isinf(v):
            raise errors.ConfigError(f"--{k.replace('_', '-')} must be > 0 (got {v})")
    labels = getattr(args, "label", None)
    return settings.Settings(
        policy=policy_settings(args),
        git=settings.GitSettings(
            repo=repo, base=getattr(args, "base", "main"), layout=_layout(args),
            clone_dir=state / "clones" / _slug(repo), scope=getattr(args, "scope", "batch"),
            depth=getattr(args, "depth", 0),
            kustomize=str(getattr(args, "kustomize", settings.GitSettings.kustomize)),
            verify_renders=bool(getattr(args, "verify_render", True)),
            branch_prefix=getattr(args, "branch_prefix", settings.GitSettings.branch_prefix),
            author_name=getattr(args, "author_name", settings.GitSettings.author_name),
            author_email=getattr(args, "author_email", settings.GitSettings.author_email)),
        store=settings.StoreSettings(uri=getattr(args, "store", "") or default_store),
        forge=settings.ForgeSettings(
            kind=getattr(args, "forge", "local"), url=getattr(args, "forge_url", ""),
            repo=getattr(args, "forge_repo", ""), token_file=getattr(args, "token_file", ""),
            token=env.forge_token(environ), state_dir=state,
            labels=tuple(labels) if labels is not None else ("dakr",)),
        cluster=settings.ClusterSettings(
            facts=bool(getattr(args, "cluster_facts", False)),
            nodes=bool(getattr(args, "node_facts", False))),
        kube=kube_settings(args, environ),
        direct=settings.DirectSettings(
            server_dry_run=bool(getattr(args, "server_dry_run", True)),
            drain_timeout=timeout, **marks),
        live=env.live_settings(environ),
        move=env.move_settings(environ),
        mode=mode, state_dir=state, now=getattr(args, "now", ""),
        cluster_id=getattr(args, "cluster_id", "default") or "default",
        limits=input_limits(args, environ),
    )


def input_limits(args: argparse.Namespace, environ: Mapping[str, str]
                 ) -> limits_mod.InputLimits:
    """DAKR_INPUT_LIMITS, then each --input-limit over it."""
    given = getattr(args, "input_limit", None) or []
    return limits_mod.parse(",".join(given), env.input_limits(environ))
