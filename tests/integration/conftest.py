"""Fixtures shared by the integration tests.

- `origin`: Google's Online Boutique manifests (examples/microservices-demo) committed in a
  fresh Git repository behind a bare `origin.git`, as `reconciler demo` seeds it; the
  fixture's value is the bare repository's path, what `--repo` takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def origin(tmp_path: Path) -> Path:
    from reconciler.devtools import demo

    return demo.seed_origin(tmp_path / "repo", ROOT / "examples" / "microservices-demo")
