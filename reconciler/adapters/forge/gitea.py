"""Gitea (and Forgejo) pull requests (REST v1): GitHub's pulls API with two differences.

The pulls API itself is ``github.PullsForge``; what is Gitea's own is here: its token
header, the ``/api/v1`` root, 409 for "already exists", and a pull-request list without a
head filter, which has to be paged through.
"""

from __future__ import annotations

from typing import Any

import requests

from reconciler.adapters.forge import github, transport


class GiteaForge(github.PullsForge):
    """Gitea (and Forgejo) REST v1."""

    kind = "gitea"
    _exists_status = 409
    _PAGE = 50

    def __init__(self, api_url: str, repo: str, token: str | None,
                 session: requests.Session | None = None, timeout: float = 10.0, *,
                 retries: int = 4, backoff: float = 0.5) -> None:
        self.owner, self.name = github.split_repo(repo, "gitea")
        base = api_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        auth = {"Authorization": f"token {token}"} if token else {}
        super().__init__(transport.build("gitea", base, auth, token, session, timeout,
                                         retries, backoff, {"Accept": "application/json"}))
        self._owns_session = session is None
        self._prefix = f"/repos/{github.quote(self.owner)}/{github.quote(self.name)}"

    def _find_open_raw(self, branch: str, base: str | None = None) -> dict[str, Any] | None:
        # Gitea's list has no head filter: page through the open ones.
        page = 1
        while True:
            params: dict[str, str | int] = {"state": "open", "page": page, "limit": self._PAGE}
            if base:
                params["base_branch"] = base
            items = self._http.call("GET", f"{self._prefix}/pulls", params=params)
            found = self._with_head(items, branch)
            if found is not None:
                return found
            if not items or len(items) < self._PAGE or page >= 100:
                return None
            page += 1
