"""The chart's CRDs, installed into the test API server (shared by the tests that need them)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.kubeapi.handle import KubeApi

ROOT = Path(__file__).resolve().parents[1]
CRDS = sorted((ROOT / "manifests" / "crds").glob("*.yaml"))


def permissive(crd: dict[str, Any]) -> dict[str, Any]:
    """The same CRD (names, scope, status subresource) with a schema that accepts anything."""
    out = copy.deepcopy(crd)
    for v in out["spec"]["versions"]:
        v["schema"] = {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}}
    return out


def install_crds(api: KubeApi, permissive_schema: bool = False) -> None:
    for path in CRDS:
        crd = yaml.safe_load(path.read_text())
        api.seed(permissive(crd) if permissive_schema else crd)
