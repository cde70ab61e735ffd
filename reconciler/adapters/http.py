"""HTTP header parsing that more than one adapter needs: today, ``Retry-After``.

The forges (through their REST transport) and the Kubernetes API both say "come back later"
with a ``Retry-After`` header. One parser keeps the two adapters honouring it alike:
delta-seconds or an HTTP-date (RFC 9110, section 10.2.3), never negative, never longer than
the caller's cap, and ``None`` for anything unreadable so the caller falls back to its own
backoff.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math


def retry_after(value: str | None, cap: float, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, clamped to ``[0, cap]``.

    ``value`` is delta-seconds (``"120"``) or an HTTP-date (``"Wed, 21 Oct 2026 07:28:00
    GMT"``), measured from ``now`` (timezone-aware; default: the current time). A missing or
    unreadable value is ``None``; a date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)
