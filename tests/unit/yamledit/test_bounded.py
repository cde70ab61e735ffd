"""Untrusted YAML and JSON within the input limits (``yamledit.bounded``, ``domain.limits``).

Cases:
- hostile inputs are refused before anything is built, each naming the limit it broke
  and the setting that raises it (table): an alias bomb (nodes), more aliases than allowed,
  a recursive alias, YAML and JSON nested 100,000 levels (which would crash libyaml's
  composer or raise RecursionError), too many documents, a long string in YAML and in
  JSON, too many bytes;
- brackets inside strings are not nesting: a JSON or YAML string full of ``[`` loads, an
  escaped quote does not end a string; JSON that libyaml refuses is bounded too;
- unterminated strings (``"\\"`` repeated) are read as one string, not retried from
  every quote: the result is the same ValueError as for any text that is not JSON;
- ordinary inputs load unchanged and take the cheap path (no event walk): the bundled
  recommendations and the demo manifests;
- a few aliases within the limits load as PyYAML loads them;
- limits parse from "NAME=N,..." with Ki/Mi/Gi; a bad entry is a ConfigError naming it;
  a negative limit is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reconciler.domain import errors
from reconciler.domain import limits as limits_mod
from reconciler.yamledit import bounded

ROOT = Path(__file__).resolve().parents[3]
SMALL = limits_mod.InputLimits(bytes=4096, documents=3, depth=8, aliases=4, nodes=500,
                               string=64)


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE = [
    ("alias-bomb", bomb(), limits_mod.DEFAULT, "nodes"),
    ("many-aliases", "a: &a 1\nb: [" + ", ".join(["*a"] * 5) + "]\n", SMALL, "aliases"),
    ("recursive-alias", "a: &a [*a]\n", limits_mod.DEFAULT, "aliases"),
    ("deep-yaml-flow", "a: " + "[" * 100_000 + "]" * 100_000, limits_mod.DEFAULT, "depth"),
    ("deep-yaml-block", "".join(" " * i + f"k{i}:\n" for i in range(20)) + " " * 20 + "v\n",
     SMALL, "depth"),
    ("deep-json", "[" * 100_000 + "]" * 100_000, limits_mod.DEFAULT, "depth"),
    # JSON that libyaml refuses (DEL in a string) is bounded all the same (fuzz finding).
    ("deep-json-yaml-refuses", '{"k": ' + "[" * 100 + '"\x7f"' + "]" * 100 + "}",
     limits_mod.DEFAULT, "depth"),
    ("deep-json-after-escaped-quotes", '{"k": "\\"[", "v": ' + "[" * 70 + "]" * 70 + "}",
     limits_mod.DEFAULT, "depth"),
    ("documents", "a: 1\n---\nb: 2\n---\nc: 3\n---\nd: 4\n", SMALL, "documents"),
    ("long-yaml-string", "a: " + "x" * 100 + "\n", SMALL, "string"),
    ("long-json-string", json.dumps({"a": "x" * 100}), SMALL, "string"),
    ("bytes", "a: 1\n" * 2000, SMALL, "bytes"),
]


@pytest.mark.parametrize(("text", "limits", "name"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_refused_naming_the_limit(text: str, limits: limits_mod.InputLimits,
                                                   name: str) -> None:
    load = bounded.load_json if text.startswith("[") or text.startswith("{") \
        else bounded.load_yaml
    with pytest.raises(errors.InputLimitError) as info:
        load(text, limits, "in.yaml")
    msg = str(info.value)
    assert msg.startswith("in.yaml: ")
    assert f"input limit {name}=" in msg and f"--input-limit {name}=N" in msg


def test_unterminated_strings_are_not_json() -> None:
    with pytest.raises(ValueError):
        bounded.load_json('"' + '\\"' * 50_000, limits_mod.DEFAULT, "x")


def test_brackets_in_strings_are_not_nesting() -> None:
    text = json.dumps({"a": "[" * 500})
    assert bounded.load_json(text, limits_mod.DEFAULT, "x") == {"a": "[" * 500}
    assert bounded.load_yaml("a: '" + "[" * 500 + "'\n", limits_mod.DEFAULT, "x") == [
        {"a": "[" * 500}]


@pytest.mark.parametrize("path", [
    ROOT / "examples" / "recommendations.yaml",
    *sorted((ROOT / "examples" / "microservices-demo").rglob("*.yaml")),
], ids=lambda p: p.name)
def test_ordinary_input_loads_unchanged_on_the_cheap_path(path: Path) -> None:
    text = path.read_text()
    assert bounded._plainly_within(text, limits_mod.DEFAULT)
    assert bounded.load_yaml(text, limits_mod.DEFAULT, str(path)) == list(
        yaml.safe_load_all(text))


def test_aliases_within_the_limits_load() -> None:
    text = "base: &b {cpu: 1}\nx: *b\ny: *b\n"
    assert bounded.load_yaml(text, limits_mod.DEFAULT, "x") == [yaml.safe_load(text)]


def test_limits_parse() -> None:
    got = limits_mod.parse("depth=128, bytes=32Mi,string=2Ki")
    assert (got.depth, got.bytes, got.string) == (128, 32 * 2**20, 2048)
    assert got.aliases == limits_mod.DEFAULT.aliases
    for bad in ("depth", "wat=1", "depth=-1", "depth=1.5", "bytes=3Ti"):
        with pytest.raises(errors.ConfigError) as info:
            limits_mod.parse(bad)
        assert "input limit" in str(info.value)
    with pytest.raises(errors.ConfigError):
        limits_mod.InputLimits(depth=-1)
