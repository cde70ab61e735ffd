"""`as=Table` responses, so `kubectl get` prints columns as it does against a real cluster.

kubectl asks for a meta.k8s.io/v1 Table; the server fills the columns (additionalPrinterColumns
for custom resources, a few well-known columns for built-ins, else NAME and AGE).
"""

from __future__ import annotations

import datetime
from typing import Any

from tests.fakes.kubeapi import resources

JSON = dict[str, Any]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_age(stamp: str | None) -> str:
    """duration.HumanDuration, coarsened: 45s, 5m, 3h, 2d."""
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _path(obj: Any, json_path: str) -> Any:
    cur = obj
    for part in json_path.strip().lstrip(".").split("."):
        if not part:
            continue
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _builtin_columns(kind: str) -> list[tuple[str, str, Any]]:
    def ready(o: JSON) -> str:
        st = o.get("status") or {}
        if kind == "Pod":
            cs = st.get("containerStatuses") or []
            total = len((o.get("spec") or {}).get("containers") or [])
            return f"{sum(1 for c in cs if c.get('ready'))}/{total}"
        return f"{st.get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 1)}"

    if kind == "Deployment":
        return [("Ready", "string", ready),
                ("Up-to-date", "integer", lambda o: (o.get("status") or {}).get(
                    "updatedReplicas", 0)),
                ("Available", "integer", lambda o: (o.get("status") or {}).get(
                    "availableReplicas", 0))]
    if kind == "StatefulSet":
        return [("Ready", "string", ready)]
    if kind == "Pod":
        return [("Ready", "string", ready),
                ("Status", "string", lambda o: "Terminating" if o["metadata"].get(
                    "deletionTimestamp") else (o.get("status") or {}).get("phase", "")),
                ("Restarts", "string", lambda o: str(sum(
                    c.get("restartCount", 0)
                    for c in (o.get("status") or {}).get("containerStatuses") or [])))]
    if kind == "Node":
        def node_status(o: JSON) -> str:
            conds = {c.get("type"): c.get("status")
                     for c in (o.get("status") or {}).get("conditions") or []}
            text = "Ready" if conds.get("Ready") == "True" else "NotReady"
            if (o.get("spec") or {}).get("unschedulable"):
                text += ",SchedulingDisabled"
            return text
        return [("Status", "string", node_status)]
    return []


def table(rt: resources.ResourceType, items: list[JSON], resource_version: str,
          printer_columns: list[JSON] | None) -> JSON:
    defs: list[JSON] = [{"name": "Name", "type": "string", "format": "name",
                         "description": "Name of the object", "priority": 0}]
    getters: list[Any] = []
    if rt.custom:
        for col in printer_columns or []:
            kind = col.get("type", "string")
            defs.append({"name": col.get("name", ""), "type": kind,
                         "format": col.get("format", ""),
                         "description": col.get("description", ""),
                         "priority": col.get("priority", 0)})
            path = col.get("jsonPath", "")
            if kind == "date":
                getters.append(lambda o, p=path: human_age(_path(o, p)))
            else:
                getters.append(lambda o, p=path: _path(o, p))
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp"
                   for c in printer_columns or []):
            defs.append({"name": "Age", "type": "date", "format": "", "description": "",
                         "priority": 0})
            getters.append(lambda o: human_age(o["metadata"].get("creationTimestamp")))
    else:
        for name, kind, get in _builtin_columns(rt.kind):
            defs.append({"name": name, "type": kind, "format": "", "description": "",
                         "priority": 0})
            getters.append(get)
        defs.append({"name": "Age", "type": "string", "format": "", "description": "",
                     "priority": 0})
        getters.append(lambda o: human_age(o["metadata"].get("creationTimestamp")))
    rows = []
    for obj in items:
        cells = [obj["metadata"]["name"]] + [g(obj) for g in getters]
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": defs, "rows": rows}
