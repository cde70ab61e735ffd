"""Kubernetes `Status` error bodies, shaped like the real API server's.

Clients (and the product) branch on `reason`, `code` and `details`, and people read
`message` in logs, so each constructor mirrors the wording of
k8s.io/apimachinery/pkg/api/errors rather than inventing its own.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """An error the handler turns into a `Status` response with the given HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.details = details
        self.headers = headers or {}

    def body(self) -> JSON:
        out: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def qualified(resource: str, group: str) -> str:
    """`deployments.apps`, or just `pods` for the core group (GroupResource.String())."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> JSON:
    d: JSON = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    return d


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(resource, group)} "{name}" not found',
        "NotFound",
        _details(name, group, resource),
    )


def namespace_not_found(name: str) -> ApiError:
    return not_found("namespaces", "", name)


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(resource, group)} "{name}" already exists',
        "AlreadyExists",
        _details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        "Conflict",
        _details(name, group, resource),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def stale(resource: str, group: str, name: str) -> ApiError:
    return conflict(resource, group, name, MODIFIED)


def invalid(kind: str, group: str, name: str, causes: list[JSON]) -> ApiError:
    """422 Invalid: `Deployment.apps "x" is invalid: spec.replicas: Invalid value: ...`."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details = _details(name, group, kind)
    details["causes"] = causes
    return ApiError(422, f'{qualified_kind} "{name}" is invalid: {joined}', "Invalid", details)


def generic(code: int) -> ApiError:
    """NewGenericServerResponse without a resource: what a failed JSON Patch `test` returns."""
    messages = {
        422: ("Invalid", "the server rejected our request due to an error in our request"),
        409: ("Conflict", "the server reported a conflict"),
    }
    reason, message = messages[code]
    return ApiError(code, message, reason, {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def method_not_allowed(message: str | None = None) -> ApiError:
    return ApiError(
        405,
        message or "the server does not allow this method on the requested resource",
        "MethodNotAllowed",
        {},
    )


def unsupported_media_type(content_type: str) -> ApiError:
    del content_type
    return ApiError(
        415,
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        "UnsupportedMediaType", {})


def forbidden(resource: str, group: str, name: str, why: str) -> ApiError:
    what = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    return ApiError(
        403, f"{what} is forbidden: {why}", "Forbidden", _details(name, group, resource))


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def gone(message: str) -> ApiError:
    """410 Expired: a watch or list from a resourceVersion the server no longer holds."""
    return ApiError(410, message, "Expired")


def internal(message: str) -> ApiError:
    return ApiError(
        500, f"Internal error occurred: {message}", "InternalError",
        {"causes": [{"message": message}]}
    )


def too_many_requests(
    message: str, retry_after: int = 0, causes: list[JSON] | None = None
) -> ApiError:
    details: JSON = {}
    if causes:
        details["causes"] = causes
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return ApiError(429, message, "TooManyRequests", details, headers)


def timeout(message: str) -> ApiError:
    return ApiError(504, f"Timeout: {message}", "Timeout", {})


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, message, "ServiceUnavailable", {})


def success(details: JSON | None = None) -> JSON:
    out: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        out["details"] = details
    return out


def field_cause(reason: str, field: str, message: str) -> JSON:
    return {"reason": reason, "message": message, "field": field}


def fmt_value(value: Any) -> str:
    """How field.Invalid prints a bad value: strings quoted (%q), numbers bare."""
    import json

    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def required(field: str) -> JSON:
    return field_cause("FieldValueRequired", field, "Required value")


def invalid_value(field: str, value: Any, detail: str) -> JSON:
    return field_cause("FieldValueInvalid", field, f"Invalid value: {fmt_value(value)}: {detail}")


def not_supported(field: str, value: Any, allowed: list[Any]) -> JSON:
    allowed_s = ", ".join(fmt_value(a) for a in allowed)
    return field_cause(
        "FieldValueNotSupported",
        field,
        f"Unsupported value: {fmt_value(value)}: supported values: {allowed_s}",
    )


def forbidden_field(field: str, detail: str) -> JSON:
    return field_cause("FieldValueForbidden", field, f"Forbidden: {detail}")


def too_long(field: str, limit: int) -> JSON:
    return field_cause("FieldValueTooLong", field, f"Too long: may not be more than {limit} bytes")


def too_many(field: str, actual: int, limit: int) -> JSON:
    return field_cause(
        "FieldValueTooMany", field, f"Too many: {actual}: must have at most {limit} items"
    )
