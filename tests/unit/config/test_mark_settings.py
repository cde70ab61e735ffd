"""The mark deadline and TTL settings (DirectSettings.mark_deadline, mark_ttl): flags of
`apply --mode direct` and `run`, and the DAKR_* variables the chart may set.

Cases (table):
- defaults: 3600 s and 86400 s;
- --mark-deadline / --mark-ttl set them, on apply and on run;
- DAKR_MARK_DEADLINE / DAKR_MARK_TTL set them for run, and a flag wins over the variable;
- zero, negative and infinite values are ConfigErrors naming the flag.
"""

from __future__ import annotations

import pytest

from reconciler.cli import flags
from reconciler.config import settings
from reconciler.domain import errors
from tests.unit.config import settings_support


def parse(command: str, argv: list[str], environ: dict[str, str]) -> settings.Settings:
    return settings_support.parse(command, argv, environ, flags.add_direct)


@pytest.mark.parametrize(("command", "argv", "environ", "deadline", "ttl"), [
    ("apply", [], {}, 3600.0, 86400.0),
    ("run", [], {}, 3600.0, 86400.0),
    ("apply", ["--mark-deadline", "120", "--mark-ttl", "7200"], {}, 120.0, 7200.0),
    ("run", ["--mark-deadline", "90"], {}, 90.0, 86400.0),
    ("run", [], {"DAKR_MARK_DEADLINE": "1800", "DAKR_MARK_TTL": "3600"}, 1800.0, 3600.0),
    ("run", ["--mark-deadline", "60"], {"DAKR_MARK_DEADLINE": "1800"}, 60.0, 86400.0),
], ids=["apply-defaults", "run-defaults", "apply-flags", "run-flag", "run-env",
        "flag-wins"])
def test_mark_settings(command: str, argv: list[str], environ: dict[str, str],
                       deadline: float, ttl: float) -> None:
    direct = parse(command, argv, environ).direct
    assert (direct.mark_deadline, direct.mark_ttl) == (deadline, ttl)


@pytest.mark.parametrize(("argv", "flag"), [
    (["--mark-deadline", "0"], "--mark-deadline"),
    (["--mark-deadline", "-5"], "--mark-deadline"),
    (["--mark-ttl", "inf"], "--mark-ttl"),
])
def test_bad_values_are_refused(argv: list[str], flag: str) -> None:
    with pytest.raises(errors.ConfigError, match=flag):
        parse("apply", argv, {})
