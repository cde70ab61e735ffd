"""The Kustomize binary setting (GitSettings.kustomize): the `--kustomize` flag of `apply`
and `run`, and DAKR_GITOPS_KUSTOMIZE for `run`.

Cases (table):
- default "auto", on apply and on run;
- --kustomize names a binary or "off";
- DAKR_GITOPS_KUSTOMIZE sets it for run, and the flag wins over the variable.
"""

from __future__ import annotations

import argparse

import pytest

from reconciler.cli import flags, run
from reconciler.config import env, settings


def parse(command: str, argv: list[str], environ: dict[str, str]) -> settings.Settings:
    p = argparse.ArgumentParser()
    if command == "run":
        run.add_run_flags(p)
        p.set_defaults(**env.run_defaults(environ))
    else:
        flags.add_batch(p)
    return flags.settings_of(p.parse_args(argv), environ)


@pytest.mark.parametrize(("command", "argv", "environ", "expected"), [
    ("apply", [], {}, "auto"),
    ("run", [], {}, "auto"),
    ("apply", ["--kustomize", "/opt/bin/kustomize"], {}, "/opt/bin/kustomize"),
    ("apply", ["--kustomize", "off"], {}, "off"),
    ("run", [], {"DAKR_GITOPS_KUSTOMIZE": "kubectl"}, "kubectl"),
    ("run", ["--kustomize", "off"], {"DAKR_GITOPS_KUSTOMIZE": "kubectl"}, "off"),
], ids=["apply-default", "run-default", "apply-path", "apply-off", "run-env", "flag-wins"])
def test_kustomize_setting(command: str, argv: list[str], environ: dict[str, str],
                           expected: str) -> None:
    assert parse(command, argv, environ).git.kustomize == expected
