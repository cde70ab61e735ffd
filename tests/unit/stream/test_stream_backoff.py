"""Pure parts of the stream client: the reconnect schedule and the CRD allow-list.

Cases:
- backoff: x1.6 per failure up to the cap, jitter within +-20 % at both extremes of the
  random source, reset back to the start, invalid settings refused;
- CRD checks: an allowed CRD passes; another group, a wrong apiVersion or kind, a missing
  group and a name that is not `<plural>.<group>` are each refused naming the field.
"""

from __future__ import annotations

import pytest

from reconciler.domain import errors
from reconciler.stream import client


@pytest.mark.parametrize(("rand", "expected"), [
    (0.5, [1.0, 1.6, 2.56, 4.096, 5.0, 5.0]),  # no jitter: the bare schedule, capped at 5
    (0.0, [0.8, 1.28, 2.048, 3.2768, 4.0, 4.0]),  # -20 %
    (1.0, [1.2, 1.92, 3.072, 4.9152, 6.0, 6.0]),  # +20 %
])
def test_backoff_schedule(rand: float, expected: list[float]) -> None:
    b = client.Backoff(1.0, 5.0, 1.6, 0.2, rand=lambda: rand)
    assert [round(b.next(), 6) for _ in expected] == expected
    b.reset()
    assert round(b.next(), 6) == expected[0]


@pytest.mark.parametrize(("initial", "maximum", "mult", "jitter"), [
    (0.0, 1.0, 1.6, 0.2), (2.0, 1.0, 1.6, 0.2), (1.0, 2.0, 0.5, 0.2), (1.0, 2.0, 1.6, 1.0),
])
def test_backoff_refuses_bad_settings(initial: float, maximum: float, mult: float,
                                      jitter: float) -> None:
    with pytest.raises(errors.ConfigError):
        client.Backoff(initial, maximum, mult, jitter)


def _crd(**over: object) -> dict[str, object]:
    crd: dict[str, object] = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.dakr.devzero.io"},
        "spec": {"group": "dakr.devzero.io", "names": {"plural": "widgets"}},
    }
    crd.update(over)
    return crd


@pytest.mark.parametrize(("crd", "fields"), [
    (_crd(), []),
    (_crd(spec={"group": "evil.example.com", "names": {"plural": "widgets"}},
          metadata={"name": "widgets.evil.example.com"}), ["spec.group"]),
    (_crd(apiVersion="apiextensions.k8s.io/v1beta1"), ["apiVersion"]),
    (_crd(kind="ConfigMap"), ["kind"]),
    (_crd(spec={"names": {"plural": "widgets"}}), ["spec.group"]),
    (_crd(metadata={"name": "gadgets.dakr.devzero.io"}), ["metadata.name"]),
    ([], ["(document)"]),
])
def test_crd_allow_list(crd: object, fields: list[str]) -> None:
    problems = client.check_crd(crd, ("dakr.devzero.io",))
    assert [p.field for p in problems] == fields
