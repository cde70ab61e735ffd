"""Validation of built-in kinds: the subset of the real rules the product can trip over.

Only rules whose failure the product must handle are here (names, replica counts, requests
above limits, HPA bounds, PDB budgets, immutable pod specs, QoS on resize); each produces
the same field path and wording as pkg/apis/*/validation.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.fakes.kubeapi import status

JSON = dict[str, Any]

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


class BadQuantity(ValueError):
    pass


def parse_quantity(value: Any) -> Decimal:
    """resource.Quantity parsing; raises BadQuantity for text the server would refuse."""
    if isinstance(value, bool):
        raise BadQuantity(str(value))
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    m = _QUANTITY_RE.match(text)
    if not m:
        raise BadQuantity(text)
    number, suffix = m.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as e:
        raise BadQuantity(text) from e
    if suffix in _SUFFIX:
        return base * _SUFFIX[suffix]
    if suffix[:1] in ("e", "E"):
        try:
            return base * (Decimal(10) ** int(suffix[1:]))
        except ValueError as e:
            raise BadQuantity(text) from e
    raise BadQuantity(text)


def _containers(pod_spec: JSON) -> list[JSON]:
    return [c for c in (pod_spec.get("containers") or []) if isinstance(c, dict)]


def qos_class(pod_spec: JSON) -> str:
    """v1.PodQOSClass from the containers' cpu/memory requests and limits."""
    requests_seen = limits_seen = False
    guaranteed = True
    for c in _containers(pod_spec) + [
        c for c in (pod_spec.get("initContainers") or []) if isinstance(c, dict)
    ]:
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests_seen = requests_seen or bool(req)
        limits_seen = limits_seen or bool(lim)
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
            continue
        for k, v in req.items():
            try:
                if parse_quantity(v) != parse_quantity(lim[k]):
                    guaranteed = False
            except BadQuantity:
                guaranteed = False
    if not requests_seen and not limits_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def check_quantities(obj: JSON) -> None:
    """400 BadRequest for an unparsable quantity anywhere under a container's resources."""
    for spec, _ in pod_specs(obj):
        for c in _containers(spec):
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for v in (res.get(section) or {}).values():
                    try:
                        parse_quantity(v)
                    except BadQuantity as e:
                        raise status.bad_request(QUANTITY_ERROR) from e


def pod_specs(obj: JSON) -> list[tuple[JSON, str]]:
    """The pod spec(s) inside a pod or a workload, with their field path."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return [(spec, "spec")]
    template = spec.get("template") if isinstance(spec, dict) else None
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        return [(template["spec"], "spec.template.spec")]
    return []


def _resources_causes(pod_spec: JSON, base: str) -> list[JSON]:
    causes: list[JSON] = []
    for i, c in enumerate(_containers(pod_spec)):
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        for name, r in req.items():
            if name in lim:
                try:
                    if parse_quantity(r) > parse_quantity(lim[name]):
                        causes.append(status.invalid_value(
                            f"{base}.containers[{i}].resources.requests", str(r),
                            f"must be less than or equal to {name} limit of {lim[name]}"))
                except BadQuantity:
                    continue
    return causes


def _name_causes(obj: JSON, creating: bool) -> list[JSON]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        if creating and meta.get("generateName"):
            return []
        return [status.field_cause(
            "FieldValueRequired", "metadata.name",
            "Required value: name or generateName is required")]
    if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        return [status.invalid_value(
            "metadata.name", name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def validate_builtin(obj: JSON, old: JSON | None, subresource: str = "") -> list[JSON]:
    """Field causes for a built-in object about to be stored (old is None on create)."""
    causes = _name_causes(obj, old is None)
    kind = obj.get("kind")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        replicas = spec.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            causes.append(status.invalid_value(
                "spec.replicas", replicas, "must be greater than or equal to 0"))
    for pod_spec, base in pod_specs(obj):
        causes.extend(_resources_causes(pod_spec, base))
        causes.extend(_resize_policy_causes(pod_spec, base))
    if kind == "HorizontalPodAutoscaler":
        lo = spec.get("minReplicas", 1)
        hi = spec.get("maxReplicas")
        if isinstance(lo, int) and lo < 1:
            causes.append(status.invalid_value(
                "spec.minReplicas", lo, "must be greater than or equal to 1"))
        if not isinstance(hi, int):
            causes.append(status.required("spec.maxReplicas"))
        elif isinstance(lo, int) and hi < lo:
            causes.append(status.invalid_value(
                "spec.maxReplicas", hi, "must be greater than or equal to `minReplicas`"))
    if kind == "PodDisruptionBudget" and "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(status.invalid_value(
            "spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    if kind == "Pod" and old is not None and subresource not in ("resize", "status"):
        causes.extend(_pod_update_causes(obj, old))
    return causes


_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds",
                "schedulingGates")


def _comparable_pod_spec(spec: JSON) -> JSON:
    out = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
    for key in ("containers", "initContainers"):
        if isinstance(out.get(key), list):
            out[key] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in out[key]
            ]
    return out


POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _pod_update_causes(new: JSON, old: JSON) -> list[JSON]:
    new_spec = _comparable_pod_spec(new.get("spec") or {})
    old_spec = _comparable_pod_spec(old.get("spec") or {})
    # The scheduler binds a pod by setting nodeName once.
    if not old_spec.get("nodeName"):
        new_spec.pop("nodeName", None)
        old_spec.pop("nodeName", None)
    if new_spec != old_spec:
        return [status.forbidden_field("spec", POD_UPDATE_FORBIDDEN)]
    return []


RESIZE_POLICY_NEVER = "must be 'NotRequired' when `restartPolicy` is 'Never'"
RESIZE_UNSUPPORTED = "Pod running on node without support for resize"


def _resize_policy_causes(pod_spec: JSON, base: str) -> list[JSON]:
    """validateResizePolicy: a pod that is never restarted cannot restart a container to
    resize it."""
    if pod_spec.get("restartPolicy") != "Never":
        return []
    causes: list[JSON] = []
    for i, c in enumerate(_containers(pod_spec)):
        for p in c.get("resizePolicy") or []:
            if isinstance(p, dict) and p.get("restartPolicy") != "NotRequired":
                causes.append(status.invalid_value(
                    f"{base}.containers[{i}].resizePolicy", p.get("restartPolicy") or "",
                    RESIZE_POLICY_NEVER))
    return causes


def _memory_policy(container: JSON) -> str:
    for p in container.get("resizePolicy") or []:
        if isinstance(p, dict) and p.get("resourceName") == "memory":
            return str(p.get("restartPolicy") or "")
    return ""


def _resize_supported(pod: JSON) -> bool:
    """isPodResizeRequestSupported: the first running container must report its resources
    (nodes whose kubelet cannot resize leave them unset). Container statuses without a
    `state` (as tests often seed them) count as running in a Running pod."""
    st = pod.get("status") or {}
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state")
        running = (state or {}).get("running") is not None if state is not None else (
            st.get("phase") == "Running")
        if running:
            return cs.get("resources") is not None
    return True


def _container_resize_causes(new_c: JSON, old_c: JSON, path: str,
                             version: tuple[int, int]) -> list[JSON]:
    """validateContainerResize: nothing removed; on 1.33, no memory limit decrease (or
    addition) without a RestartContainer memory policy (1.34 leaves it to the kubelet)."""
    causes: list[JSON] = []
    new_res = new_c.get("resources") or {}
    old_res = old_c.get("resources") or {}
    for section, what in (("requests", "resource requests"), ("limits", "resource limits")):
        if set(old_res.get(section) or {}) - set(new_res.get(section) or {}):
            causes.append(status.forbidden_field(f"{path}.{section}", f"{what} cannot be removed"))
    if version != (1, 33) or _memory_policy(new_c) not in ("", "NotRequired"):
        return causes
    new_lim = (new_res.get("limits") or {}).get("memory")
    old_lim = (old_res.get("limits") or {}).get("memory")
    field = f"{path}.limits[memory]"
    try:
        if new_lim is not None and old_lim is not None:
            if parse_quantity(new_lim) < parse_quantity(old_lim):
                causes.append(status.forbidden_field(
                    field, "memory limits cannot be decreased unless resizePolicy is "
                    "RestartContainer"))
        elif new_lim is not None:
            causes.append(status.forbidden_field(
                field, "memory limits cannot be added unless resizePolicy is RestartContainer"))
    except BadQuantity:
        pass
    return causes


def resize_causes(new: JSON, old: JSON, version: tuple[int, int] = (1, 34)) -> list[JSON]:
    """pods/resize (ValidatePodResize): only container cpu/memory resources and resize
    policies may move, never the QoS class, only on a node that supports resizing, with
    the memory-limit rules of the server's version."""
    new_spec = new.get("spec") or {}
    old_spec = old.get("spec") or {}

    def strip(spec: JSON) -> JSON:
        out = {k: v for k, v in spec.items()}
        out["containers"] = [
            {k: v for k, v in c.items() if k not in ("resources", "resizePolicy")}
            for c in _containers(spec)
        ]
        return out

    if strip(new_spec) != strip(old_spec):
        return [status.forbidden_field(
            "spec", "only cpu and memory resources are mutable")]
    for i, c in enumerate(_containers(new_spec)):
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            for name in res.get(section) or {}:
                if name not in ("cpu", "memory"):
                    old_c = _containers(old_spec)[i] if i < len(_containers(old_spec)) else {}
                    old_val = ((old_c.get("resources") or {}).get(section) or {}).get(name)
                    if old_val != res[section][name]:
                        return [status.forbidden_field(
                            f"spec.containers[{i}].resources.{section}[{name}]",
                            "only cpu and memory resources are mutable")]
    old_qos = qos_class(old_spec)
    new_qos = qos_class(new_spec)
    causes = _resources_causes(new_spec, "spec")
    causes.extend(_resize_policy_causes(new_spec, "spec"))
    if old_qos != new_qos:
        causes.append(status.invalid_value(
            "spec", new_qos, "Pod QOS Class may not change as a result of resizing"))
    if not _resize_supported(old):
        causes.append(status.forbidden_field("spec", RESIZE_UNSUPPORTED))
    for i, (new_c, old_c) in enumerate(zip(_containers(new_spec), _containers(old_spec),
                                           strict=False)):
        causes.extend(_container_resize_causes(new_c, old_c, f"spec.containers[{i}].resources",
                                               version))
    return causes
