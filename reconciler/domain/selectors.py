"""Kubernetes label selectors (``metav1.LabelSelector``), matched the way the API server does.

Policy decisions about disruption depend on which PodDisruptionBudgets select which pods, so
this must agree with Kubernetes exactly, not approximately (apimachinery
``metav1.LabelSelectorAsSelector`` and ``labels.Requirement.Matches``):

- ``matchLabels`` and ``matchExpressions`` are ANDed; a ``matchLabels`` entry is ``In`` with
  one value;
- ``In`` needs the key with one of the values; ``NotIn`` and ``DoesNotExist`` match when the
  key is absent; ``Exists`` needs the key;
- a null (absent) selector matches nothing; an empty one (``{}``, no requirement at all)
  matches everything, which is what a policy/v1 PodDisruptionBudget means by it;
- a malformed selector (unknown operator, ``In``/``NotIn`` without values, ``Exists`` /
  ``DoesNotExist`` with values, a key or value that is not a valid label) is an error, as it
  is for ``LabelSelectorAsSelector``; callers decide what that means (the disruption
  controller and the eviction API skip such a budget).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.domain import errors

IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "In", "NotIn", "Exists", "DoesNotExist"
OPERATORS = (IN, NOT_IN, EXISTS, DOES_NOT_EXIST)

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class SelectorError(errors.PermanentError):
    """A selector the API server would not accept."""


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise SelectorError(f"label key must be a string, got {key!r}")
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise SelectorError(f"invalid label key {key!r}: bad prefix")
    if not _NAME.fullmatch(name):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"value of {key!r} must be a string, got {value!r}")
    if value and not _NAME.fullmatch(value):
        raise SelectorError(f"invalid label value {value!r} for {key!r}")
    return value


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator == IN:
            return has and labels[self.key] in self.values
        if self.operator == NOT_IN:
            return not has or labels[self.key] not in self.values
        if self.operator == EXISTS:
            return has
        return not has  # DOES_NOT_EXIST


@dataclass(frozen=True)
class Selector:
    """A parsed selector; ``nothing`` is the null selector (matches no object)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        lbl = labels or {}
        return all(r.matches(lbl) for r in self.requirements)

    @property
    def everything(self) -> bool:
        return not self.nothing and not self.requirements


def parse(selector: Mapping[str, Any] | None) -> Selector:
    """Parse a ``LabelSelector`` object (raises ``SelectorError`` when it is malformed)."""
    if selector is None:
        return Selector(nothing=True)
    if not isinstance(selector, Mapping):
        raise SelectorError(f"a label selector must be an object, got {selector!r}")
    reqs: list[Requirement] = []
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise SelectorError("matchLabels must be an object")
    for k, v in match_labels.items():
        key = _check_key(k)
        reqs.append(Requirement(key, IN, frozenset({_check_value(key, v)})))
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise SelectorError("matchExpressions must be a list")
    for expr in exprs:
        if not isinstance(expr, Mapping):
            raise SelectorError(f"a match expression must be an object, got {expr!r}")
        key = _check_key(expr.get("key"))
        op = expr.get("operator")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise SelectorError(f"values of {key!r} must be a list")
        if op in (IN, NOT_IN):
            if not values:
                raise SelectorError(f"{op} on {key!r} needs at least one value")
        elif op in (EXISTS, DOES_NOT_EXIST):
            if values:
                raise SelectorError(f"{op} on {key!r} takes no values")
        else:
            raise SelectorError(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(key, str(op), frozenset(_check_value(key, v) for v in values)))
    return Selector(tuple(reqs))


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether ``selector`` selects an object with ``labels`` (``SelectorError`` if malformed)."""
    return parse(selector).matches(labels)
