"""The one ``Retry-After`` parser (``reconciler.adapters.http.retry_after``) that the forge
transport and the Kubernetes adapter share.

Cases (a table, with a fixed ``now``): delta-seconds, whole and fractional, with spaces
around; an HTTP-date in the future (seconds until then), in the past (0) and without a
zone (read as UTC); the cap bounds both forms; a negative delta is 0; no header, an empty
one, garbage, ``nan`` and a malformed date are ``None``. Also: without ``now`` a date is
measured from the current time, and the Kubernetes adapter reads the header of an
``ApiException`` through it (uncapped, delta-seconds or date).
"""

from __future__ import annotations

import datetime as dt
import email.utils

import kubernetes
import pytest

from reconciler.adapters import http, kube

NOW = dt.datetime(2026, 11, 24, 21, 0, 0, tzinfo=dt.UTC)


def _date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(NOW + dt.timedelta(seconds=seconds_from_now),
                                       usegmt=True)


@pytest.mark.parametrize(("value", "cap", "expected"), [
    ("3", 30.0, 3.0),
    ("0", 30.0, 0.0),
    ("1.5", 30.0, 1.5),
    ("  7 ", 30.0, 7.0),
    ("120", 30.0, 30.0),                        # capped
    ("-5", 30.0, 0.0),                          # negative: no wait, never a negative sleep
    (_date(10), 30.0, 10.0),                    # HTTP-date in the future
    (_date(3600), 30.0, 30.0),                  # ... capped
    (_date(-60), 30.0, 0.0),                    # HTTP-date in the past
    ("Tue, 24 Nov 2026 21:00:20", 30.0, 20.0),  # no zone: UTC
    (None, 30.0, None),
    ("", 30.0, None),
    ("soon", 30.0, None),
    ("nan", 30.0, None),
    ("Tue, 99 Nov 2026 25:61:00 GMT", 30.0, None),
    ("120", float("inf"), 120.0),               # uncapped (the Kubernetes adapter)
])
def test_retry_after(value: str | None, cap: float, expected: float | None) -> None:
    assert http.retry_after(value, cap, now=NOW) == expected


def test_date_is_measured_from_the_current_time_by_default() -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=100)
    wait = http.retry_after(email.utils.format_datetime(later, usegmt=True), 1000.0)
    assert wait is not None and 95.0 <= wait <= 100.0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "3"}, 3.0),
    ({"Retry-After": "600"}, 600.0),
    ({"Retry-After": "-1"}, 0.0),
    ({"Retry-After": "later"}, None),
    ({}, None),
    (None, None),
])
def test_kube_reads_the_header_of_an_api_exception(headers: dict[str, str] | None,
                                                   expected: float | None) -> None:
    e = kubernetes.client.ApiException(status=429, reason="TooManyRequests")
    e.headers = headers
    err = kube.translate(e, "get web")
    assert isinstance(err, kube.Unavailable) and err.retry_after == expected
