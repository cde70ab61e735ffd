"""The Helm render verification setting (GitSettings.verify_renders): `--verify-render` /
`--no-verify-render` of `apply` and `run`, and DAKR_GITOPS_VERIFY_RENDER for `run`.

Cases (table):
- on by default, on apply and on run;
- --no-verify-render turns it off; --verify-render on;
- DAKR_GITOPS_VERIFY_RENDER=false turns it off for run, and the flag wins over it;
- a value that is not a boolean is a ConfigError naming the variable.
"""

from __future__ import annotations

import argparse

import pytest

from reconciler.cli import flags, run
from reconciler.config import env, settings
from reconciler.domain import errors


def parse(command: str, argv: list[str], environ: dict[str, str]) -> settings.Settings:
    p = argparse.ArgumentParser()
    if command == "run":
        run.add_run_flags(p)
        p.set_defaults(**env.run_defaults(environ))
    else:
        flags.add_batch(p)
    return flags.settings_of(p.parse_args(argv), environ)


@pytest.mark.parametrize(("command", "argv", "environ", "expected"), [
    ("apply", [], {}, True),
    ("run", [], {}, True),
    ("apply", ["--no-verify-render"], {}, False),
    ("apply", ["--verify-render"], {}, True),
    ("run", [], {"DAKR_GITOPS_VERIFY_RENDER": "false"}, False),
    ("run", ["--verify-render"], {"DAKR_GITOPS_VERIFY_RENDER": "false"}, True),
], ids=["apply-default", "run-default", "apply-off", "apply-on", "run-env", "flag-wins"])
def test_verify_render_setting(command: str, argv: list[str], environ: dict[str, str],
                               expected: bool) -> None:
    assert parse(command, argv, environ).git.verify_renders is expected


def test_a_value_that_is_not_a_boolean() -> None:
    with pytest.raises(errors.ConfigError, match="DAKR_GITOPS_VERIFY_RENDER"):
        env.run_defaults({"DAKR_GITOPS_VERIFY_RENDER": "sometimes"})
