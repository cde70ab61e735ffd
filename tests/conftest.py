"""Shared pytest configuration: the test Kubernetes API server fixtures (`kubeapi`,
`kubeapi_factory`) are available to every test."""

pytest_plugins = ["tests.kubeapi.fixtures"]
