"""GitLab merge requests (REST v4), the one REST forge whose API is not GitHub's.

GitLab names things differently (merge requests, ``iid``, source and target branches,
``opened``/``locked`` states, labels as a comma list, comments as notes), so it has its own
adapter over the shared ``transport``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import requests

from reconciler.adapters.forge import port, transport
from reconciler.domain import errors


class GitLabForge(transport.RestForgeBase):
    """GitLab REST v4 merge requests; ``project`` is a numeric id or ``group/name``."""

    kind = "gitlab"
    _STATES: ClassVar[Mapping[str, str]] = {
        "opened": port.OPEN, "locked": port.OPEN, "merged": port.MERGED, "closed": port.CLOSED}

    def __init__(self, api_url: str, project: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        project = str(project).strip("/")
        if not project:
            raise errors.ConfigError("gitlab: project (id or group/name) is required")
        base = api_url.rstrip("/")
        if not base.endswith("/api/v4"):
            base += "/api/v4"
        auth = {"PRIVATE-TOKEN": token} if token else {}
        super().__init__(transport.build("gitlab", base, auth, token, session, timeout,
                                         retries, backoff, {"Accept": "application/json"}))
        self._owns_session = session is None
        # A path goes URL-encoded as one segment: group%2Fsubgroup%2Fname.
        self._prefix = f"/projects/{urllib.parse.quote(project, safe='')}/merge_requests"

    @classmethod
    def _pr(cls, d: Mapping[str, Any]) -> port.PullRequest:
        return port.PullRequest(number=int(d["iid"]), url=str(d.get("web_url") or ""),
                                branch=str(d.get("source_branch", "")),
                                base=str(d.get("target_branch", "")),
                                state=cls._STATES.get(str(d.get("state")), port.CLOSED),
                                title=str(d.get("title") or ""),
                                merged_at=port.utc(d.get("merged_at")),
                                head_sha=str(d.get("sha") or ""))

    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> port.PullRequest:
        create: dict[str, Any] = {"source_branch": branch, "target_branch": base,
                                  "title": title, "description": body}
        if labels:
            create["labels"] = ",".join(labels)
        try:
            data = self._http.call("POST", self._prefix, body=create,
                                   exists=lambda s, m: s == 409 and "already exists" in m)
        except transport.Exists:
            data = self._find_open_raw(branch, base)
            if data is None:
                raise errors.ConflictError(
                    f"gitlab: a merge request for {branch} exists but is not listed yet") from None
            have = set(data.get("labels") or [])
            update: dict[str, Any] = {}
            if data.get("title") != title:
                update["title"] = title
            if (data.get("description") or "") != body:
                update["description"] = body
            if set(labels) - have:
                # add_labels keeps labels a reviewer put on the merge request.
                update["add_labels"] = ",".join(labels)
            if update:
                data = self._http.call("PUT", f"{self._prefix}/{int(data['iid'])}", body=update)
        return self._pr(data)

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        params: dict[str, str | int] = {"source_branch": branch, "state": "opened",
                                        "per_page": 100}
        if base:
            params["target_branch"] = base
        items = self._http.call("GET", self._prefix, params=params)
        for d in items or []:
            if d.get("source_branch") == branch:
                return dict(d)
        return None

    def get(self, number: int) -> port.PullRequest:
        return self._pr(self._http.call("GET", f"{self._prefix}/{int(number)}"))

    def comment(self, number: int, body: str) -> None:
        self._http.call("POST", f"{self._prefix}/{int(number)}/notes", body={"body": body})
