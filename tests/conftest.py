"""Shared pytest configuration.

- The test Kubernetes API server fixtures (`kubeapi`, `kubeapi_factory`) are available to
  every test.
- The store contract suite gets pytest's assertion rewriting (detailed messages) wherever
  it is imported from; this must happen before any test module imports it.
- Policy coverage is opt-in and the shipped library covers no workload; commands run in
  process get the suite's opt-in (tests/data/opt-in.yaml, every namespace) as their
  default `--policy-data`, the way a team layers its own list. A test of the library as
  shipped passes `--policy-data` itself or uses `samples.AS_SHIPPED`; subprocesses and
  engines built by hand pass `samples.OPT_IN` / `samples.DATA_FILES` explicitly.
"""

from collections.abc import Iterator

import pytest

from reconciler.cli import flags
from tests import samples

pytest_plugins = ["tests.fakes.kubeapi.fixtures"]

pytest.register_assert_rewrite("tests.store_contract")


@pytest.fixture(autouse=True)
def _policy_opt_in() -> Iterator[None]:
    saved = flags.DEFAULT_POLICY_DATA
    flags.DEFAULT_POLICY_DATA = (samples.OPT_IN,)
    try:
        yield
    finally:
        flags.DEFAULT_POLICY_DATA = saved
