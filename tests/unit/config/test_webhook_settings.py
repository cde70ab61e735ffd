"""Settings of the live-migration admission webhook and of the operator's live migration
(config/settings.py WebhookSettings and LiveSettings, config/env.py, cli/webhook.py).

Cases:
- DAKR_LIVE_WEBHOOK: true/false spellings, unset (false), anything else a ConfigError
  naming the variable;
- webhook_defaults: the DAKR_WEBHOOK_* variables, DAKR_STORE=kubernetes, DAKR_METRICS_ADDR,
  DAKR_WORK_DIR, only what is set; a port that is not a number names DAKR_WEBHOOK_PORT;
- WebhookSettings refuses: no certificate or key, a port out of range, an unknown store,
  a malformed metrics address, a non-positive reload interval;
- the CLI's flags win over the variables; `--store sqlite` is the state directory's file;
- the operator's settings (`run`) carry DAKR_LIVE_WEBHOOK as `live.webhook`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import flags
from reconciler.cli import main as cli_main
from reconciler.cli import webhook as cli_webhook
from reconciler.config import env, settings
from reconciler.domain import errors


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("", False), (None, False)])
def test_live_webhook_variable(text: str | None, expected: bool) -> None:
    environ = {} if text is None else {"DAKR_LIVE_WEBHOOK": text}
    assert env.live_settings(environ) == settings.LiveSettings(webhook=expected)


def test_live_webhook_variable_must_be_a_boolean() -> None:
    with pytest.raises(errors.ConfigError, match="DAKR_LIVE_WEBHOOK"):
        env.live_settings({"DAKR_LIVE_WEBHOOK": "enabled"})


def test_webhook_defaults() -> None:
    assert env.webhook_defaults({}) == {}
    assert env.webhook_defaults({
        "DAKR_WEBHOOK_PORT": "9443", "DAKR_WEBHOOK_TLS_CERT": "/tls/tls.crt",
        "DAKR_WEBHOOK_TLS_KEY": "/tls/tls.key", "DAKR_STORE": "kubernetes",
        "DAKR_METRICS_ADDR": ":8082", "DAKR_WORK_DIR": "/var/lib/dakr",
        "DAKR_MODE": "direct"}) == {
        "port": 9443, "tls_cert": "/tls/tls.crt", "tls_key": "/tls/tls.key", "store": "kube",
        "metrics_addr": ":8082", "state_dir": Path("/var/lib/dakr")}
    with pytest.raises(errors.ConfigError, match="DAKR_WEBHOOK_PORT"):
        env.webhook_defaults({"DAKR_WEBHOOK_PORT": "https"})


TLS = {"tls_cert": "c.pem", "tls_key": "k.pem"}


@pytest.mark.parametrize(("values", "says"), [
    ({}, "--tls-cert and --tls-key"),
    ({"tls_cert": "c.pem"}, "--tls-cert and --tls-key"),
    ({**TLS, "port": 70000}, "--port (DAKR_WEBHOOK_PORT)"),
    ({**TLS, "port": -1}, "--port (DAKR_WEBHOOK_PORT)"),
    ({**TLS, "store": "postgres:db"}, "--store 'postgres:db'"),
    ({**TLS, "store": "sqlite:"}, "--store 'sqlite:'"),
    ({**TLS, "metrics_addr": "8082"}, "--metrics-addr (DAKR_METRICS_ADDR)"),
    ({**TLS, "reload_interval": 0.0}, "reload interval"),
])
def test_webhook_settings_refuse(values: dict[str, Any], says: str) -> None:
    with pytest.raises(errors.ConfigError) as e:
        settings.WebhookSettings(**values)
    assert says in str(e.value)


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    environ = {"DAKR_WEBHOOK_PORT": "9443", "DAKR_WEBHOOK_TLS_CERT": "/env/tls.crt",
               "DAKR_WEBHOOK_TLS_KEY": "/env/tls.key", "DAKR_STORE": "kubernetes"}
    parse = cli_main.build_parser().parse_args
    cfg = cli_webhook.webhook_settings(parse(["webhook"]), environ)
    assert (cfg.port, cfg.tls_cert, cfg.tls_key, cfg.store) == (
        9443, "/env/tls.crt", "/env/tls.key", "kube")
    cfg = cli_webhook.webhook_settings(parse([
        "webhook", "--port", "10443", "--tls-cert", "/flag/c", "--tls-key", "/flag/k",
        "--store", "sqlite", "--state-dir", str(tmp_path)]), environ)
    assert (cfg.port, cfg.tls_cert, cfg.tls_key, cfg.store) == (
        10443, "/flag/c", "/flag/k", f"sqlite:{tmp_path / 'reconciler.db'}")
    cfg = cli_webhook.webhook_settings(parse(["webhook", "--store", "sqlite:/x/r.db"]),
                                       environ)
    assert cfg.store == "sqlite:/x/r.db"


def test_the_operator_settings_carry_live_webhook() -> None:
    args = cli_main.build_parser().parse_args(["run"])
    assert flags.settings_of(args, {"DAKR_LIVE_WEBHOOK": "true"}).live.webhook is True
    assert flags.settings_of(args, {}).live.webhook is False
