"""The GitOps writer's render checks (GitSettings.verify_renders, GitSettings.kustomize):
`--verify-render` / `--no-verify-render` and `--kustomize` of `apply` and `run`, and
DAKR_GITOPS_VERIFY_RENDER / DAKR_GITOPS_KUSTOMIZE for `run`.

Cases (table):
- verification on by default, on apply and on run; --no-verify-render turns it off,
  --verify-render on; DAKR_GITOPS_VERIFY_RENDER=false turns it off for run, and the flag
  wins over it; a value that is not a boolean is a ConfigError naming the variable;
- the Kustomize binary "auto" by default, on apply and on run; --kustomize names a
  binary or "off"; DAKR_GITOPS_KUSTOMIZE sets it for run, and the flag wins over it.
"""

from __future__ import annotations

import pytest

from reconciler.config import env
from reconciler.domain import errors
from tests.unit.config import settings_support


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
    got = settings_support.parse(command, argv, environ).git.verify_renders
    assert got is expected


def test_a_verify_render_value_that_is_not_a_boolean() -> None:
    with pytest.raises(errors.ConfigError, match="DAKR_GITOPS_VERIFY_RENDER"):
        env.run_defaults({"DAKR_GITOPS_VERIFY_RENDER": "sometimes"})


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
    assert settings_support.parse(command, argv, environ).git.kustomize == expected
