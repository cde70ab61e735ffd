"""The Helm layout's values paths (reconciler.config.layout: ``valuesPaths`` and
``nodeGroups``), as a user writes them in the layout file.

Cases:
- the top level of the values file, as ``"."`` or ``""``, in the short form and as a
  mapping's ``prefix``: resources at ``resources``, replicas at ``replicas`` (left to the
  index to map to ``replicaCount``: ``replicas_default``);
- a dotted prefix, a subchart's section (``redis.master``) and per-container paths;
- quoted keys (``"my.app"``, ``'my.app'``, ``["my.app"]``) all read as the same canonical
  path; an explicit ``replicas`` is not a default;
- malformed paths are ConfigErrors naming the layout key and what is wrong: empty keys, an
  unterminated quote, a key with a space, a missing prefix, the top level where a value
  is meant (a container's resources, replicas, a node group's count), a non-string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.config import layout
from reconciler.domain import errors


def _paths(raw: Any, default_container: str = "app") -> layout.ValuesPath:
    lay = layout.parse_layout({"kind": "helm", "valuesFile": "values.yaml",
                               "defaultContainer": default_container,
                               "valuesPaths": {"w": raw}})
    return lay.values_paths["w"]


@pytest.mark.parametrize("top", [".", ""])
def test_top_level_short_form(top: str) -> None:
    assert _paths(top) == layout.ValuesPath("", {"app": "resources"}, "replicas",
                                            replicas_default=True)


def test_top_level_from_the_layout_file(tmp_path: Path) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text("kind: helm\nvaluesFile: chart/values.yaml\ndefaultContainer: web\n"
                    "valuesPaths:\n  web: .\n  api: ''\n")
    lay = layout.load_layout(path)
    assert lay.values_paths["web"] == lay.values_paths["api"] == layout.ValuesPath(
        "", {"web": "resources"}, "replicas", replicas_default=True)


def test_top_level_mapping_form() -> None:
    vp = _paths({"prefix": ".", "containers": {"app": "resources", "proxy": "proxy.resources"},
                 "replicas": "replicaCount"})
    assert vp == layout.ValuesPath("", {"app": "resources", "proxy": "proxy.resources"},
                                   "replicaCount")


def test_subchart_section() -> None:
    assert _paths({"prefix": "redis.master", "container": "redis"}) == layout.ValuesPath(
        "redis.master", {"redis": "redis.master.resources"}, "redis.master.replicas",
        replicas_default=True)


@pytest.mark.parametrize("spelling", ['"my.app"', "'my.app'", '["my.app"]', "['my.app']"])
def test_quoted_keys_read_as_one_canonical_path(spelling: str) -> None:
    assert _paths(spelling) == layout.ValuesPath(
        '"my.app"', {"app": '"my.app".resources'}, '"my.app".replicas', replicas_default=True)
    vp = _paths({"prefix": f"global.{spelling}", "containers": {
        "app": f"global.{spelling}.server.resources"}})
    assert vp.containers == {"app": 'global."my.app".server.resources'}


def test_plain_keys_with_dashes_need_no_quotes() -> None:
    assert _paths("my-app").containers == {"app": "my-app.resources"}
    assert _paths('"my-app"').prefix == "my-app"  # quoting a plain key changes nothing


@pytest.mark.parametrize(
    ("raw", "where", "reason"),
    [
        ("a..b", "valuesPaths.w", "empty key at character 3"),
        ('"my.app.resources', "valuesPaths.w", "unterminated or invalid quoted key"),
        ("my app", "valuesPaths.w", "unexpected ' ' at character 3"),
        ("a.", "valuesPaths.w", "a key is missing at the end"),
        (3, "valuesPaths.w", "must be a prefix or a mapping"),
        ({"container": "x"}, "valuesPaths.w.prefix", '"." for the top level'),
        ({"prefix": 3}, "valuesPaths.w.prefix", "must be a dotted path"),
        ({"prefix": ".", "containers": {"app": "."}}, "valuesPaths.w.containers.app",
         "the top level is not a value"),
        ({"prefix": ".", "replicas": ""}, "valuesPaths.w.replicas",
         "the top level is not a value"),
        ({"prefix": "a", "replicas": "a.'x"}, "valuesPaths.w.replicas", "quoted key"),
    ],
)
def test_malformed_paths_are_config_errors(raw: Any, where: str, reason: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(where)) as info:
        _paths(raw)
    assert reason in str(info.value)


def test_node_group_count_path_is_canonical_and_never_the_top_level() -> None:
    lay = layout.parse_layout({"nodeGroups": {"pool": "infra/pools.yaml#pools.'gpu.a100'.size"}})
    assert lay.node_groups["pool"] == 'infra/pools.yaml#pools."gpu.a100".size'
    with pytest.raises(errors.ConfigError, match=r"nodeGroups\.pool.*top level"):
        layout.parse_layout({"nodeGroups": {"pool": "infra/pools.yaml#."}})
