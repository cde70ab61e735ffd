"""The three patch formats the API server accepts for JSON bodies.

- JSON Patch (RFC 6902): any failing operation (including `test`) makes the whole patch fail
  and nothing is stored; the server answers 422 with the generic message (patch.go uses
  NewGenericServerResponse), a malformed patch document 400.
- JSON Merge Patch (RFC 7386): objects merge, `null` deletes, lists are replaced.
- Strategic merge patch: like merge patch, but lists with a merge key (containers by `name`,
  ports by `containerPort`, ...) merge element-wise, and the `$patch` / `$setElementOrder` /
  `$deleteFromPrimitiveList` directives kubectl sends are honoured.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.kubeapi import status

JSON = dict[str, Any]

# patchMergeKey of the list fields the product and kubectl touch (from the core/apps types).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "resizePolicy": "resourceName",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of scalars with patchStrategy=merge: a patch adds to them rather than replacing.
MERGE_PRIMITIVE_LISTS = {"finalizers"}


class PatchFailed(Exception):
    """An operation could not be applied; the caller answers 422."""


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFailed(f"invalid path {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _resolve_parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchFailed(f"doc is missing path: {tok}")
            cur = cur[tok]
        elif isinstance(cur, list):
            try:
                idx = int(tok)
                cur = cur[idx]
            except (ValueError, IndexError) as e:
                raise PatchFailed(f"doc is missing path: {tok}") from e
        else:
            raise PatchFailed(f"doc is missing path: {tok}")
    return cur, tokens[-1]


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent, last = _resolve_parent(doc, tokens)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"doc is missing key: {last}")
        return parent[last]
    if isinstance(parent, list):
        try:
            return parent[int(last)]
        except (ValueError, IndexError) as e:
            raise PatchFailed(f"doc is missing index: {last}") from e
    raise PatchFailed("invalid path")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _resolve_parent(doc, tokens)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError as e:
                raise PatchFailed(f"invalid index {last}") from e
            if idx < 0 or idx > len(parent):
                raise PatchFailed(f"index out of bounds: {idx}")
            parent.insert(idx, value)
    else:
        raise PatchFailed("invalid path")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchFailed("cannot remove the root")
    parent, last = _resolve_parent(doc, tokens)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        try:
            return parent.pop(int(last))
        except (ValueError, IndexError) as e:
            raise PatchFailed(f"unable to remove index {last}") from e
    raise PatchFailed("invalid path")


def apply_json_patch(doc: JSON, ops: Any) -> JSON:
    """RFC 6902 on a deep copy; any failure leaves the original untouched."""
    if not isinstance(ops, list):
        raise status.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    out: Any = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise status.bad_request("unexpected kind of JSON Patch operation")
        kind = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise status.bad_request(f"missing path in JSON Patch operation {kind}")
        try:
            tokens = _pointer(path)
            if kind == "add":
                out = _add(out, tokens, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                _remove(out, tokens)
            elif kind == "replace":
                _get(out, tokens)
                if not tokens:
                    out = copy.deepcopy(op.get("value"))
                else:
                    _remove(out, tokens)
                    out = _add(out, tokens, copy.deepcopy(op.get("value")))
            elif kind == "move":
                value = _remove(out, _pointer(op.get("from", "")))
                out = _add(out, tokens, value)
            elif kind == "copy":
                value = copy.deepcopy(_get(out, _pointer(op.get("from", ""))))
                out = _add(out, tokens, value)
            elif kind == "test":
                try:
                    current = _get(out, tokens)
                except PatchFailed:
                    current = None
                if not _equal(current, op.get("value")):
                    raise PatchFailed(f"testing value {path} failed: test failed")
            else:
                raise status.bad_request(f"Unexpected kind: {kind}")
        except PatchFailed as e:
            raise JsonPatchFailed(str(e)) from e
    if not isinstance(out, dict):
        raise JsonPatchFailed("patched document is not an object")
    return out


class JsonPatchFailed(Exception):
    """Raised by apply_json_patch; the handler maps it to the generic 422."""


def _equal(a: Any, b: Any) -> bool:
    # JSON numbers compare by value (1 == 1.0), booleans are not numbers.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    return bool(a == b)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Merge with per-field list strategies; see the module docstring."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            name = k.split("/", 1)[1]
            if isinstance(out.get(name), list) and isinstance(v, list):
                out[name] = [x for x in out[name] if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and k in MERGE_KEYS:
            out[k] = _merge_keyed_list(out.get(k), v, MERGE_KEYS[k])
        elif isinstance(v, list) and k in MERGE_PRIMITIVE_LISTS:
            existing = list(out.get(k) or [])
            out[k] = existing + [x for x in v if x not in existing]
        elif isinstance(v, dict):
            merged = strategic_merge_patch(out.get(k), v, k)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_keyed_list(target: Any, patch: list[Any], key: str) -> list[Any]:
    if not isinstance(target, list):
        target = []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    out = [copy.deepcopy(t) for t in target]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        idx = next(
            (i for i, t in enumerate(out) if isinstance(t, dict) and t.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out
