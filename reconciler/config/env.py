"""The one reader of the process environment.

The Helm chart configures the operator through ``DAKR_*`` variables, the downward API
(``POD_NAME``, ``POD_NAMESPACE``) and mounted files (the service account's namespace);
this module turns them into settings once, at the entry point, and nothing below it looks
at ``os.environ``. Every reader takes the environment as a mapping, so tests pass a dict.
A malformed value is a ``ConfigError`` naming the variable, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from reconciler.config import settings
from reconciler.domain import errors
from reconciler.domain import limits as limits_mod

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_NAMESPACE_FILE = f"{SA_DIR}/namespace"
SA_TOKEN_FILE = f"{SA_DIR}/token"

# `reconciler run` settings the chart sets as variables; flags still win.
RUN_VARIABLES = {
    "DAKR_MODE": "mode", "DAKR_OPA_URL": "opa_url", "DAKR_GITOPS_REPO_URL": "repo",
    "DAKR_GITOPS_BASE_BRANCH": "base", "DAKR_GITOPS_PROVIDER": "forge",
    "DAKR_GITOPS_API_URL": "forge_url", "DAKR_HEALTH_ADDR": "health_addr",
    "DAKR_METRICS_ADDR": "metrics_addr", "DAKR_CLUSTER_ID": "cluster_id",
    "DAKR_OPA_DECISION_PATH": "opa_decision_path", "DAKR_GITOPS_PATH": "repo_path",
    "DAKR_GITOPS_BRANCH_PREFIX": "branch_prefix", "DAKR_GITOPS_AUTHOR_NAME": "author_name",
    "DAKR_GITOPS_AUTHOR_EMAIL": "author_email", "DAKR_GITOPS_KUSTOMIZE": "kustomize",
    "DAKR_MARK_DEADLINE": "mark_deadline", "DAKR_MARK_TTL": "mark_ttl",
    # The embedded engine's policy directory: the image's copy of the library, or the
    # chart's policy ConfigMap mounted into the reconciler when there is no OPA sidecar.
    "DAKR_POLICY_DIR": "policies",
}
# Helm edits verified by a render before they are committed (true by default).
ENV_VERIFY_RENDER = "DAKR_GITOPS_VERIFY_RENDER"
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}


def environ() -> Mapping[str, str]:
    """The process environment (the only place this module's callers get it from)."""
    return os.environ


def run_defaults(env: Mapping[str, str]) -> dict[str, object]:
    """Defaults for `reconciler run`'s flags from the DAKR_* environment the chart sets."""
    out: dict[str, object] = {dest: env[var] for var, dest in RUN_VARIABLES.items()
                              if env.get(var)}
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
    if env.get(ENV_VERIFY_RENDER, "").strip():
        out["verify_render"] = parse_bool(env[ENV_VERIFY_RENDER], ENV_VERIFY_RENDER)
    return out


ENV_LIVE_WEBHOOK = "DAKR_LIVE_WEBHOOK"


def live_settings(env: Mapping[str, str]) -> settings.LiveSettings:
    """``DAKR_LIVE_WEBHOOK`` (true | false): the chart deployed the live-migration
    admission webhook (``liveMigration.enabled``)."""
    return settings.LiveSettings(
        webhook=parse_bool(env.get(ENV_LIVE_WEBHOOK, ""), ENV_LIVE_WEBHOOK))


ENV_CHECKPOINT_RESTORE = "DAKR_CHECKPOINT_RESTORE"


def move_settings(env: Mapping[str, str]) -> settings.MoveSettings:
    """Moving pods with their process state: ``DAKR_CHECKPOINT_RESTORE`` (true | false: the
    cluster's runtimes restore checkpoints, chart value liveMigration.checkpointRestore),
    ``DAKR_CHECKPOINT_REGISTRY``, ``DAKR_CHECKPOINT_REGISTRY_SECRET``,
    ``DAKR_CHECKPOINT_PULL_SECRET``, ``DAKR_CHECKPOINT_IMAGE``,
    ``DAKR_CHECKPOINT_JOB_NAMESPACE`` (else ``POD_NAMESPACE``: the operator's) and
    ``DAKR_CHECKPOINT_TIMEOUT`` (seconds per container)."""
    d = settings.MoveSettings()
    timeout = env.get("DAKR_CHECKPOINT_TIMEOUT", "").strip()
    if timeout and not timeout.isdigit():
        raise errors.ConfigError(f"DAKR_CHECKPOINT_TIMEOUT: {timeout!r} is not a number of "
                                 "seconds")
    return settings.MoveSettings(
        checkpoint_restore=parse_bool(env.get(ENV_CHECKPOINT_RESTORE, ""),
                                      ENV_CHECKPOINT_RESTORE),
        registry=env.get("DAKR_CHECKPOINT_REGISTRY", "").strip(),
        registry_secret=env.get("DAKR_CHECKPOINT_REGISTRY_SECRET", "").strip(),
        pull_secret=env.get("DAKR_CHECKPOINT_PULL_SECRET", "").strip(),
        image=env.get("DAKR_CHECKPOINT_IMAGE", "").strip() or d.image,
        job_namespace=(env.get("DAKR_CHECKPOINT_JOB_NAMESPACE", "").strip()
                       or env.get("POD_NAMESPACE", "").strip()),
        checkpoint_timeout=int(timeout) if timeout else d.checkpoint_timeout)


def webhook_defaults(env: Mapping[str, str]) -> dict[str, object]:
    """What the chart sets for `reconciler webhook` (its flags win): the port
    (``DAKR_WEBHOOK_PORT``), the certificate and key files (``DAKR_WEBHOOK_TLS_CERT``,
    ``DAKR_WEBHOOK_TLS_KEY``), the store (``DAKR_STORE``: kubernetes), a plain-HTTP
    metrics address (``DAKR_METRICS_ADDR``), the state directory of a local store
    (``DAKR_WORK_DIR``). Only what is set; a malformed port is a ConfigError naming it."""
    out: dict[str, object] = {}
    port = env.get("DAKR_WEBHOOK_PORT", "").strip()
    if port:
        if not port.isdigit():
            raise errors.ConfigError(f"DAKR_WEBHOOK_PORT: {port!r} is not a port number")
        out["port"] = int(port)
    for var, key in (("DAKR_WEBHOOK_TLS_CERT", "tls_cert"), ("DAKR_WEBHOOK_TLS_KEY", "tls_key"),
                     ("DAKR_METRICS_ADDR", "metrics_addr")):
        if env.get(var, "").strip():
            out[key] = env[var].strip()
    if env.get("DAKR_STORE") in ("kubernetes", "kube"):
        out["store"] = "kube"
    if env.get("DAKR_WORK_DIR"):
        out["state_dir"] = Path(env["DAKR_WORK_DIR"])
    return out


def input_limits(env: Mapping[str, str]) -> limits_mod.InputLimits:
    """``DAKR_INPUT_LIMITS`` ("depth=128,bytes=32Mi"), over the defaults."""
    try:
        return limits_mod.parse(env.get("DAKR_INPUT_LIMITS", ""))
    except errors.ConfigError as e:
        raise errors.ConfigError(f"DAKR_INPUT_LIMITS: {e}") from e


def log_level(env: Mapping[str, str]) -> int | None:
    """The level ``DAKR_LOG_LEVEL`` asks for (debug | info | warning | error), else None."""
    text = env.get("DAKR_LOG_LEVEL", "").strip().lower()
    if not text:
        return None
    if text not in LOG_LEVELS:
        raise errors.ConfigError(f"DAKR_LOG_LEVEL: {text!r} is not one of debug, info, "
                                 "warning, error")
    return LOG_LEVELS[text]


def state_dir(env: Mapping[str, str]) -> Path:
    """Where local state lives by default: ``$XDG_STATE_HOME/dakr-reconciler``."""
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dakr-reconciler"


def platform_endpoint(env: Mapping[str, str]) -> str:
    """The platform's gRPC address (``DAKR_API_ENDPOINT``), or empty."""
    return env.get("DAKR_API_ENDPOINT", "").strip()


def platform_token(env: Mapping[str, str]) -> str:
    """A fixed platform token from a Secret mounted as a variable (a token file wins)."""
    return env.get("DAKR_API_TOKEN", "")


def forge_token(env: Mapping[str, str]) -> str:
    """The forge token from a Secret mounted as a variable (a token file wins)."""
    return env.get("DAKR_GITOPS_TOKEN", "")


def in_cluster(env: Mapping[str, str], token_file: str = SA_TOKEN_FILE) -> bool:
    """Running in a pod with a service account mounted (use it when no kubeconfig is given)."""
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(token_file)


def service_account(env: Mapping[str, str], namespace_file: str = SA_NAMESPACE_FILE) -> str:
    """Who the audit log says made a change: ``DAKR_SERVICE_ACCOUNT``, else the mounted
    service account (its namespace from the token's directory), else empty."""
    sa = env.get("DAKR_SERVICE_ACCOUNT", "")
    if sa:
        return sa
    ns = _read_first_line(namespace_file)
    return f"system:serviceaccount:{ns}:dakr-reconciler" if ns else ""


def _read_first_line(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds from a Go duration ("15s", "1m30s", "500ms", "1.5h"), as the chart writes
    them (the same syntax as controller-runtime's flags). ``name`` is the variable or flag
    the text came from, for the error message. Negative durations are refused: nothing here
    may be negative."""
    s = text.strip()
    example = "e.g. 15s, 1m30s, 500ms"
    if s.startswith("-"):
        raise errors.ConfigError(f"{name}: {text!r} is negative; expected a duration "
                                 f"({example})")
    s = s.removeprefix("+")
    if s == "0":
        return 0.0
    if not s:
        raise errors.ConfigError(f"{name}: empty; expected a duration ({example})")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        if m is None:
            hint = "missing unit" if re.fullmatch(r"[\d.]+", s) else "not a duration"
            raise errors.ConfigError(f"{name}: {text!r}: {hint}; expected a Go duration "
                                     f"({example})")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise errors.ConfigError(f"{name}: {text!r} is not a boolean (expected true or false)")


def default_identity(env: Mapping[str, str]) -> str:
    """The leader-election candidate's name: POD_NAME (the downward API) based."""
    return settings.candidate_identity(env.get("POD_NAME", ""))


def leader_settings(env: Mapping[str, str],
                    namespace_file: str = SA_NAMESPACE_FILE) -> settings.LeaderSettings:
    """Settings from the variables the chart sets; the CLI's flags override them.

    The namespace is POD_NAMESPACE (the chart's downward API), else the mounted service
    account's namespace, else empty: an enabled election then fails with a clear error
    instead of guessing."""
    d = settings.LeaderSettings()
    namespace = env.get("POD_NAMESPACE", "").strip() or _read_first_line(namespace_file)

    def duration(var: str, default: float) -> float:
        text = env.get(var, "")
        return parse_duration(text, var) if text.strip() else default

    return settings.LeaderSettings(
        enabled=parse_bool(env.get(settings.ENV_ENABLED, ""), settings.ENV_ENABLED),
        lease_name=env.get(settings.ENV_LEASE, "").strip() or d.lease_name,
        namespace=namespace,
        identity=default_identity(env),
        lease_duration=duration(settings.ENV_LEASE_DURATION, d.lease_duration),
        renew_deadline=duration(settings.ENV_RENEW_DEADLINE, d.renew_deadline),
        retry_period=duration(settings.ENV_RETRY_PERIOD, d.retry_period),
    )


