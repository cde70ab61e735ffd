"""The settings of moving pods with their process state (MoveSettings): the DAKR_CHECKPOINT_*
variables the chart sets, and the options the executor gets from them.

Cases:
- defaults: off, no registry, the buildah image, 120 s, Jobs in the pod's namespace;
- every variable read (restore switch, registry, push and pull Secrets, image, Jobs'
  namespace, timeout); the Jobs' namespace falls back to POD_NAMESPACE (the operator's);
- `apply --mode direct` and `run` carry them into Settings.move, and the policy input's
  cluster.checkpointRestore (Settings.operator) says what the switch says;
- a switch that is not a boolean, a timeout that is not a number or out of 1-3600, and the
  switch on without a usable registry are ConfigErrors naming what to set;
- MoveOptions.from_settings copies them (other options keep their defaults or the
  overrides given).
"""

from __future__ import annotations

import argparse

import pytest

from reconciler.cli import flags, run
from reconciler.config import env, settings
from reconciler.direct import move
from reconciler.domain import checkpoint as ckpt
from reconciler.domain import errors

FULL = {"DAKR_CHECKPOINT_RESTORE": "true", "DAKR_CHECKPOINT_REGISTRY": "registry.example/ckpt",
        "DAKR_CHECKPOINT_REGISTRY_SECRET": "push", "DAKR_CHECKPOINT_PULL_SECRET": "pull",
        "DAKR_CHECKPOINT_IMAGE": "quay.io/buildah/stable:v1.40",
        "DAKR_CHECKPOINT_JOB_NAMESPACE": "movers", "DAKR_CHECKPOINT_TIMEOUT": "300",
        "POD_NAMESPACE": "dakr-system"}


def test_defaults() -> None:
    got = env.move_settings({})
    assert got == settings.MoveSettings()
    assert (got.checkpoint_restore, got.registry, got.image, got.checkpoint_timeout,
            got.job_namespace) == (False, "", ckpt.DEFAULT_IMAGE, 120, "")


def test_every_variable_is_read() -> None:
    assert env.move_settings(FULL) == settings.MoveSettings(
        checkpoint_restore=True, registry="registry.example/ckpt", registry_secret="push",
        pull_secret="pull", image="quay.io/buildah/stable:v1.40", job_namespace="movers",
        checkpoint_timeout=300)
    rest = {k: v for k, v in FULL.items() if k != "DAKR_CHECKPOINT_JOB_NAMESPACE"}
    assert env.move_settings(rest).job_namespace == "dakr-system"


@pytest.mark.parametrize("command", ["apply", "run"])
def test_commands_carry_them(command: str) -> None:
    p = argparse.ArgumentParser()
    if command == "run":
        run.add_run_flags(p)
        p.set_defaults(**env.run_defaults(FULL))
    else:
        flags.add_direct(p)
    s = flags.settings_of(p.parse_args([]), FULL)
    assert s.move == env.move_settings(FULL)
    assert s.operator().checkpoint_restore
    off = flags.settings_of(p.parse_args([]), {**FULL, "DAKR_CHECKPOINT_RESTORE": "false"})
    assert not off.operator().checkpoint_restore


@pytest.mark.parametrize(("environ", "words"), [
    ({"DAKR_CHECKPOINT_RESTORE": "maybe"}, "DAKR_CHECKPOINT_RESTORE: 'maybe' is not a boolean"),
    ({"DAKR_CHECKPOINT_TIMEOUT": "2m"}, "DAKR_CHECKPOINT_TIMEOUT: '2m' is not a number"),
    ({"DAKR_CHECKPOINT_TIMEOUT": "0"}, "must be 1-3600 seconds, got 0"),
    ({"DAKR_CHECKPOINT_TIMEOUT": "7200"}, "must be 1-3600 seconds, got 7200"),
    ({"DAKR_CHECKPOINT_RESTORE": "true"}, "set liveMigration.checkpoint.registry"),
    ({"DAKR_CHECKPOINT_RESTORE": "true", "DAKR_CHECKPOINT_REGISTRY": "https://r.example"},
     "is not host[:port][/path]"),
])
def test_unusable_values_are_config_errors(environ: dict[str, str], words: str) -> None:
    with pytest.raises(errors.ConfigError) as e:
        env.move_settings(environ)
    assert words in str(e.value)


def test_options_from_settings() -> None:
    s = env.move_settings(FULL)
    o = move.MoveOptions.from_settings(s, ready_timeout=60.0)
    assert (o.checkpoint_restore, o.registry, o.registry_secret, o.pull_secret, o.image,
            o.job_namespace, o.checkpoint_timeout) == (
        True, "registry.example/ckpt", "push", "pull", "quay.io/buildah/stable:v1.40",
        "movers", 300)
    assert o.ready_timeout == 60.0 and o.restore_timeout == move.MoveOptions().restore_timeout
    assert not move.MoveOptions.from_settings(settings.MoveSettings()).checkpoint_restore
    with pytest.raises(errors.ConfigError):
        move.MoveOptions(retry_interval=0)
