"""How much an untrusted input may make the reconciler read and build.

Recommendations come from outside (files, VPA and KRR reports, the platform's stream,
custom resources anyone with RBAC can create) and so do the manifests of a repository
anyone with commit rights can change. A few hundred bytes of YAML aliases expand to
gigabytes, and deep nesting ends in a recursion error (or, in libyaml's composer, a
crash of the whole process). Every reader of untrusted bytes checks these limits first
(``yamledit.bounded``), and a breach is an ``errors.InputLimitError`` naming the limit and
the setting that raises it (``--input-limit NAME=VALUE``, ``DAKR_INPUT_LIMITS``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reconciler.domain import errors

SETTING = "--input-limit {name}=N (DAKR_INPUT_LIMITS)"


@dataclass(frozen=True)
class InputLimits:
    """Defaults far above anything a recommendation or a manifest needs, far below what
    would hurt: a recommendation is a few hundred bytes, a manifest a few kilobytes."""

    bytes: int = 16 * 2**20        # one file or one stream message
    documents: int = 10_000        # YAML documents (or List items) in one file
    depth: int = 64                # nesting of mappings and sequences
    aliases: int = 100             # YAML alias uses (recommendations never need any)
    nodes: int = 1_000_000         # values once aliases are expanded
    string: int = 1 * 2**20        # characters in one string

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise errors.ConfigError(
                    f"input limit {f.name} must be a whole number >= 0, got {value!r}")

    def breach(self, name: str, seen: str, origin: str) -> errors.InputLimitError:
        """The error for input ``origin`` breaking limit ``name`` (``seen`` says how)."""
        return errors.InputLimitError(
            f"{origin}: {seen}, above the input limit {name}={getattr(self, name)} "
            f"(raise it with {SETTING.format(name=name)})")


DEFAULT = InputLimits()


def parse(spec: str, base: InputLimits = DEFAULT) -> InputLimits:
    """``"depth=128,bytes=33554432"`` over ``base``; a ConfigError names a bad entry.
    Sizes take a binary suffix (Ki, Mi, Gi)."""
    changes: dict[str, int] = {}
    names = {f.name for f in dataclasses.fields(InputLimits)}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise errors.ConfigError(f"input limit {part!r}: expected NAME=N with NAME one "
                                     f"of {', '.join(sorted(names))}")
        changes[name] = _number(raw.strip(), part)
    return dataclasses.replace(base, **changes)


def _number(raw: str, part: str) -> int:
    scale = 1
    for suffix, factor in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], factor
            break
    if not raw.isdigit():
        raise errors.ConfigError(f"input limit {part!r}: {raw!r} is not a whole number")
    return int(raw) * scale
