"""Fixtures of the chart tests.

- `helm`: the helm_python module (the real Helm library through helm-python-sdk), or a
  skip saying exactly why it cannot be used here;
- `chart`: the chart in manifests/ loaded by Helm, once per module.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.chart.support import CHART_DIR


@pytest.fixture(scope="module")
def helm() -> types.ModuleType:
    """The helm_python module, or a skip saying exactly why it cannot be used here."""
    try:
        import helm_python

        helm_python.helm_sdk_version()  # forces the native library to load
    except Exception as exc:  # any failure to load the native library means "cannot test"
        pytest.skip(f"helm-python-sdk not usable offline here: {exc!r}")
    return helm_python


@pytest.fixture(scope="module")
def chart(helm: types.ModuleType) -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded
