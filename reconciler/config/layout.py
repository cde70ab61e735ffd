"""The layout file (``--layout FILE``): how a GitOps repository keeps its workloads.

A repository may hold plain manifests, a Kustomize overlay over shared bases, or a Helm
values file, and may route Argo CD applications or Flux Kustomizations to other
repositories; the layout file says which, so the writer edits the file that decides a
value. It lives in ``config`` because the settings hold a ``Layout`` (``GitSettings``) and
config sits below gitops: parsing the file must not need the writer. Errors name the
offending key, as a ConfigError (exit code 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from reconciler.domain import errors
from reconciler.domain import limits as limits_mod
from reconciler.yamledit import bounded, values

KINDS = ("plain", "kustomize", "helm")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class ValuesPath:
    """Where one workload's numbers sit in a values file.

    Paths are canonical (``values.join_path``): ``prefix`` is ``""`` for the top level of
    the file (a chart from ``helm create``); ``containers`` maps a container name to the
    path of its ``resources`` mapping; ``replicas`` is the path of the replica count.
    ``replicas_default`` says the layout did not name it, so the index may take the chart's
    own ``replicaCount`` (what ``helm create`` writes) when the file sets that and not
    ``replicas``.
    """

    prefix: str
    containers: Mapping[str, str]
    replicas: str
    replicas_default: bool = False


@dataclass(frozen=True)
class RepoRoute:
    """Where an Argo CD application or Flux Kustomization takes its manifests from."""

    repo: str
    path: str = ""
    layout: str = ""  # a layout file for that repository ("" = plain)


@dataclass(frozen=True)
class Layout:
    kind: str = "plain"
    paths: tuple[str, ...] = ("",)
    overlay: str = ""
    edit_base: bool = False
    values_file: str = ""
    values_paths: Mapping[str, ValuesPath] = field(default_factory=dict)
    default_namespace: str = "default"
    repos: Mapping[str, RepoRoute] = field(default_factory=dict)
    node_groups: Mapping[str, str] = field(default_factory=dict)
    default_container: str = "server"
    # Helm: the chart the values file feeds (repo-relative directory; "" = the nearest
    # directory above the values file holding a Chart.yaml), and the release it is
    # installed as (""= the chart's name; Argo CD's default is the Application's name,
    # Flux's ``spec.releaseName``), in ``namespace`` ("" = the target's namespace). The
    # writer renders the chart with them to verify each edit.
    chart: str = ""
    release_name: str = ""
    namespace: str = ""
    # Helm: the values files the cluster gives the chart, in its order (Argo CD's
    # ``helm.valueFiles``, ``helm -f``); ``values_file`` is this environment's own, where a
    # key no file sets is added (default: the last). ``application``: an Argo CD
    # Application manifest in the repository to take the chart, the files, the release
    # and the namespace from.
    values_files: tuple[str, ...] = ()
    application: str = ""
    # Helm: a Flux HelmRelease manifest in the repository, read like ``application``
    # (its chart's valuesFiles, valuesFrom, values, releaseName, targetNamespace).
    helm_release: str = ""


_LAYOUT_KEYS = {
    "kind", "paths", "overlay", "editBase", "valuesFile", "valuesPaths",
    "defaultNamespace", "repos", "nodeGroups", "defaultContainer", "chart", "releaseName",
    "namespace", "valuesFiles", "application", "helmRelease",
}  # fmt: skip


def _rel(value: object, key: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise errors.ConfigError(f"layout: {key} must be a string path")
    p = value.strip()
    if p.startswith("/"):
        raise errors.ConfigError(f"layout: {key} must be relative to the repository: {value!r}")
    p = p.rstrip("/")
    if not p and not allow_empty:
        raise errors.ConfigError(f"layout: {key} must not be empty")
    if ".." in PurePosixPath(p).parts or "\\" in p:
        raise errors.ConfigError(f"layout: {key} must stay inside the repository: {value!r}")
    return "" if p in ("", ".") else PurePosixPath(p).as_posix()


def _dotted(value: object, key: str, *, root: bool = False) -> str:
    """A values path in its canonical spelling; ``root`` allows the top level (``""`` or
    ``"."``) where a prefix is meant."""
    if not isinstance(value, str):
        raise errors.ConfigError(f"layout: {key} must be a dotted path"
                                 + (" (\".\" for the top level)" if root else ""))
    try:
        return values.join_path(values.split_path(value, root=root))
    except errors.FieldError as e:
        raise errors.ConfigError(f"layout: {key}: {value!r}: {e.reason}") from e


def _values_path(key: str, raw: object, default_container: str) -> ValuesPath:
    where = f"valuesPaths.{key}"
    if isinstance(raw, str):
        prefix = _dotted(raw, where, root=True)
        return ValuesPath(prefix, {default_container: values.child_path(prefix, "resources")},
                          values.child_path(prefix, "replicas"), replicas_default=True)
    if not isinstance(raw, Mapping):
        raise errors.ConfigError(f"layout: {where} must be a prefix or a mapping")
    unknown = set(raw) - {"prefix", "container", "containers", "replicas"}
    if unknown:
        raise errors.ConfigError(f"layout: {where}: unknown key {sorted(unknown)[0]!r}")
    prefix = _dotted(raw.get("prefix"), f"{where}.prefix", root=True)
    containers: dict[str, str] = {}
    if "containers" in raw:
        if not isinstance(raw["containers"], Mapping) or not raw["containers"]:
            raise errors.ConfigError(f"layout: {where}.containers must map names to paths")
        for cname, cpath in raw["containers"].items():
            containers[str(cname)] = _dotted(cpath, f"{where}.containers.{cname}")
    else:
        cname = raw.get("container", default_container)
        if not isinstance(cname, str) or not cname:
            raise errors.ConfigError(f"layout: {where}.container must be a container name")
        containers[cname] = values.child_path(prefix, "resources")
    if "replicas" in raw:
        return ValuesPath(prefix, containers, _dotted(raw["replicas"], f"{where}.replicas"))
    return ValuesPath(prefix, containers, values.child_path(prefix, "replicas"),
                      replicas_default=True)


def parse_layout(data: object) -> Layout:
    """A Layout from its YAML form (see examples/layouts/README.md)."""
    if data is None:
        return Layout()
    if not isinstance(data, Mapping):
        raise errors.ConfigError("layout: the file must hold a mapping")
    unknown = set(data) - _LAYOUT_KEYS
    if unknown:
        raise errors.ConfigError(f"layout: unknown key {sorted(map(str, unknown))[0]!r}")
    kind = data.get("kind", "plain")
    if kind not in KINDS:
        raise errors.ConfigError(f"layout: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    raw_paths = data.get("paths", [""])
    if isinstance(raw_paths, str):
        raw_paths = [raw_paths]
    if not isinstance(raw_paths, list) or not raw_paths:
        raise errors.ConfigError("layout: paths must be a list of directories")
    paths = tuple(_rel(p, "paths") for p in raw_paths)
    overlay = _rel(data.get("overlay", ""), "overlay")
    if kind == "kustomize" and "overlay" not in data:
        raise errors.ConfigError("layout: overlay is required for kind kustomize")
    edit_base = data.get("editBase", False)
    if not isinstance(edit_base, bool):
        raise errors.ConfigError("layout: editBase must be true or false")
    values_file = _rel(data.get("valuesFile", ""), "valuesFile")
    raw_files = data.get("valuesFiles", [])
    if not isinstance(raw_files, list):
        raise errors.ConfigError("layout: valuesFiles must be a list of values files, in the "
                                 "order the cluster gives them to the chart")
    values_files = tuple(_rel(f, "valuesFiles", allow_empty=False) for f in raw_files)
    if values_files and not values_file:
        values_file = values_files[-1]
    if values_files and values_file not in values_files:
        raise errors.ConfigError("layout: valuesFile must be one of valuesFiles")
    application = _rel(data.get("application", ""), "application")
    helm_release = _rel(data.get("helmRelease", ""), "helmRelease")
    if application and helm_release:
        raise errors.ConfigError("layout: application and helmRelease exclude each other")
    if kind == "helm" and not values_file and not application and not helm_release:
        raise errors.ConfigError("layout: valuesFile is required for kind helm (or "
                                 "valuesFiles, an Argo CD application or a Flux "
                                 "helmRelease)")
    default_container = data.get("defaultContainer", "server")
    if not isinstance(default_container, str) or not default_container:
        raise errors.ConfigError("layout: defaultContainer must be a container name")
    raw_vp = data.get("valuesPaths", {}) or {}
    if not isinstance(raw_vp, Mapping):
        raise errors.ConfigError("layout: valuesPaths must be a mapping")
    values_paths = {str(k): _values_path(str(k), v, default_container) for k, v in raw_vp.items()}
    ns = data.get("defaultNamespace", "default")
    if not isinstance(ns, str) or not ns:
        raise errors.ConfigError("layout: defaultNamespace must be a namespace name")
    repos: dict[str, RepoRoute] = {}
    raw_repos = data.get("repos", {}) or {}
    if not isinstance(raw_repos, Mapping):
        raise errors.ConfigError("layout: repos must be a mapping")
    for app, entry in raw_repos.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("repo"), str):
            raise errors.ConfigError(f"layout: repos.{app}.repo must be a repository URL or path")
        extra = set(entry) - {"repo", "path", "layout"}
        if extra:
            raise errors.ConfigError(f"layout: repos.{app}: unknown key {sorted(extra)[0]!r}")
        layout_ref = entry.get("layout", "")
        if not isinstance(layout_ref, str):
            raise errors.ConfigError(f"layout: repos.{app}.layout must be a file path")
        repos[str(app)] = RepoRoute(entry["repo"], _rel(entry.get("path", ""),
                                                        f"repos.{app}.path"), layout_ref)
    node_groups: dict[str, str] = {}
    raw_ng = data.get("nodeGroups", {}) or {}
    if not isinstance(raw_ng, Mapping):
        raise errors.ConfigError("layout: nodeGroups must be a mapping")
    for ng, ref in raw_ng.items():
        where = f"nodeGroups.{ng}"
        if not isinstance(ref, str) or "#" not in ref:
            raise errors.ConfigError(f"layout: {where} must be 'FILE#dotted.path'")
        file, _, dotted = ref.partition("#")
        node_groups[str(ng)] = f"{_rel(file, where, allow_empty=False)}#{_dotted(dotted, where)}"
    chart = _rel(data.get("chart", ""), "chart")
    release = data.get("releaseName", "")
    if not isinstance(release, str) or not _DNS_LABEL.fullmatch(release or "a") or len(
            release) > 53:
        raise errors.ConfigError("layout: releaseName must be a Helm release name (lower-case "
                                 "letters, digits and '-', at most 53 characters)")
    release_ns = data.get("namespace", "")
    if not isinstance(release_ns, str) or not _DNS_LABEL.fullmatch(release_ns or "a"):
        raise errors.ConfigError("layout: namespace must be a namespace name")
    return Layout(kind=kind, paths=paths, overlay=overlay, edit_base=edit_base,
                  values_file=values_file, values_paths=values_paths, default_namespace=ns,
                  repos=repos, node_groups=node_groups, default_container=default_container,
                  chart=chart, release_name=release, namespace=release_ns,
                  values_files=values_files, application=application,
                  helm_release=helm_release)


def load_layout(path: Path | None) -> Layout:
    """The layout in ``path``; None means a plain layout over the whole repository."""
    if path is None:
        return Layout()
    try:
        docs = bounded.load_yaml(path.read_text(encoding="utf-8"), limits_mod.DEFAULT,
                                 f"layout {path}")
        data = docs[0] if docs else None
    except OSError as e:
        raise errors.ConfigError(f"layout: cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:  # bad YAML is a ConfigError from bounded.load_yaml
        raise errors.ConfigError(f"layout: {path} is not valid UTF-8: {e}") from e
    return parse_layout(data)
