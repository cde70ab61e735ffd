"""The chart's RBAC templates as plain YAML, for loading into the test API server.

A tiny stand-in for `helm template` (tests/integration/test_chart.py renders the chart
with the real Helm library; the RBAC tests only need these two files): the release
namespace is dakr-operator, names are dakr-reconciler, and every template line is dropped
while the content of `if` blocks is kept, so optional rules (node facts) are included.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "manifests" / "templates"


def render(template: str) -> str:
    text = re.sub(r"\{\{-? /\*.*?\*/ ?-?\}\}", "", template, flags=re.S)
    text = text.replace('{{ include "dakr-reconciler.fullname" . }}', "dakr-reconciler")
    text = text.replace('{{ include "dakr-reconciler.serviceAccountName" . }}',
                        "dakr-reconciler")
    text = text.replace("{{ .Release.Namespace }}", "dakr-operator")
    return "\n".join(ln for ln in text.splitlines() if "{{" not in ln)


def roles() -> str:
    """The ClusterRole and the (lease) Role."""
    return render((TEMPLATES / "clusterrole.yaml").read_text())


def bindings() -> str:
    return render((TEMPLATES / "clusterrolebinding.yaml").read_text())
