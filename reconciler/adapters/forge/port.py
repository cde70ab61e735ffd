"""The forge port: what the writer needs from a forge, whichever forge it is.

The writer pushes a branch and then needs exactly four things from a forge: open the pull
request for that branch or update the one already open (a rerun must never open a second
one), read a pull request back to follow its life (merged -> Applied, closed -> Rejected),
find the open one for a branch, and comment. Everything else a forge offers stays out.

This module is that contract (``PullRequest``, the ``Forge`` protocol, the states, the
status reason and ``follow``) plus the forge-independent helpers the adapters share. The
adapters live beside it, one module per forge: ``github``, ``gitlab`` and ``gitea`` over the
one REST ``transport``, and ``local`` (no server: the branch in the remote, the review in
files). ``reconciler.wiring`` picks one from the settings.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.domain import clock, model

OPEN, MERGED, CLOSED = "open", "merged", "closed"
# Status reason for a pull request closed without merge (the recommendation is Rejected and
# not proposed again until a newer one arrives).
REASON_CLOSED = "PullRequestClosed"


@dataclass(frozen=True)
class PullRequest:
    """What the reconciler needs to know about one pull (or merge) request."""

    number: int          # GitHub/Gitea number, GitLab iid, local sequence number
    url: str             # where a human reviews it (html_url / web_url / file URI)
    branch: str          # head (source) branch
    base: str            # base (target) branch
    state: str           # "open" | "merged" | "closed"
    title: str = ""
    merged_at: str = ""  # RFC 3339 UTC ("...Z") when merged, else ""
    head_sha: str = ""


class Forge(Protocol):
    def open_or_update(self, *, branch: str, base: str, title: str, body: str,
                       labels: Sequence[str] = ()) -> PullRequest:
        """Update the open pull request whose head is ``branch``, else create one."""
        ...

    def get(self, number: int) -> PullRequest: ...

    def find_open(self, branch: str) -> PullRequest | None: ...

    def comment(self, number: int, body: str) -> None: ...


def follow(forge: Forge, pr_number: int) -> tuple[str, str]:
    """(phase, appliedAt) for a pull request: merged -> Applied at the merge time, closed
    without merge -> Rejected (reason ``REASON_CLOSED``), open -> still Applying."""
    pr = forge.get(pr_number)
    if pr.state == MERGED:
        return model.APPLIED, pr.merged_at
    if pr.state == CLOSED:
        return model.REJECTED, ""
    return model.APPLYING, ""


def repo_from_remote(remote_url: str) -> str:
    """``owner/name`` (GitLab: ``group/sub/name``) from a clone URL, so ``--repo`` is enough:
    ``https://host/acme/app.git``, ``git@host:acme/app.git``, ``ssh://git@host/acme/app``."""
    url = remote_url.strip()
    m = re.match(r"^[\w.-]+@[\w.-]+:(?!//)(?P<path>.+)$", url)
    if m is not None:
        path = m["path"]
    elif "://" in url and not url.startswith("file://"):
        path = urllib.parse.urlparse(url).path
    else:
        return ""
    path = path.strip("/")
    path = path[:-4] if path.endswith(".git") else path
    return path if "/" in path else ""


def utc(ts: object) -> str:
    """Normalise a forge timestamp (GitHub ``Z``, GitLab milliseconds, Gitea offsets) to
    ``YYYY-MM-DDTHH:MM:SSZ`` so appliedAt looks the same whatever the forge."""
    if not ts or not isinstance(ts, str):
        return ""
    try:
        return clock.rfc3339(clock.parse_rfc3339(ts))
    except ValueError:
        return ts
