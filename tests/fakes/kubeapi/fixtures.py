"""pytest fixtures and a context manager around the test API server.

Enable the fixtures in one place, e.g. `tests/conftest.py` (the top-level conftest):

    pytest_plugins = ["tests.fakes.kubeapi.fixtures"]

or, from any conftest.py, `from tests.fakes.kubeapi.fixtures import kubeapi, kubeapi_factory  #
noqa: F401`. Test modules that import helpers should import `tests.fakes.kubeapi.handle` (the
`KubeApi` class and `serve()`), not this module: importing a module that is also registered
as a plugin makes pytest warn (an error here) that it could not rewrite its asserts.

Then:

    def test_scale(kubeapi):
        kubeapi.seed(kubeapi.deployment("web", replicas=2))
        apps = kubernetes.client.AppsV1Api(kubeapi.api_client())
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
        assert kubeapi.get("apps/v1", "Deployment", "web")["spec"]["replicas"] == 3
        assert kubeapi.requests.count("patch", "deployments") == 1

`kubeapi` is a fresh server per test; `kubeapi_factory(history=..., bookmark_interval=...,
controllers=..., version=(1, 33))` starts servers with options. Outside pytest (benchmarks, demos):
`with tests.fakes.kubeapi.handle.serve() as kube: ...`. Run pytest as `python -m pytest` from the
repository root (as `make test` does) so that `tests` is importable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.kubeapi.handle import KubeApi, serve

__all__ = ["KubeApi", "kubeapi", "kubeapi_factory", "serve"]


@pytest.fixture
def kubeapi() -> Iterator[KubeApi]:
    """A fresh API server per test, on a random loopback port."""
    with serve() as handle:
        yield handle


@pytest.fixture
def kubeapi_factory() -> Iterator[Callable[..., KubeApi]]:
    """Start servers with options, e.g. `kubeapi_factory(history=5, bookmark_interval=0.1)`."""
    stack = contextlib.ExitStack()

    def make(**options: Any) -> KubeApi:
        handle: KubeApi = stack.enter_context(serve(**options))
        return handle

    with stack:
        yield make
