"""The resource types the server serves, and the discovery documents built from them.

Built-in types are fixed; custom resources are added when a CRD is stored and removed when
it is deleted, exactly when a real server starts and stops serving them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

JSON = dict[str, Any]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclasses.dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = dataclasses.field(default_factory=list)
    subresources: set[str] = dataclasses.field(default_factory=set)
    field_selectors: set[str] = dataclasses.field(default_factory=set)
    schema: JSON | None = None  # openAPIV3Schema of a custom resource
    custom: bool = False
    categories: list[str] = dataclasses.field(default_factory=list)
    scale_paths: JSON | None = None  # specReplicasPath etc. for a CRD's scale subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects are shared across the served versions of a group."""
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


_COMMON_FIELDS = {"metadata.name", "metadata.namespace"}


def _builtin(
    group: str, version: str, plural: str, kind: str, namespaced: bool,
    short: list[str] | None = None, sub: set[str] | None = None, fields: set[str] | None = None,
) -> ResourceType:
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
        singular=kind.lower(), short_names=short or [], subresources=sub or set(),
        field_selectors=_COMMON_FIELDS | (fields or set()),
    )


def builtin_types() -> list[ResourceType]:
    return [
        _builtin("", "v1", "namespaces", "Namespace", False, ["ns"], {"status"},
                 {"status.phase"}),
        _builtin("", "v1", "nodes", "Node", False, ["no"], {"status", "proxy"},
                 {"spec.unschedulable"}),
        _builtin("", "v1", "pods", "Pod", True, ["po"], {"status", "eviction", "resize"},
                 {"spec.nodeName", "status.phase", "spec.schedulerName",
                  "spec.serviceAccountName", "status.podIP"}),
        _builtin("", "v1", "events", "Event", True, ["ev"], None,
                 {"involvedObject.kind", "involvedObject.name", "involvedObject.namespace",
                  "involvedObject.uid", "reason", "type", "source"}),
        _builtin("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
        _builtin("", "v1", "secrets", "Secret", True, None, None, {"type"}),
        _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
        _builtin("", "v1", "services", "Service", True, ["svc"], {"status"}),
        _builtin("apps", "v1", "deployments", "Deployment", True, ["deploy"],
                 {"status", "scale"}),
        _builtin("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], {"status", "scale"}),
        _builtin("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], {"status"}),
        _builtin("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], {"status", "scale"}),
        _builtin("batch", "v1", "jobs", "Job", True, None, {"status"}),
        _builtin("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 True, ["hpa"], {"status"}),
        _builtin("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 True, ["hpa"], {"status"}),
        _builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"],
                 {"status"}),
        _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
        _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", False, ["crd", "crds"], {"status"}),
        _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 False),
        _builtin("events.k8s.io", "v1", "events", "Event", True, ["ev"]),
        # Stored and called on creates (tests.fakes.kubeapi.admission).
        _builtin("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                 "MutatingWebhookConfiguration", False),
    ]


def types_from_crd(crd: JSON) -> list[ResourceType]:
    """One ResourceType per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out: list[ResourceType] = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = v.get("subresources") or {}
        sub_set: set[str] = set()
        if "status" in subs:
            sub_set.add("status")
        if "scale" in subs:
            sub_set.add("scale")
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(ResourceType(
            group=spec.get("group", ""), version=v.get("name", ""),
            plural=names.get("plural", ""), kind=names.get("kind", ""),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names.get("kind", "").lower(),
            short_names=list(names.get("shortNames") or []),
            subresources=sub_set, field_selectors=set(_COMMON_FIELDS),
            schema=schema, custom=True, categories=list(names.get("categories") or []),
            scale_paths=subs.get("scale"),
        ))
    return out


def api_resource_list(group_version: str, types: list[ResourceType]) -> JSON:
    resources: list[JSON] = []
    for t in types:
        verbs = list(VERBS)
        if t.key == ("", "events") or t.plural == "leases":
            verbs = list(VERBS)
        entry: JSON = {
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": verbs,
        }
        if t.short_names:
            entry["shortNames"] = t.short_names
        if t.categories:
            entry["categories"] = t.categories
        resources.append(entry)
        for sub in sorted(t.subresources):
            if sub == "status":
                resources.append({"name": f"{t.plural}/status", "singularName": "",
                                  "namespaced": t.namespaced, "kind": t.kind,
                                  "verbs": ["get", "patch", "update"]})
            elif sub == "scale":
                resources.append({"name": f"{t.plural}/scale", "singularName": "",
                                  "namespaced": t.namespaced, "group": "autoscaling",
                                  "version": "v1", "kind": "Scale",
                                  "verbs": ["get", "patch", "update"]})
            elif sub == "eviction":
                resources.append({"name": "pods/eviction", "singularName": "",
                                  "namespaced": True, "group": "policy", "version": "v1",
                                  "kind": "Eviction", "verbs": ["create"]})
            elif sub == "resize":
                resources.append({"name": "pods/resize", "singularName": "",
                                  "namespaced": True, "kind": "Pod",
                                  "verbs": ["get", "patch", "update"]})
            elif sub == "proxy":
                resources.append({"name": f"{t.plural}/proxy", "singularName": "",
                                  "namespaced": t.namespaced, "kind": "NodeProxyOptions",
                                  "verbs": ["create", "delete", "get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}
