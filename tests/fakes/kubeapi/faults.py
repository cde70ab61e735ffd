"""Fault injection and request accounting, driven from tests.

Faults let a test reproduce what a real cluster does under stress (409 races, 429
throttling, 5xx, slow answers, requests that time out, watches that drop) on exactly the
request it cares about; counters let benchmarks and tests assert how many calls of each
kind the product made (e.g. "one GET and one PATCH per workload").
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any


@dataclasses.dataclass
class RequestInfo:
    """What the server understood a request to be (verb in RBAC terms)."""

    method: str
    path: str
    verb: str  # get | list | watch | create | update | patch | delete | deletecollection
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    content_type: str = ""
    user: str = ""
    code: int = 0
    body: Any = None


@dataclasses.dataclass
class Rule:
    kind: str  # "status" | "timeout" | "delay" | "reset"
    remaining: int | None  # None: until cleared
    code: int = 500
    seconds: float = 0.0
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    message: str | None = None
    retry_after: int | None = None
    after_apply: bool = False  # timeout: perform the write, then never answer
    hits: int = 0

    def matches(self, info: RequestInfo) -> bool:
        return all([
            self.verb is None or self.verb == info.verb,
            self.resource is None or self.resource == info.resource,
            self.subresource is None or self.subresource == info.subresource,
            self.namespace is None or self.namespace == info.namespace,
            self.name is None or self.name == info.name,
        ])


class Faults:
    """Rules consulted in order for every resource request; the first match fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self.watch_generation = 0  # bumped by drop_watches(); open watches end when it moves
        self.abrupt_drop = False

    def fail_next(
        self,
        n: int = 1,
        status: int | str = 500,
        verb: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        seconds: float = 30.0,
        after_apply: bool = False,
    ) -> Rule:
        """Fail the next `n` matching requests.

        `status` is an HTTP code (409, 429, 500, 503, 504, ...) answered with the real
        server's Status body, or "timeout": hold the request for `seconds` (longer than the
        client's timeout) and close the connection without an answer; with
        `after_apply=True` the write is performed first, as when a real request times out
        after the server committed it. "reset" closes the connection at once.
        """
        if status == "timeout":
            rule = Rule("timeout", n, seconds=seconds, after_apply=after_apply)
        elif status == "reset":
            rule = Rule("reset", n)
        else:
            rule = Rule("status", n, code=int(status), message=message, retry_after=retry_after)
        rule.verb, rule.resource, rule.subresource = verb, resource, subresource
        rule.namespace, rule.name = namespace, name
        with self._lock:
            self._rules.append(rule)
        return rule

    def timeout_next(self, n: int = 1, seconds: float = 30.0, **match: Any) -> Rule:
        return self.fail_next(n, status="timeout", seconds=seconds, **match)

    def delay(self, seconds: float, n: int | None = None, verb: str | None = None,
              resource: str | None = None, subresource: str | None = None) -> Rule:
        """Answer matching requests `seconds` late (then normally); n=None: until clear()."""
        rule = Rule("delay", n, seconds=seconds, verb=verb, resource=resource,
                    subresource=subresource)
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop_watches(self, abrupt: bool = False) -> None:
        """End every open watch stream (cleanly, or by resetting the connection)."""
        with self._lock:
            self.abrupt_drop = abrupt
            self.watch_generation += 1

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, info: RequestInfo) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(info) and (rule.remaining is None or rule.remaining > 0):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    rule.hits += 1
                    return rule
            return None

    @property
    def pending(self) -> int:
        """How many injected failures have not fired yet (None-count rules excluded)."""
        with self._lock:
            return sum(r.remaining or 0 for r in self._rules)


class Requests:
    """Counters by (verb, resource, subresource), plus the full log of requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.log: list[RequestInfo] = []

    def record(self, info: RequestInfo) -> None:
        with self._lock:
            self._counts[(info.verb, info.resource, info.subresource)] += 1
            self.log.append(info)

    def count(self, verb: str | None = None, resource: str | None = None,
              subresource: str | None = None) -> int:
        """Sum of matching requests; None matches anything, "" only the main resource."""
        with self._lock:
            return sum(
                n for (v, r, s), n in self._counts.items()
                if (verb is None or v == verb) and (resource is None or r == resource)
                and (subresource is None or s == subresource)
            )

    def __getitem__(self, key: tuple[str, str] | tuple[str, str, str]) -> int:
        verb, resource, *rest = key
        return self.count(verb, resource, rest[0] if rest else "")

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.log.clear()

    def writes(self) -> list[RequestInfo]:
        with self._lock:
            return [i for i in self.log if i.verb in ("create", "update", "patch", "delete",
                                                      "deletecollection")]
