"""Shared pytest configuration.

- The test Kubernetes API server fixtures (`kubeapi`, `kubeapi_factory`) are available to
  every test.
- The store contract suite gets pytest's assertion rewriting (detailed messages) wherever
  it is imported from; this must happen before any test module imports it.
"""

import pytest

pytest_plugins = ["tests.fakes.kubeapi.fixtures"]

pytest.register_assert_rewrite("tests.store_contract")
