"""Hypothesis profiles for the fuzz tests (tests/fuzz/test_fuzz_*.py).

- ``ci`` (the default: ``make test``, a plain ``pytest``): a couple of hundred examples per
  target, derandomized so a run is reproducible and CI never turns red on a new random
  draw; no example database, so nothing is written into the work tree. The whole
  directory takes a few seconds per target.
- ``fuzz`` (``make fuzz``, or ``HYPOTHESIS_PROFILE=fuzz`` / ``FUZZ_SECONDS=N``): random
  seeds, run again and again for ``FUZZ_SECONDS`` (default 60) per target; failures are
  kept in an example database under the system's temporary directory and replayed first
  by the next run. A failure prints the seed blob to reproduce it (``@reproduce_failure``);
  a crash found this way becomes an ``@example`` or a regression test in its module.

Health checks: ``too_slow`` and ``data_too_large`` are suppressed in both profiles. The
strategies here build whole manifests and recommendation documents on purpose (large
inputs are the point of fuzzing a parser), and on a loaded 2-core CI machine the time
hypothesis measures for generating them varies with whatever else runs: the check would
fail a run for the machine's load, not for a bug. Deadlines are off for the same reason;
the tests that promise speed check it themselves with generous bounds.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

_HOME = pathlib.Path(tempfile.gettempdir()) / "dakr-reconciler-hypothesis"
# Hypothesis keeps its own files (the example database, caches) under a home directory,
# ``.hypothesis/`` in the working directory unless told otherwise: keep the tree clean.
set_hypothesis_home_dir(str(_HOME))

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "fuzz",
    # One hypothesis run per batch; batches repeat with fresh seeds until FUZZ_SECONDS.
    max_examples=300,
    deadline=None,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(str(_HOME / "examples")),
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)


def fuzz_seconds() -> float:
    """How long one target runs under the ``fuzz`` profile."""
    raw = os.environ.get("FUZZ_SECONDS", "").strip() or "60"
    try:
        seconds = float(raw)
    except ValueError:
        raise pytest.UsageError(
            f"FUZZ_SECONDS must be a number of seconds, got {raw!r}") from None
    return max(seconds, 0.0)


def profile_name() -> str:
    explicit = os.environ.get("HYPOTHESIS_PROFILE", "").strip()
    if explicit:
        return explicit
    return "fuzz" if os.environ.get("FUZZ_SECONDS", "").strip() else "ci"


settings.load_profile(profile_name())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Under the ``fuzz`` profile, run each hypothesis test again and again (every call is
    a fresh hypothesis run with a new seed) until its ``FUZZ_SECONDS`` are spent."""
    func: Any = pyfuncitem.obj
    if settings.get_current_profile_name() != "fuzz" \
            or not getattr(func, "is_hypothesis_test", False):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    deadline = time.monotonic() + fuzz_seconds()
    runs = 0
    while True:
        func(**args)
        runs += 1
        if time.monotonic() >= deadline:
            break
    pyfuncitem.user_properties.append(("fuzz_runs", runs))
    return True
