"""Structural-schema handling for custom resources: defaulting, pruning, validation.

Mirrors apiextensions-apiserver: unknown fields are pruned (not rejected) unless
`x-kubernetes-preserve-unknown-fields`, `default` fills absent properties, and each
violation becomes a `field.Error` with the wording kube-openapi produces, so a 422 from here
reads like the one a real cluster returns for the same object.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from tests.fakes.kubeapi import cel, status

JSON = dict[str, Any]

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, wanted: str) -> bool:
    actual = _type_name(value)
    if wanted == "number":
        return actual in ("integer", "number")
    if wanted == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == wanted


def default_and_prune(obj: Any, schema: JSON, root: bool = False) -> Any:
    """Fill defaults and drop fields the schema does not know, like the real server."""
    if not isinstance(schema, dict):
        return obj
    if isinstance(obj, dict):
        props: JSON = schema.get("properties") or {}
        for name, sub in props.items():
            if name not in obj and isinstance(sub, dict) and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        additional = schema.get("additionalProperties")
        for key in list(obj.keys()):
            if root and key in _ROOT_KEEP:
                continue
            if key in props:
                obj[key] = default_and_prune(obj[key], props[key])
            elif isinstance(additional, dict):
                obj[key] = default_and_prune(obj[key], additional)
            elif not preserve and additional is not True and (
                props or schema.get("type") == "object"
            ):
                del obj[key]
        return obj
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [default_and_prune(x, schema["items"]) for x in obj]
    return obj


def validate(value: Any, schema: JSON, path: str = "") -> list[JSON]:
    """Return field causes (reason, message, field) for every violation under `path`."""
    causes: list[JSON] = []
    _validate(value, schema, path, causes)
    return causes


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _validate(value: Any, schema: JSON, path: str, causes: list[JSON]) -> None:
    if not isinstance(schema, dict):
        return
    where = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return
        wanted = schema.get("type")
        if wanted:
            causes.append(status.invalid_value(
                path, "null", f"{where} in body must be of type {wanted}: \"null\""))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if _type_name(value) not in ("integer", "string"):
            actual = _type_name(value)
            causes.append(status.invalid_value(
                path, actual, f'{where} in body must be of type integer,string: "{actual}"'))
            return
    elif "type" in schema and not _type_ok(value, schema["type"]):
        actual = _type_name(value)
        causes.append(status.invalid_value(
            path, actual, f'{where} in body must be of type {schema["type"]}: "{actual}"'))
        return
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key) or [] if isinstance(b, dict)]
        if branches and not schema.get("x-kubernetes-int-or-string"):
            fits = sum(1 for b in branches if not validate(value, b, path))
            if fits == 0 or (key == "oneOf" and fits > 1):
                detail = (f"{where} in body must match at least one schema in anyOf"
                          if key == "anyOf" else
                          f"{where} in body must validate one and only one schema (oneOf)")
                causes.append(status.invalid_value(path, value, detail))
    if "enum" in schema and value not in schema["enum"]:
        causes.append(status.not_supported(path, value, list(schema["enum"])))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _numeric(value, schema, path, where, causes)
    if isinstance(value, str):
        _string(value, schema, path, where, causes)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(status.too_many(path, len(value), schema["maxItems"]))
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(status.invalid_value(
                path, len(value),
                f"{where} in body should have at least {schema['minItems']} items"))
        _list_type(value, schema, path, causes)
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _validate(item, items, f"{path}[{i}]", causes)
    if isinstance(value, dict):
        props: JSON = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                causes.append(status.required(_child(path, name)))
        for key, sub in props.items():
            if key in value and not (path == "" and key == "metadata"):
                _validate(value[key], sub, _child(path, key), causes)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, sub_value in value.items():
                if key not in props:
                    _validate(sub_value, additional, _child(path, key), causes)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            causes.append(status.too_many(path, len(value), schema["maxProperties"]))
    for rule in schema.get("x-kubernetes-validations") or []:
        cause = _cel_rule(value, rule, path)
        if cause is not None:
            causes.append(cause)


_PROGRAMS: dict[str, Any] = {}


def _cel_rule(value: Any, rule: JSON, path: str) -> JSON | None:
    """One x-kubernetes-validations rule; transition rules (oldSelf) and unknown CEL skip."""
    text = str(rule.get("rule", ""))
    if "oldSelf" in text:
        return None
    try:
        if text not in _PROGRAMS:
            _PROGRAMS[text] = cel.compile_rule(text)
        ok = cel.evaluate(_PROGRAMS[text], {"self": value})
    except (cel.Unsupported, ValueError, ZeroDivisionError, re.error):
        return None
    if ok is True:
        return None
    message = rule.get("message") or f"failed rule: {text}"
    field = path + str(rule.get("fieldPath") or "")
    field = field.lstrip(".")
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueForbidden":
        return status.field_cause(reason, field, f"Forbidden: {message}")
    if reason == "FieldValueRequired":
        return status.field_cause(reason, field, f"Required value: {message}")
    if reason == "FieldValueDuplicate":
        return status.field_cause(reason, field, f"Duplicate value: {message}")
    return status.invalid_value(field, _type_name(value), message)


def _list_type(value: list[Any], schema: JSON, path: str, causes: list[JSON]) -> None:
    """x-kubernetes-list-type set/map: duplicates are 422 Duplicate value."""
    kind = schema.get("x-kubernetes-list-type")
    seen: list[Any] = []
    for i, item in enumerate(value):
        if kind == "map" and isinstance(item, dict):
            key: Any = {k: item.get(k) for k in schema.get("x-kubernetes-list-map-keys") or []}
        elif kind == "set":
            key = item
        else:
            return
        if key in seen:
            shown = json.dumps(key, separators=(",", ":"), sort_keys=True)
            causes.append(status.field_cause(
                "FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {shown}"))
        else:
            seen.append(key)


def _numeric(value: float, schema: JSON, path: str, where: str, causes: list[JSON]) -> None:
    if "minimum" in schema:
        lo = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= lo:
            causes.append(status.invalid_value(
                path, value, f"{where} in body should be greater than {status.fmt_value(lo)}"))
        elif value < lo:
            causes.append(status.invalid_value(
                path, value,
                f"{where} in body should be greater than or equal to {status.fmt_value(lo)}"))
    if "maximum" in schema:
        hi = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= hi:
            causes.append(status.invalid_value(
                path, value, f"{where} in body should be less than {status.fmt_value(hi)}"))
        elif value > hi:
            causes.append(status.invalid_value(
                path, value,
                f"{where} in body should be less than or equal to {status.fmt_value(hi)}"))
    if "multipleOf" in schema and schema["multipleOf"] and value % schema["multipleOf"] != 0:
        causes.append(status.invalid_value(
            path, value,
            f"{where} in body should be a multiple of {status.fmt_value(schema['multipleOf'])}"))


def _string(value: str, schema: JSON, path: str, where: str, causes: list[JSON]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(status.too_long(path, schema["maxLength"]))
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(status.invalid_value(
            path, value, f"{where} in body should be at least {schema['minLength']} chars long"))
    if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
        causes.append(status.invalid_value(
            path, value, f'{where} in body must be of type date-time: "{value}"'))
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        causes.append(status.invalid_value(
            path, value, f"{where} in body should match '{schema['pattern']}'"))
