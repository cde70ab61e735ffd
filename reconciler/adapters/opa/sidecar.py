"""The sidecar policy engine: an OPA server asked through its REST Data API.

For a cluster that runs OPA next to the operator (the Helm chart's sidecar) and manages
policies there: decisions go over a keep-alive HTTP session, and the platform's policy
data is pushed with ``put_data``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from reconciler.adapters.opa import engine as opa
from reconciler.domain import decision, errors

# How long a policy revision read from OPA is reused. OPA --watch reloads files within
# about a second, so a decision that close to a reload may carry the previous revision.
REVISION_TTL = 1.0

log = logging.getLogger(__name__)


class SidecarEngine:
    """An OPA server (the sidecar) asked through its REST Data API.

    Every failure mode of the network or of OPA (timeout, refused connection, non-200,
    undefined document, a result of the wrong shape) becomes a ``PolicyUnavailable`` deny.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        token: str | None = None,
        *,
        path: str = opa.DECISION_PATH,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.path = path.strip("/")
        self.session = session or requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self._clock = clock
        self._revision = ""
        self._revision_at: float | None = None

    def revision(self) -> str:
        """The loaded set's revision (``engine.revision``), from OPA's own lists of its
        modules (``GET /v1/policies``) and of ``data.config``; empty when OPA will not say
        (an authorization policy may refuse those reads): it labels decisions, it never
        gates them."""
        now = self._clock()
        if self._revision_at is not None and now - self._revision_at < REVISION_TTL:
            return self._revision
        rev = ""
        try:
            pols = self.session.get(f"{self.url}/v1/policies", timeout=self.timeout)
            conf = self.session.get(f"{self.url}/v1/data/{opa.CONFIG_PATH}",
                                    timeout=self.timeout)
            if pols.status_code == 200 and conf.status_code == 200:
                sources = [m["raw"] for m in pols.json()["result"]
                           if not str(m.get("id", "")).endswith("_test.rego")]
                rev = opa.revision(sources, conf.json().get("result"))
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            log.debug("policy revision unknown: %s", e)
        self._revision, self._revision_at = rev, now
        return rev

    def decide(self, input: Mapping[str, Any]) -> decision.Decision:
        return self._decide(input, self.revision())

    def _decide(self, input: Mapping[str, Any], revision: str) -> decision.Decision:
        endpoint = f"{self.url}/v1/data/{self.path}"
        try:
            body = json.dumps({"input": input})
            resp = self.session.post(endpoint, data=body, timeout=self.timeout)
        except requests.Timeout:
            return decision.unavailable(f"OPA at {self.url} timed out after {self.timeout}s")
        except requests.ConnectionError as e:
            return decision.unavailable(f"OPA at {self.url} unreachable: {e}")
        except (requests.RequestException, TypeError, ValueError) as e:
            return decision.unavailable(f"OPA request failed: {type(e).__name__}: {e}")
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if resp.status_code != 200:
            msg = doc.get("message", "") if isinstance(doc, dict) else resp.text[:200]
            return decision.unavailable(f"OPA answered {resp.status_code}: {msg}")
        if not isinstance(doc, dict):
            return decision.unavailable("OPA answered a body that is not a JSON object")
        decision_id = doc.get("decision_id")
        did = decision_id if isinstance(decision_id, str) else ""
        if "result" not in doc:
            # Keep OPA's decision id even on a deny: the decision log explains it.
            undefined = decision.unavailable(f"data.{self.path.replace('/', '.')} is undefined")
            return dataclasses.replace(undefined, decision_id=did)
        return decision.from_document(doc["result"], decision_id=did, policy_revision=revision)

    def put_data(self, path: str, value: Any) -> None:
        """Create or replace the document at ``data.<path>`` (OPA's ``PUT /v1/data``).
        Raises TemporaryError when OPA is unreachable, PermanentError when it refuses."""
        endpoint = f"{self.url}/v1/data/{path.strip('/')}"
        try:
            resp = self.session.put(endpoint, data=json.dumps(value), timeout=self.timeout)
        except requests.RequestException as e:
            raise errors.TemporaryError(f"OPA at {self.url} unreachable: {e}") from e
        if resp.status_code not in (200, 204):
            try:
                msg = str(resp.json().get("message", ""))
            except ValueError:
                msg = resp.text[:200]
            err = errors.TemporaryError if resp.status_code >= 500 else errors.PermanentError
            raise err(f"OPA refused PUT /v1/data/{path}: {resp.status_code} {msg}")

    def decide_many(self, inputs: Sequence[Mapping[str, Any]]) -> list[decision.Decision]:
        # One request each: a user's sidecar policy need not define a batch entry point,
        # and the keep-alive session keeps the per-request cost low.
        rev = self.revision() if inputs else ""
        return [self._decide(i, rev) for i in inputs]

    def healthy(self) -> bool:
        try:
            resp = self.session.get(f"{self.url}/health", timeout=self.timeout)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def close(self) -> None:
        self.session.close()
