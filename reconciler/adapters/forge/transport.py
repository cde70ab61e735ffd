"""The one HTTP transport the three REST forges (GitHub, GitLab, Gitea) share.

Each REST adapter sends its requests through one ``Transport``, which is also the single
place where HTTP outcomes become ``reconciler.domain.errors`` types: 401/403 ->
PermanentError (never echoing the token), 404 -> NotFoundError, 429/5xx/connection
errors/timeouts -> TemporaryError after a bounded number of retries with exponential
backoff, full jitter and ``Retry-After``; "already exists" (GitHub 422, GitLab/Gitea 409) is
not an error at all but ``Exists``, the signal to reuse the open pull request. Creating is
tried first and an existing pull request is found through that answer, so one code path
covers both a fresh branch and a rerun, and a create that raced with another writer ends in
the same reuse.

The token only ever lives in a per-request header: it is not set on a caller's session, not
kept in ``repr``, and every message that leaves this module is scrubbed of it.

``RestForgeBase`` is what each REST forge builds on: it owns the transport (and the session
when the forge made it), and implements ``find_open`` in terms of the forge's own listing.
The forges' APIs themselves stay in their modules.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from reconciler.adapters import git as gitadapter
from reconciler.adapters import http
from reconciler.adapters.forge import port
from reconciler.domain import errors

log = logging.getLogger(__name__)


def error_message(body: Any) -> str:
    """The human part of a forge error body (GitHub ``message`` + ``errors[].message``,
    GitLab ``message`` as a string, list or field map, Gitea ``message``)."""
    if not isinstance(body, dict):
        return str(body)[:300] if body else ""
    parts: list[str] = []
    msg = body.get("message", body.get("error", ""))
    if isinstance(msg, list):
        parts.extend(str(m) for m in msg)
    elif isinstance(msg, dict):
        parts.extend(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in msg.items())
    elif msg:
        parts.append(str(msg))
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            text = err.get("message") or " ".join(
                str(err[k]) for k in ("resource", "field", "code") if err.get(k))
            if text:
                parts.append(str(text))
        elif err:
            parts.append(str(err))
    return "; ".join(parts)


class Exists(Exception):
    """The forge said a pull request for this branch is already open (reuse it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Transport:
    """One forge's HTTP client: auth headers, retries, and the only error translation."""

    name: str
    base: str
    auth: Mapping[str, str] = field(repr=False)
    token: str | None = field(repr=False)
    session: requests.Session = field(repr=False)
    timeout: float
    retries: int = 4
    backoff: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def scrub(self, text: str) -> str:
        text = gitadapter.redact(text)
        if self.token:
            text = text.replace(self.token, "***")
        return text

    def call(self, method: str, path: str, *, body: Any = None,
             params: Mapping[str, str | int] | None = None,
             exists: Callable[[int, str], bool] | None = None) -> Any:
        """Send one request (retrying temporary failures) and return its decoded JSON.

        ``exists`` recognises the forge's "already exists" answer, raised as ``Exists``.
        """
        what = f"{self.name} {method} {path}"
        headers = {**self.extra_headers, **self.auth}
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                resp = self.session.request(method, self.base + path, json=body, params=params,
                                            headers=headers, timeout=self.timeout)
            except requests.RequestException as e:
                failure: errors.ReconcilerError = errors.TemporaryError(
                    f"{what}: {type(e).__name__}: {self.scrub(str(e))}")
                cause: BaseException = e
            else:
                with resp:
                    try:
                        payload = resp.json() if resp.content else None
                    except ValueError:
                        payload = resp.text
                    if resp.status_code < 300:
                        return payload
                    msg = self.scrub(error_message(payload))
                    if exists is not None and exists(resp.status_code, msg):
                        raise Exists(msg)
                    failure = self._translate(resp, msg, what)
                    wait = http.retry_after(resp.headers.get("Retry-After"), self.max_wait)
                    cause = requests.HTTPError(f"{resp.status_code} {what}")
            if not isinstance(failure, errors.TemporaryError) or attempt >= self.retries:
                if isinstance(failure, errors.TemporaryError):
                    failure = errors.TemporaryError(
                        f"{failure} (gave up after {attempt} attempts)")
                raise failure from cause
            if wait is None:
                # Full jitter: concurrent writers hitting the same outage spread out.
                wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
            log.warning("%s failed (%s); retry %d/%d in %.2fs", what, failure, attempt,
                        self.retries - 1, wait)
            self.sleep(wait)

    def _translate(self, resp: requests.Response, msg: str, what: str) -> errors.ReconcilerError:
        status = resp.status_code
        detail = f"{what}: HTTP {status}" + (f": {msg}" if msg else "")
        if status == 429 or status >= 500:
            return errors.TemporaryError(detail)
        if status == 403 and (resp.headers.get("Retry-After")
                              or resp.headers.get("X-RateLimit-Remaining") == "0"):
            return errors.TemporaryError(f"{detail} (rate limited)")  # GitHub's secondary limit
        if status in (401, 403):
            hint = "no token configured" if not self.token else "check the token and its scopes"
            return errors.PermanentError(
                f"{self.name}: authentication failed ({hint}): {detail}")
        if status == 404:
            return errors.NotFoundError(detail)
        return errors.PermanentError(detail)


def _session(session: requests.Session | None) -> requests.Session:
    return session if session is not None else requests.Session()


class RestForgeBase:
    """What the three REST forges share: construction, repr, close, and ``find_open`` over
    each forge's own listing (``_find_open_raw``) and reading (``_pr``) of pull requests."""

    kind = ""

    def __init__(self, transport: Transport) -> None:
        self._http = transport
        self._owns_session = False

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self._http.base!r})"

    def _pr(self, d: Mapping[str, Any]) -> port.PullRequest:
        raise NotImplementedError

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        raise NotImplementedError

    def find_open(self, branch: str) -> port.PullRequest | None:
        d = self._find_open_raw(branch)
        return self._pr(d) if d is not None else None

    def close(self) -> None:
        if self._owns_session:
            self._http.session.close()

    def __enter__(self) -> RestForgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(name: str, base: str, auth: Mapping[str, str], token: str | None,
          session: requests.Session | None, timeout: float, retries: int,
          backoff: float, extra: Mapping[str, str] | None = None) -> Transport:
    """A forge's transport on ``session`` (a new one when None; the forge then owns it)."""
    return Transport(name=name, base=base.rstrip("/"), auth=auth, token=token,
                     session=_session(session), timeout=timeout, retries=max(1, retries),
                     backoff=backoff, extra_headers=extra or {})
