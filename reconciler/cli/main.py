"""The ``reconciler`` command: reads settings once, builds adapters, runs, reports.

Exit codes: 0 when the work ran (refusals are results, not errors), 2 for unusable input
or settings (the message names the problem), 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import __version__, wiring
from reconciler.adapters import files
from reconciler.cli import direct as cli_direct
from reconciler.config import settings
from reconciler.domain import errors, model, results
from reconciler.gitops import layout, pipeline, revert

log = logging.getLogger("reconciler")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Subcommand groups that live in their own modules; each exposes register(subparsers).
_PLUGINS = ("reconciler.cli.policy", "reconciler.cli.stream")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dakr-reconciler"


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", type=Path, default=PROJECT_ROOT / "policies", metavar="DIR",
                   help="Rego policy directory for the embedded OPA engine (default: %(default)s)")
    p.add_argument("--opa-url", default="", metavar="URL",
                   help="ask an OPA sidecar (e.g. http://localhost:8181) instead of the "
                        "embedded engine")
    p.add_argument("--opa-timeout", type=float, default=2.0, metavar="SECONDS",
                   help="sidecar timeout; no answer in time means deny (default: %(default)s)")
    p.add_argument("--opa-token-file", default="", metavar="FILE",
                   help="bearer token for the sidecar, read from this file")


def _add_gitops_flags(p: argparse.ArgumentParser) -> None:
    """Where the repository, its layout, the store and the forge are (apply, rollback)."""
    p.add_argument("--repo", default="", metavar="URL_OR_PATH",
                    help="the GitOps repository (its origin: a URL or a path to a "
                         "repository); required with --mode gitops")
    p.add_argument("--base", default="main", metavar="BRANCH",
                    help="branch the change is proposed against (default: %(default)s)")
    p.add_argument("--depth", type=int, default=0, metavar="N",
                   help="keep a shallow working clone of N commits (default: full history)")
    p.add_argument("--layout", type=Path, default=None, metavar="FILE",
                    help="where values live in the repository: plain manifests (default), a "
                         "Kustomize overlay or a Helm values file; see examples/layouts/")
    p.add_argument("--default-namespace", default="", metavar="NS",
                    help="namespace of manifests that do not set one (default: the layout's, "
                         "else 'default')")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                    help="where the store, the working clone and the pull-request body live "
                         f"(default: {default_state_dir()})")
    p.add_argument("--store", default="", metavar="URI",
                    help="recommendation store: sqlite:PATH (default: sqlite:STATE_DIR/"
                         "reconciler.db) or kube")
    p.add_argument("--forge", choices=("local", "github", "gitlab", "gitea"), default="local",
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


def _add_batch_flags(p: argparse.ArgumentParser) -> None:
    """Everything a batch needs besides its input (apply, run)."""
    p.add_argument("--mode", choices=("gitops", "direct"), default="gitops",
                    help="gitops: a pull request against --repo; direct: patch the cluster "
                         "through the Kubernetes API, records in the CR store there "
                         "(default: %(default)s)")
    _add_gitops_flags(p)
    p.add_argument("--scope", choices=("batch", "namespace", "workload"), default="batch",
                    help="one branch and pull request per batch, namespace or workload "
                         "(default: %(default)s)")
    p.add_argument("--now", default="", metavar="RFC3339",
                    help="the time policies see (default: now); for reproducible runs")
    p.add_argument("--dry-run", action="store_true",
                    help="decide and plan only: print what would change, write nothing "
                         "(no record, no commit, no push)")
    _add_policy_flags(p)
    _add_output_flag(p)
    cli_direct.add_direct_args(p)
    p.add_argument("--cluster-facts", action="store_true",
                   help="gitops mode: give the policy the live cluster's facts too (the HPA "
                        "targeting the workload, the PDBs covering it), read with "
                        "--kubeconfig/--context; a recommendation whose facts cannot be read "
                        "is not decided (direct mode always reads them)")
    p.add_argument("--node-facts", action="store_true",
                   help="with --cluster-facts: also the pods on each node a node-group "
                        "recommendation would drain (needs pods list cluster-wide); without "
                        "it such recommendations are refused for missing node facts")


def _add_output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", choices=("text", "json"), default="text",
                   help="text: a summary table; json: {\"results\": [...]} (default: text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="dakr reconciler: checks cost recommendations against Rego policies and "
                    "applies the approved ones as a reviewed GitOps change.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ap = sub.add_parser(
        "apply", help="run one batch of recommendations through policy and the GitOps writer",
        description="Validate every recommendation in the file(s), ask policy about each, edit "
                    "the approved workloads' manifests in the repository with a minimal diff, "
                    "commit on one branch (dakr/batch-<hash>), push it, and write the "
                    "pull-request body. Refused and invalid recommendations are reported with "
                    "their reasons; nothing is written for them.")
    ap.add_argument("-f", "--filename", action="append", required=True, metavar="RECS.yaml",
                    help="recommendations (YAML or JSON; several documents or a List; '-' for "
                         "stdin); repeatable")
    _add_batch_flags(ap)
    ap.set_defaults(func=cmd_apply)

    runp = sub.add_parser(
        "run", help="the operator loop: take in recommendations from sources, run batches",
        description="Each round takes in what the sources have (the platform's gRPC stream "
                    "until it is idle for --idle seconds, files, VPA objects, KRR reports) "
                    "into the store, then runs one batch over everything still Pending, in "
                    "GitOps or direct mode, and waits --interval seconds. SIGINT/SIGTERM "
                    "stop it between rounds.")
    runp.add_argument("--source", action="append", default=None, metavar="KIND:WHERE",
                      help="platform:HOST:PORT, file:PATH, vpa:PATH or krr:PATH; repeatable "
                           "(default: platform:$DAKR_API_ENDPOINT)")
    runp.add_argument("--health-addr", default="", metavar="[HOST]:PORT",
                      help="serve /healthz and /readyz (ready after the first round) here, "
                           "and /metrics too")
    runp.add_argument("--metrics-addr", default="", metavar="[HOST]:PORT",
                      help="serve Prometheus /metrics here (default: only on --health-addr)")
    runp.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                      help="pause between rounds (default: %(default)s)")
    runp.add_argument("--idle", type=float, default=2.0, metavar="SECONDS",
                      help="a platform stream quiet this long ends its part of a round "
                           "(default: %(default)s)")
    runp.add_argument("--platform-token-file", default=None, metavar="FILE",
                      help="bearer token for the platform, read at every connection")
    runp.add_argument("--once", action="store_true", help="one round, then exit")
    runp.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=None,
                      help="act only while holding a coordination.k8s.io Lease, stand by "
                           "otherwise; a leader that loses it exits 1 "
                           "(default: $DAKR_LEADER_ELECTION, else off)")
    runp.add_argument("--leader-elect-lease", default=None, metavar="NAME",
                      help="Lease name (default: $DAKR_LEADER_ELECTION_LEASE, else "
                           "dakr-reconciler-leader)")
    runp.add_argument("--leader-elect-namespace", default=None, metavar="NS",
                      help="Lease namespace (default: $POD_NAMESPACE, else the service "
                           "account's)")
    _add_batch_flags(runp)
    runp.set_defaults(func=cmd_run, **run_env_defaults(os.environ))

    dp = sub.add_parser(
        "demo", help="run the whole flow on the bundled example (no cluster, no network)",
        description="Creates a Git repository with the Online Boutique manifests and a bare "
                    "origin, runs examples/recommendations.yaml through the embedded OPA engine "
                    "and the GitOps writer, pushes a branch and writes the pull-request body. "
                    "Run it twice with the same --workdir: the second run makes no commit.")
    dp.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                    help="keep everything under DIR (origin at DIR/origin.git, store, "
                         "DIR/pull-request.md); default: a new temporary directory")
    dp.add_argument("-f", "--filename", type=Path,
                    default=PROJECT_ROOT / "examples" / "recommendations.yaml",
                    metavar="RECS.yaml", help="recommendations to use (default: %(default)s)")
    dp.add_argument("--manifests", type=Path,
                    default=PROJECT_ROOT / "examples" / "microservices-demo", metavar="DIR",
                    help="manifests that seed the demo repository (default: %(default)s)")
    dp.add_argument("--source", choices=("stream", "file"), default="stream",
                    help="stream: serve the file from the reference gRPC platform on "
                         "loopback and ingest it over the stream; file: read it directly "
                         "(default: %(default)s)")
    dp.add_argument("--now", default="", metavar="RFC3339", help="the time policies see")
    _add_policy_flags(dp)
    _add_output_flag(dp)
    dp.set_defaults(func=cmd_demo)

    rp = sub.add_parser(
        "rollback", help="put back the values an applied recommendation replaced",
        description="GitOps (--repo): open a revert pull request that restores the values "
                    "recorded in the recommendation's status.previous; it is refused when "
                    "the repository no longer holds what the recommendation set, and the "
                    "recommendation becomes RolledBack when the revert merges. Direct "
                    "(no --repo): restore them in the cluster with a patch that only applies "
                    "if the values it set are still there, then release the rollback "
                    "finalizer. Exit 0 when rolled back or proposed, 1 when refused or not "
                    "found.")
    rp.add_argument("id", metavar="ID", help="recommendation id")
    _add_gitops_flags(rp)
    cli_direct.add_kube_args(rp)
    rp.add_argument("--now", default="", metavar="RFC3339", help=argparse.SUPPRESS)
    rp.set_defaults(policies=PROJECT_ROOT / "policies", opa_url="", opa_timeout=2.0,
                    opa_token_file="")
    _add_output_flag(rp)
    rp.set_defaults(func=cmd_rollback)

    for name in _PLUGINS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.register(sub)
    return parser


def policy_settings(args: argparse.Namespace) -> settings.PolicySettings:
    return settings.PolicySettings(policy_dir=args.policies, opa_url=args.opa_url,
                                   timeout=args.opa_timeout, token_file=args.opa_token_file)


def print_batch(batch: pipeline.Batch, output: str) -> None:
    if output == "json":
        print(json.dumps(batch.to_json(), indent=2))
        return
    print(results.summary_table(batch.items))
    counts: dict[str, int] = {}
    for it in batch.items:
        counts[it.phase] = counts.get(it.phase, 0) + 1
    print()
    print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for pr in batch.pull_requests:
        print(f"pull request #{pr.number} ({pr.state}) for {pr.branch}: {pr.url}")
    if batch.branch:
        state = "new commit" if batch.created_commit else "no new commit (already up to date)"
        print(f"branch {batch.branch} at {batch.commit[:12]}: {state}")


def apply_settings(args: argparse.Namespace) -> settings.Settings:
    state = args.state_dir or default_state_dir()
    return settings.Settings(
        policy=policy_settings(args),
        git=settings.GitSettings(
            repo=args.repo, base=args.base, layout=_layout(args),
            clone_dir=state / "clones" / _slug(args.repo), scope=args.scope,
            depth=args.depth),
        store=settings.StoreSettings(uri=args.store or f"sqlite:{state / 'reconciler.db'}"),
        forge=settings.ForgeSettings(
            kind=args.forge, url=args.forge_url, repo=args.forge_repo,
            token_file=args.token_file, state_dir=state,
            labels=tuple(args.label) if args.label is not None else ("dakr",)),
        cluster=settings.ClusterSettings(
            facts=bool(getattr(args, "cluster_facts", False)),
            nodes=bool(getattr(args, "node_facts", False)),
            kubeconfig=getattr(args, "kubeconfig", None), context=getattr(args, "context", None)),
        now=args.now,
    )


def _layout(args: argparse.Namespace) -> layout.Layout:
    lay = layout.load_layout(args.layout)
    if args.default_namespace:
        lay = dataclasses.replace(lay, default_namespace=args.default_namespace)
    return lay


def run_batch(cfg: settings.Settings, docs: list[object], *,
              dry_run: bool = False) -> pipeline.Batch:
    """Follow open pull requests first (a merge makes history), then run the batch."""
    st = wiring.open_store(cfg.store.uri)
    try:
        engine = wiring.policy_engine(cfg.policy)
        try:
            prs = wiring.pull_requests(cfg)
            if not dry_run:
                now = cfg.now or pipeline.now_rfc3339()
                pipeline.follow_pull_requests(st, prs, now)
                revert.follow(st, prs, now)
            cluster_api = wiring.cluster_api(cfg.cluster)
            try:
                return pipeline.run(docs, cfg, st, engine, prs, dry_run=dry_run,
                                    cluster_api=cluster_api)
            finally:
                if cluster_api is not None:
                    cluster_api.api_client.close()
        finally:
            engine.close()
    finally:
        st.close()


def cmd_apply(args: argparse.Namespace) -> int:
    docs: list[object] = []
    for f in args.filename:
        docs.extend(files.load_documents(f))
    if args.mode == "direct":
        return cli_direct.run_apply_direct(args, docs)
    if not args.repo:
        raise errors.ConfigError("--repo is required with --mode gitops (the default)")
    cfg = apply_settings(args)
    batch = run_batch(cfg, docs, dry_run=args.dry_run)
    print_batch(batch, args.output)
    return 0


def _slug(repo: str) -> str:
    import hashlib

    tail = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "repo"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40]
    return f"{safe}-{hashlib.sha256(repo.encode()).hexdigest()[:8]}"


# The Helm chart configures `reconciler run` through these variables; flags still win.
_RUN_ENV = {
    "DAKR_MODE": "mode", "DAKR_OPA_URL": "opa_url", "DAKR_GITOPS_REPO_URL": "repo",
    "DAKR_GITOPS_BASE_BRANCH": "base", "DAKR_GITOPS_PROVIDER": "forge",
    "DAKR_GITOPS_API_URL": "forge_url", "DAKR_HEALTH_ADDR": "health_addr",
    "DAKR_METRICS_ADDR": "metrics_addr",
}


def run_env_defaults(env: Mapping[str, str]) -> dict[str, object]:
    """Defaults for `reconciler run` from the DAKR_* environment the chart sets."""
    out: dict[str, object] = {dest: env[var] for var, dest in _RUN_ENV.items() if env.get(var)}
    if env.get("DAKR_STORE") in ("kubernetes", "kube"):
        out["store"] = "kube"
    if env.get("DAKR_WORK_DIR"):
        out["state_dir"] = Path(env["DAKR_WORK_DIR"])
    if env.get("DAKR_GITOPS_PROVIDER") == "none":
        out["forge"] = "local"
    for var, dest in (("DAKR_CLUSTER_FACTS", "cluster_facts"),
                      ("DAKR_CLUSTER_FACTS_NODES", "node_facts")):
        if env.get(var, "").lower() in ("true", "1", "yes"):
            out[dest] = True
    return out


def cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from reconciler.cli import stream as cli_stream
    from reconciler.runtime import loop as run

    endpoint = os.environ.get("DAKR_API_ENDPOINT", "")
    raw = args.source or ([f"platform:{endpoint}"] if endpoint else [])
    if not raw:
        raise errors.ConfigError("no --source given and DAKR_API_ENDPOINT is not set")
    sources = [run.Source.parse(x) for x in raw]
    if args.interval <= 0 or args.idle <= 0:
        raise errors.ConfigError("--interval and --idle must be positive")
    if args.mode == "gitops" and not args.repo:
        raise errors.ConfigError("--repo is required with --mode gitops (the default)")
    cfg = apply_settings(args) if args.mode == "gitops" else None
    if cfg is not None and not args.token_file and os.environ.get("DAKR_GITOPS_TOKEN"):
        cfg = dataclasses.replace(cfg, forge=dataclasses.replace(
            cfg.forge, token=os.environ["DAKR_GITOPS_TOKEN"]))
    state = args.state_dir or default_state_dir()
    # The platform's policy parameters (PolicyUpdate), under data.platform, kept here.
    args.platform_data = state / "platform-data.json"
    if cfg is not None:
        cfg = dataclasses.replace(cfg, policy=dataclasses.replace(
            cfg.policy, platform_data=args.platform_data))
    store_uri = args.store or (f"sqlite:{state / 'reconciler.db'}" if args.mode == "gitops"
                               else "kube")
    args.store = store_uri

    stream_path = cli_stream.state_path(store_uri, None, state)
    reports_upstream = any(s.kind == "platform" for s in sources) and not args.dry_run

    from reconciler.adapters import kube
    from reconciler.runtime import leader
    from reconciler.runtime import metrics as metrics_mod

    # Read here, not in build_parser: a bad variable must not break --help or other commands.
    lead = leader.settings_from_env(os.environ)
    lead = dataclasses.replace(lead, **{k: v for k, v in (
        ("enabled", args.leader_elect), ("lease_name", args.leader_elect_lease),
        ("namespace", args.leader_elect_namespace)) if v is not None})
    lease_client = kube.load_client(args.kubeconfig, args.context) if lead.enabled else None
    metrics = metrics_mod.Metrics()

    def batch(docs: list[dict[str, object]]) -> object:
        if cfg is None:
            result = cli_direct.apply_direct(args, list(docs))
        else:
            result = run_batch(cfg, list(docs), dry_run=args.dry_run)
        metrics.observe_batch(args.mode, result.items)
        print_batch(result, args.output)
        if reports_upstream:
            run.report_upstream(stream_path, result.items)
        return result

    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    state.mkdir(parents=True, exist_ok=True)
    health = run.Health(args.health_addr, metrics) if args.health_addr else None
    metrics_server = (run.Health(args.metrics_addr, metrics, probes=False)
                      if args.metrics_addr and args.metrics_addr != args.health_addr else None)

    def work(until: threading.Event) -> object:
        metrics.leader.set(1)
        return run.loop(sources,
                        lambda: wiring.open_store(store_uri, args.kubeconfig, args.context),
                        stream_path, batch, interval=args.interval, once=args.once,
                        stop=until, idle=args.idle, token_file=args.platform_token_file,
                        token=os.environ.get("DAKR_API_TOKEN", ""), health=health,
                        metrics=metrics, run_rollbacks=rollbacks,
                        platform_data=args.platform_data)

    def rollbacks(todo: list[run.RollbackRequest]) -> None:
        """The platform's rollback requests: direct mode restores the previous values,
        GitOps mode proposes a revert pull request. A temporary failure leaves the request
        open for the next round; a refusal closes it with the reason."""
        done: list[tuple[run.RollbackRequest, results.ItemResult, bool]] = []
        for req in todo:
            try:
                if cfg is None:
                    item = cli_direct.rollback(args, req.id, req.kind)
                    ok = not item.message.startswith("rollback refused")
                else:
                    item, ok = gitops_rollback(cfg, req.id), True
            except errors.TemporaryError as e:
                log.warning("rollback of %s: %s; trying again next round", req.id, e)
                continue
            except (errors.NotFoundError, errors.PermanentError) as e:
                if isinstance(e, errors.ConfigError):
                    raise
                item = results.ItemResult(id=req.id, kind=req.kind,
                                          message=f"rollback refused: {e}")
                ok = False
            done.append((req, item, ok))
        if not done:
            return
        # Close the requests with what came of them, in one store session.
        st = wiring.open_store(store_uri, args.kubeconfig, args.context)
        try:
            for req, item, ok in done:
                if not ok or not item.phase or item.phase == model.PENDING:
                    rec = st.get(req.kind, req.id)
                    item.phase = rec.phase if rec is not None else item.phase
                run.finish_rollback(st, req, ok, item.message)
                metrics.rollbacks.labels("done" if ok else "refused").inc()
                log.log(logging.INFO if ok else logging.WARNING, "rollback of %s requested by "
                        "the platform: %s: %s", req.id, item.phase, item.message)
        finally:
            st.close()
        if reports_upstream:
            run.report_upstream(stream_path, [item for _, item, _ in done])

    def standby() -> None:
        # A standby is ready: readiness gated on leadership would stall every rolling
        # update (the new pod cannot lead while the old one holds the lease).
        metrics.leader.set(0)
        if health is not None:
            health.ready.set()

    def lost() -> None:
        # The loop stops between rounds only; a round still running when a standby may
        # take over (lease duration minus renew deadline from now) must not go on writing.
        metrics.leader.set(0)
        timer = threading.Timer(max(1.0, lead.lease_duration - lead.renew_deadline),
                                lambda: os._exit(1))
        timer.daemon = True
        timer.start()

    try:
        rc = leader.run_as_leader(lease_client, lead, stop, work, on_standby=standby,
                                  on_lost=lost)
    finally:
        for server in (health, metrics_server):
            if server is not None:
                server.close()
        if lease_client is not None:
            lease_client.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return rc


def gitops_rollback(cfg: settings.Settings, rec_id: str) -> results.ItemResult:
    """Propose the revert pull request of an applied recommendation (after following the
    open pull requests, so that a merge is known). Raises PermanentError when refused."""
    st = wiring.open_store(cfg.store.uri)
    try:
        prs = wiring.pull_requests(cfg)
        now = cfg.now or pipeline.now_rfc3339()
        pipeline.follow_pull_requests(st, prs, now)
        return revert.propose(rec_id, cfg, st, prs, now)
    finally:
        st.close()


def cmd_rollback(args: argparse.Namespace) -> int:
    if not args.repo:
        if not args.store:
            args.store = "kube"
        return cli_direct.cmd_rollback(args)
    args.scope = "batch"
    try:
        item = gitops_rollback(apply_settings(args), args.id)
    except (errors.NotFoundError, errors.PermanentError) as e:
        if isinstance(e, errors.ConfigError):
            raise
        print(f"reconciler: rollback of {args.id} refused: {e}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(item.to_json(), indent=2))
    else:
        print(f"{item.id}: {item.phase}: {item.message}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from reconciler.cli import demo

    return demo.run(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc: int = args.func(args)
        return rc
    except errors.ConfigError as e:
        print(f"reconciler: error: {e}", file=sys.stderr)
        return 2
    except errors.ReconcilerError as e:
        print(f"reconciler: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
