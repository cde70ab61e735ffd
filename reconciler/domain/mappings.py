"""One deep merge for every layering of mappings the reconciler does: policy data files
and the platform's parameter updates (``adapters/opa``), Helm values files as ``helm -f a
-f b`` merges them (``adapters/helm``, ``gitops/index``); one lookup of a key path in
such nested mappings (values files, rendered objects); and one way to say where two
rendered objects differ (the writer's verification by Helm or Kustomize).

Pure. The rule is Helm's ``mergeMaps`` and the one data files were always merged with:
objects merge key by key, anything else replaces, later wins; no input is changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``."""
    out = dict(a)
    for k, v in b.items():
        old = out.get(k)
        out[k] = deep_merge(old, v) if isinstance(v, Mapping) and isinstance(old, Mapping) \
            else v
    return out


def merge_all(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each layer over the ones before it."""
    out: dict[str, Any] = {}
    for layer in layers:
        out = deep_merge(out, layer)
    return out


def at(node: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` (keys, outermost first); None where a key is missing or a
    value on the way is not a mapping. The empty path is ``node`` itself."""
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any]:
    """Where two documents first differ, for a message: (the path, ``a``'s value there,
    ``b``'s). Mapping keys are walked in order of their text; list items of two lists of
    the same length are named by their ``name`` when they have one (``containers[server]``),
    else by position; the walk stops at the first place that is not two mappings or two
    such lists ("" when that is the top)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                name = x.get("name") if isinstance(x, Mapping) else None
                return first_difference(x, y, f"{path}[{name if name else i}]")
    return path, a, b
