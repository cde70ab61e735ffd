"""The chart's OPA sidecar runs the OPA version of the embedded engine the tests trust.

The Rego tests and every policy test run on the embedded engine (opa_bindings); the chart
runs openpolicyagent/opa. Cases:
- the OPA module version in the installed opa_bindings shared library's Go build info
  (``dep\tgithub.com/open-policy-agent/opa\tvX.Y.Z``, or the ``=>`` replacement when there
  is one) equals values.yaml's ``opa.image.tag`` (with its ``v``);
- that tag is written once in the chart: no template, Chart.yaml or other values line
  repeats it (templates take it from ``.Values.opa.image.tag``);
- the build-info reader itself, on made-up bytes: a plain dependency, a replaced one, none.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "manifests"
OPA_MODULE = b"github.com/open-policy-agent/opa"
# Go's build info: "dep\t<path>\t<version>[\t<sum>]", then "=>\t<path>\t<version>..." when the
# module is replaced (the replacement is what was built).
_DEP = re.compile(rb"^dep\t" + re.escape(OPA_MODULE) + rb"\t(v[^\t\n]+)[^\n]*\n"
                  rb"(?:=>\t[^\t\n]+\t(v[^\t\n]+))?", re.M)


def opa_version_in(binary: bytes) -> str | None:
    """The OPA module version a Go binary was built with, from its embedded build info."""
    versions = {m.group(2) or m.group(1) for m in _DEP.finditer(binary)}
    assert len(versions) <= 1, f"several OPA versions in one build info: {versions}"
    return versions.pop().decode() if versions else None


def embedded_opa_version() -> str:
    spec = importlib.util.find_spec("opa_bindings")
    assert spec is not None and spec.submodule_search_locations, "opa_bindings not installed"
    found: dict[str, str] = {}
    for location in spec.submodule_search_locations:
        for lib in Path(location).rglob("*.so*"):
            version = opa_version_in(lib.read_bytes())
            if version:
                found[lib.name] = version
    assert found, "no Go build info naming OPA in opa_bindings' shared libraries"
    assert len(set(found.values())) == 1, found
    return next(iter(found.values()))


def chart_opa_tag() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    tag: str = values["opa"]["image"]["tag"]
    return tag


def test_sidecar_runs_the_embedded_engines_opa_version() -> None:
    assert f"v{chart_opa_tag()}" == embedded_opa_version()


def test_opa_version_is_pinned_in_one_place() -> None:
    tag = chart_opa_tag()
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag
    hits = []
    for path in sorted(CHART.rglob("*")):
        parts = path.relative_to(CHART).parts
        if path.is_file() and "files" not in parts and "__pycache__" not in parts:
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if tag in line:
                    hits.append(f"{path.relative_to(CHART)}:{n}")
    assert len(hits) == 1 and hits[0].startswith("values.yaml:"), hits


@pytest.mark.parametrize(("binary", "version"), [
    (b"x\ndep\tgithub.com/open-policy-agent/opa\tv1.2.3\th1:abc=\ndep\tgithub.com/o/p\tv9\n",
     "v1.2.3"),
    (b"dep\tgithub.com/open-policy-agent/opa\tv1.2.3\th1:abc=\n"
     b"=>\tgithub.com/fork/opa\tv1.2.4\th1:def=\n", "v1.2.4"),
    (b"dep\tgithub.com/open-policy-agent/opa-envoy\tv1.0.0\n", None),
    (b"no build info here", None),
])
def test_build_info_reader(binary: bytes, version: str | None) -> None:
    assert opa_version_in(binary) == version
