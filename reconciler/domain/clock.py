"""The one way the reconciler writes and reads a time: UTC, RFC 3339, as the Kubernetes API
does.

Statuses, conditions, Events, Leases, audit lines and stream messages all carry times;
written one way they compare as strings (``appliedAt`` ordering in cooldown rules relies
on it) and read the same in every log.
"""

from __future__ import annotations

import datetime as dt


def rfc3339(when: dt.datetime | float | None = None, *, micro: bool = False) -> str:
    """A UTC timestamp as the Kubernetes API writes it: ``2026-01-02T03:04:05Z``, or with
    ``micro`` the MicroTime form (``.000000Z``) that Leases and Events use.

    ``when``: a datetime (naive ones are taken as UTC), a Unix time, or None for now.
    """
    if when is None:
        t = dt.datetime.now(dt.UTC)
    elif isinstance(when, dt.datetime):
        t = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    else:
        t = dt.datetime.fromtimestamp(when, dt.UTC)
    t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    """The instant an RFC 3339 / ISO 8601 timestamp names (UTC when it names no zone).
    Raises ValueError for anything else."""
    parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
