"""Where a target's values really live in a GitOps repository: the index of one batch.

A recommendation names a live object (namespace, kind, name); the repository may define
it as a plain manifest, as a Kustomize base changed by an overlay, or only as a few keys
of a Helm values file. Editing the wrong file is worse than editing none: a change to a
base shared by staging and prod changes both, a change to a value that an overlay patch
overrides changes nothing at all. So the index finds the file that decides each value
(per the repository's layout file) and tells ``render`` how to change it.

The index is built once per batch: every YAML file is read, but only the files that
mention a target's name are parsed, and only their candidate documents. It also computes
what the cluster would get from the repository (``Index.observed``: patches and the
replicas field applied), which is what the policy and the planner judge.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.config import layout as layoutfile
from reconciler.domain import errors, planner
from reconciler.domain import limits as limits_mod
from reconciler.domain import text as txt
from reconciler.yamledit import bounded, kustomize, splice, values

log = logging.getLogger(__name__)

Target = tuple[str, str, str]  # (namespace, kind, name)

NODE_GROUP = "NodeGroup"
MACHINE_DEPLOYMENT = "MachineDeployment"
_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SKIP_DIRS = {".git", "node_modules", ".venv"}
# Every value of a `name` key, block, flow or JSON style: the cheap test that decides
# whether a file is parsed at all (it may say yes too often, never no wrongly).
_NAME = re.compile(r"""(?:^|[\s{,-])["']?name["']?[ \t]*:[ \t]*["']?([A-Za-z0-9][-A-Za-z0-9._]*)""",
                   re.MULTILINE)
# Argo CD annotation tracking: "<app>:<group>/<Kind>:<namespace>/<name>".
_ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
_ARGO_INSTANCE = "app.kubernetes.io/instance"
_FLUX_LABELS = (
    ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace"),
    ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace"),
)


def route(layout: layoutfile.Layout,
          target_live_object: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(repo, path) of the application that deploys this live object, from its tracking
    annotation or labels and ``layout.repos``; None when nothing tracks it or it is not
    mapped (the caller then uses its default repository)."""
    entry = route_entry(layout, target_live_object)
    return (entry.repo, entry.path) if entry is not None else None


def tracking_keys(obj: Mapping[str, Any] | None) -> list[str]:
    """Names under which ``repos`` may list the application that owns ``obj``, best first."""
    if not isinstance(obj, Mapping):
        return []
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    keys: list[str] = []
    tracking = annotations.get(_ARGO_TRACKING) if isinstance(annotations, Mapping) else None
    if isinstance(tracking, str) and ":" in tracking:
        app = tracking.split(":", 1)[0]
        keys.append(app)
        if "_" in app:  # apps outside the control-plane namespace: "<namespace>_<app>"
            keys.append(app.split("_", 1)[1])
    if isinstance(labels, Mapping):
        for name_label, ns_label in _FLUX_LABELS:
            name = labels.get(name_label)
            if isinstance(name, str) and name:
                ns = labels.get(ns_label)
                if isinstance(ns, str) and ns:
                    keys.append(f"{ns}/{name}")
                keys.append(name)
        instance = labels.get(_ARGO_INSTANCE)
        if isinstance(instance, str) and instance:
            keys.append(instance)
    return keys


def route_entry(layout: layoutfile.Layout,
                obj: Mapping[str, Any] | None) -> layoutfile.RepoRoute | None:
    for key in tracking_keys(obj):
        if key in layout.repos:
            return layout.repos[key]
    return None


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Where a target's values live, and how ``render`` must change them."""

    target: Target
    # manifest | kustomize-patch | kustomize-new-patch | kustomize-replicas | helm-values |
    # node-group
    kind: str
    path: str
    doc_index: int = 0
    line: int = 0
    manifest_path: str = ""
    values_prefix: str = ""
    # Extras the renderer needs (all optional):
    namespace_in_file: str | None = None  # manifest: the document's own metadata.namespace
    api_version: str = ""  # kustomize: of the base document, for a new patch
    kustomization: str = ""  # kustomize: the overlay's kustomization file
    replicas_in_kustomization: bool = False  # the overlay's `replicas:` lists this name
    values_containers: tuple[tuple[str, str], ...] = ()  # helm: (container, resources path)
    values_replicas: str = ""  # helm: dotted path of the replica count


@dataclass
class Stats:
    files_seen: int = 0
    files_parsed: int = 0


@dataclass
class _Found:
    path: str
    doc_index: int
    line: int
    namespace: str | None  # as written in the document


@dataclass
class _Patch:
    owner: str  # the kustomization file that lists it
    file: str  # repo-relative; "" for an inline patch
    text: str  # inline patch text, or the file's text once read
    target: Mapping[str, Any] | None
    json6902: bool = False
    docs: list[Any] | None = None  # parsed once, when a batch target needs it


@dataclass
class _Kust:
    dir: str
    file: str
    namespace: str | None
    manifests: list[str]
    children: list[_Kust]
    patches: list[_Patch]
    replicas: dict[str, int]


def join(base: str, rel: str) -> str:
    """``rel`` resolved against ``base`` inside the repository: a reference that climbs out
    of it (``../`` too far) is an error, never a path outside the clone."""
    parts: list[str] = []
    for part in PurePosixPath(base, rel).parts:
        if part == "..":
            if not parts:
                raise errors.PermanentError(f"{rel} (from {base}) leaves the repository")
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def _yaml_files(root: Path, under: str) -> Iterable[str]:
    start = root / under if under else root
    if start.is_file():
        yield under
        return
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")):
                yield (Path(dirpath) / f).relative_to(root).as_posix()


class Index:
    """Every batch target located once: built with ``Index.build``."""

    def __init__(self, root: Path, layout: layoutfile.Layout,
                 limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> None:
        self.root = root
        self.layout = layout
        self.limits = limits  # anyone with commit rights writes these files
        self.stats = Stats()
        self._texts: dict[str, str] = {}
        self._found: dict[Target, list[_Found]] = {}
        self._values: Any = None
        self._overlay: _Kust | None = None
        self._levels: dict[str, list[_Kust]] = {}  # manifest file -> kustomizations, inner first
        self._patches: list[tuple[_Kust, _Patch]] = []  # every level's patches, inner first
        self._docs: dict[tuple[str, int], dict[str, Any]] = {}
        self._names: set[str] = set()
        self._patch_idx: tuple[dict[str, list[tuple[int, _Kust, _Patch, Any]]],
                               list[tuple[int, _Kust, _Patch]]] | None = None
        self._located: dict[Target, Source] = {}

    # ---- building

    @classmethod
    def build(cls, root: Path, layout: layoutfile.Layout, targets: Iterable[Target],
              limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> Index:
        """Scan the repository once for all ``targets``.

        Every YAML file in scope is read; only those that mention a target's name are
        parsed, and only the documents that can define one of the wanted kinds.
        """
        self = cls(root, layout, limits)
        wanted = set(targets)
        self._found = {t: [] for t in wanted}
        self._names = {t[2] for t in wanted}
        try:
            self._build(wanted)
        except errors.NotFoundError as e:
            raise errors.ConfigError(f"layout ({layout.kind}): {e}") from e
        return self

    def _build(self, wanted: set[Target]) -> None:
        root, layout = self.root, self.layout
        workloads = {t for t in wanted if t[1] != NODE_GROUP}
        node_groups = {t for t in wanted if t[1] == NODE_GROUP and t[2] not in layout.node_groups}
        if layout.kind == "helm":
            text = self._read(layout.values_file, required=True)
            self.stats.files_seen += 1
            self.stats.files_parsed += 1
            self._values = values.read_values(text)
            if not isinstance(self._values, Mapping):
                raise errors.PermanentError(f"{layout.values_file} does not hold a mapping")
            workloads = set()
        if layout.kind == "kustomize" and workloads:
            self._overlay = self._load_kustomization(layout.overlay, [], set())
            files = list(self._levels)
        else:
            files = [f for p in layout.paths for f in _yaml_files(root, p)] if (
                workloads or node_groups) else []
        self._scan(files, workloads, set(_WORKLOAD_KINDS) | {t[1] for t in workloads})
        self._scan(
            [f for p in layout.paths for f in _yaml_files(root, p)] if node_groups else [],
            {("", MACHINE_DEPLOYMENT, t[2]) for t in node_groups}, {MACHINE_DEPLOYMENT},
        )
        for t in node_groups:
            self._found[t] = self._found.pop(("", MACHINE_DEPLOYMENT, t[2]), [])

    def _read(self, rel: str, *, required: bool = False) -> str:
        if rel in self._texts:
            return self._texts[rel]
        try:
            text = (self.root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            if required:
                raise errors.NotFoundError(f"{rel} cannot be read from the repository") from e
            return ""
        bounded.check_yaml(text, self.limits, rel)  # a breach: PermanentError naming it
        self._texts[rel] = text
        return text

    def _scan(self, files: Sequence[str], wanted: set[Target], kinds: set[str]) -> None:
        if not wanted:
            return
        names = {t[2] for t in wanted}
        by_name: dict[tuple[str, str], list[Target]] = {}
        for t in wanted:
            by_name.setdefault((t[1], t[2]), []).append(t)
        for rel in files:
            self.stats.files_seen += 1
            try:
                text = (self.root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if names.isdisjoint(_NAME.findall(text)):
                continue
            self.stats.files_parsed += 1
            try:
                bounded.check_yaml(text, self.limits, rel)
                found = splice.scan_documents(text, kinds, names)
            except errors.PermanentError as e:
                log.warning("skipping %s: %s", txt.one_line(rel), txt.one_line(str(e)))
                continue
            self._texts[rel] = text
            for ref, data in found:
                if isinstance(data, dict):
                    self._docs[(rel, ref.doc_index)] = data
                ns = self._namespace_of(rel, ref.namespace)
                for t in by_name.get((ref.kind, ref.name), []):
                    if t[0] == ns or t[1] == MACHINE_DEPLOYMENT:
                        self._found.setdefault(t, []).append(
                            _Found(rel, ref.doc_index, ref.line, ref.namespace))

    def _namespace_of(self, rel: str, own: str | None) -> str:
        """The namespace a document deploys to: the outermost kustomization's ``namespace:``
        wins over inner ones and over the document's own."""
        ns = own
        for k in self._levels.get(rel, []):
            if k.namespace:
                ns = k.namespace
        return ns or self.layout.default_namespace

    def _load_kustomization(self, rel_dir: str, outer: list[_Kust], seen: set[str]) -> _Kust:
        if rel_dir in seen:
            raise errors.PermanentError(f"kustomization cycle through {rel_dir or '.'}")
        seen = seen | {rel_dir}
        file = next((join(rel_dir, n) for n in _KUSTOMIZATION_NAMES
                     if (self.root / rel_dir / n).is_file()), None)
        if file is None:
            raise errors.NotFoundError(
                f"no kustomization.yaml in {rel_dir or 'the repository root'}")
        text = self._read(file, required=True)
        self.stats.files_seen += 1
        self.stats.files_parsed += 1
        data = values.read_values(text) or {}
        if not isinstance(data, Mapping):
            raise errors.PermanentError(f"{file} is not a mapping")
        ns = data.get("namespace")
        k = _Kust(rel_dir, file, ns if isinstance(ns, str) and ns else None, [], [], [],
                  kustomize.kustomize_replicas(text))
        chain = [k, *outer]
        for entry in [*(data.get("resources") or []), *(data.get("bases") or [])]:
            if not isinstance(entry, str) or "://" in entry or entry.startswith(("git@", "http")):
                continue  # remote bases cannot be edited from here
            rel = join(rel_dir, entry)
            if (self.root / rel).is_dir():
                k.children.append(self._load_kustomization(rel, chain, seen))
            elif (self.root / rel).is_file():
                k.manifests.append(rel)
                self._levels.setdefault(rel, []).extend(chain)
        for entry in data.get("patchesStrategicMerge") or []:
            if isinstance(entry, str) and "\n" not in entry.strip():
                k.patches.append(_Patch(file, join(rel_dir, entry.strip()), "", None))
            elif isinstance(entry, str):
                k.patches.append(_Patch(file, "", entry, None))
        for entry in data.get("patches") or []:
            if not isinstance(entry, Mapping):
                continue
            target = entry.get("target") if isinstance(entry.get("target"), Mapping) else None
            if isinstance(entry.get("path"), str):
                k.patches.append(_Patch(file, join(rel_dir, entry["path"]), "", target))
            elif isinstance(entry.get("patch"), str):
                k.patches.append(_Patch(file, "", entry["patch"], target))
        for entry in data.get("patchesJson6902") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                target = entry.get("target") if isinstance(entry.get("target"), Mapping) else None
                k.patches.append(_Patch(file, join(rel_dir, entry["path"]), "", target, True))
        # Kustomize's order: patchesStrategicMerge, patches, patchesJson6902; and outer
        # levels' patches run after inner ones: record inner first.
        self._patches.extend((k, p) for p in k.patches)
        return k

    # ---- kustomize patches

    def _patch_docs(self, patch: _Patch) -> list[Any]:
        if patch.docs is not None:
            return patch.docs
        text = patch.text or self._read(patch.file)
        docs: list[Any] = []
        if text:
            if patch.file:
                self.stats.files_parsed += 1
            # Within the limits, and a value YAML cannot build is a ConfigError naming
            # the patch, as invalid YAML is (both PermanentErrors: the target is refused).
            docs = [d for d in bounded.load_yaml(text, self.limits,
                                                 f"patch {patch.file or patch.owner}")
                    if d is not None]
        if len(docs) == 1 and isinstance(docs[0], list):
            patch.json6902 = True
        patch.docs = docs
        return docs

    def _patch_index(self) -> tuple[dict[str, list[tuple[int, _Kust, _Patch, Any]]],
                                    list[tuple[int, _Kust, _Patch]]]:
        """Patches by the workload name they are about (parsed only when that name is a
        target of the batch), plus the patches whose target selects by kind or pattern."""
        if self._patch_idx is not None:
            return self._patch_idx
        by_name: dict[str, list[tuple[int, _Kust, _Patch, Any]]] = {}
        generic: list[tuple[int, _Kust, _Patch]] = []
        names = self._names
        for order, (k, patch) in enumerate(self._patches):
            tn = patch.target.get("name") if patch.target is not None else None
            if patch.target is not None and not (isinstance(tn, str)
                                                 and re.fullmatch(r"[-a-z0-9.]+", tn)):
                generic.append((order, k, patch))
                continue
            if isinstance(tn, str):
                if tn not in names:
                    continue
                docs = self._patch_docs(patch)
                if patch.json6902:
                    by_name.setdefault(tn, []).append((order, k, patch, docs[0] if docs else []))
                else:
                    for doc in docs:
                        by_name.setdefault(tn, []).append((order, k, patch, doc))
                continue
            if patch.file:
                self.stats.files_seen += 1
            if names.isdisjoint(_NAME.findall(patch.text or self._read(patch.file))):
                continue
            for doc in self._patch_docs(patch):
                meta = doc.get("metadata") if isinstance(doc, Mapping) else None
                if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
                    by_name.setdefault(meta["name"], []).append((order, k, patch, doc))
        self._patch_idx = (by_name, generic)
        return self._patch_idx

    def _patches_for(self, target: Target, found: _Found) -> list[tuple[_Kust, _Patch, Any]]:
        """Patches (with the document or op list that applies) of every level above the
        target's manifest, in the order kustomize applies them."""
        _, kind, name = target
        levels = {id(k) for k in self._levels.get(found.path, [])}
        by_name, generic = self._patch_index()
        hits: list[tuple[int, _Kust, _Patch, Any]] = []
        for order, k, patch, doc in by_name.get(name, []):
            if id(k) not in levels:
                continue
            if patch.target is not None and patch.target.get("kind") not in (None, kind):
                continue
            if patch.target is None and (not isinstance(doc, Mapping) or doc.get("kind") != kind):
                continue
            hits.append((order, k, patch, doc))
        for order, k, patch in generic:
            assert patch.target is not None
            tk, tn = patch.target.get("kind"), patch.target.get("name")
            if id(k) not in levels or (tk is not None and tk != kind):
                continue
            if tn is not None and not _name_matches(str(tn), name):
                continue
            if "labelSelector" in patch.target or "annotationSelector" in patch.target:
                continue  # selectors on labels are not resolved here
            docs = self._patch_docs(patch)
            if patch.json6902:
                hits.append((order, k, patch, docs[0] if docs else []))
            else:
                hits.extend((order, k, patch, doc) for doc in docs)
        hits.sort(key=lambda h: h[0])
        return [(k, p, d) for _, k, p, d in hits]

    # ---- queries

    def _one(self, target: Target) -> _Found:
        found = self._found.get(target)
        ns, kind, name = target
        if found is None:
            raise errors.NotFoundError(f"{kind}/{name} was not part of this batch's index")
        if not found:
            where = (f"overlay {self.layout.overlay or '.'} and its bases"
                     if self.layout.kind == "kustomize"
                     else ", ".join(p or "the repository" for p in self.layout.paths))
            raise errors.NotFoundError(
                f"{kind}/{name} in namespace {ns or '-'} is not defined in {where} "
                f"({self.stats.files_seen} files searched)")
        if len(found) > 1:
            places = [(f.doc_index, f.line) for f in found]
            shown = " and ".join(f"{f.path} (document {f.doc_index + 1}, line {f.line})"
                                 for f in found)
            raise splice.AmbiguousTargetError(
                f"{kind}/{name} in namespace {ns or '-'} is defined more than once: {shown}",
                places)
        return found[0]

    def _values_path(self, target: Target) -> layoutfile.ValuesPath:
        ns, kind, name = target
        keys = [f"{ns}/{kind}/{name}", f"{kind}/{name}", name]
        for key in keys:
            if key in self.layout.values_paths:
                return self.layout.values_paths[key]
        raise errors.NotFoundError(
            f"{kind}/{name} has no values path in the layout (looked for "
            f"{', '.join(repr(k) for k in keys)} under valuesPaths)")

    def _values_at(self, dotted: str) -> Any:
        """The value at a values path ("" is the whole file); None where it is not set."""
        node = self._values
        for key in values.split_path(dotted, root=True):
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def _replicas_path(self, vp: layoutfile.ValuesPath) -> str:
        """The replica count's path: as configured, or, when the layout left it to its
        default (``<prefix>.replicas``) and the file sets ``<prefix>.replicaCount`` instead
        (as every chart from ``helm create`` does), that key: writing ``replicas`` beside
        it would change a key no template reads."""
        if not vp.replicas_default or self._values_at(vp.replicas) is not None:
            return vp.replicas
        chart_own = values.child_path(vp.prefix, "replicaCount")
        return chart_own if self._values_at(chart_own) is not None else vp.replicas

    def locate(self, target: Target) -> Source:
        """The file to edit for ``target``; raises errors.NotFoundError naming what was
        searched, or splice.AmbiguousTargetError naming both places."""
        if target not in self._located:
            self._located[target] = self._locate(target)
        return self._located[target]

    def _locate(self, target: Target) -> Source:
        _, kind, name = target
        if kind == NODE_GROUP:
            return self._locate_node_group(target)
        if self.layout.kind == "helm":
            vp = self._values_path(target)
            if not isinstance(self._values_at(vp.prefix), Mapping):
                raise errors.NotFoundError(
                    f"{self.layout.values_file} has no mapping at "
                    f"{vp.prefix or 'its top level'} for {kind}/{name}")
            return Source(target, "helm-values", self.layout.values_file,
                          values_prefix=vp.prefix, values_containers=tuple(vp.containers.items()),
                          values_replicas=self._replicas_path(vp))
        found = self._one(target)
        doc = self._doc(found)
        plain = Source(target, "manifest", found.path, found.doc_index, found.line,
                       manifest_path=found.path, namespace_in_file=found.namespace,
                       api_version=str(doc.get("apiVersion", "")))
        if self.layout.kind != "kustomize" or self._overlay is None:
            return plain
        overlay = self._overlay
        own = found.path in overlay.manifests
        replicas_entry = name in overlay.replicas
        # Only a patch written for exactly this workload may be edited: one whose target
        # selects several workloads would change them all. Such a shared patch is left as
        # it is and overridden by a new patch listed after it (in `patches:`, which runs
        # after patchesStrategicMerge; patchesJson6902 runs after both).
        mine = [(k, p, d) for k, p, d in self._patches_for(target, found) if k is overlay]
        patches = [(p, d) for _, p, d in mine if _specific(p, d, kind, name)]
        setting = [(p, d) for p, d in patches if _sets_resources(d, p.json6902)]
        blocked = next((p for p, _ in setting if p.json6902 or not p.file), None) or next(
            (p for _, p, d in mine if p.json6902 and _sets_resources(d, True)), None)
        if blocked is not None:
            raise errors.PermanentError(
                f"{kind}/{name}: its resources are set by an "
                f"{'JSON 6902' if blocked.json6902 else 'inline'} patch "
                f"({blocked.file or 'in ' + blocked.owner}); that patch must be edited by hand")
        # Patches run in order and the last one that sets resources wins: edit it when it
        # is this workload's own file, else override it with a new patch listed last.
        last = next((p for _, p, d in reversed(mine) if _sets_resources(d, p.json6902)), None)
        own_files = {p.file for p, _ in setting}
        if last is not None:
            files = [last.file] if last.file in own_files else []
        else:
            files = list(dict.fromkeys(p.file for p, _ in patches
                                       if p.file and not p.json6902))[:1]
        common = {
            "manifest_path": found.path, "api_version": plain.api_version,
            "kustomization": overlay.file, "replicas_in_kustomization": replicas_entry,
        }
        if files:
            return Source(target, "kustomize-patch", files[0], **common)  # type: ignore[arg-type]
        if own or self.layout.edit_base:
            return Source(target, "manifest", found.path, found.doc_index, found.line,
                          namespace_in_file=found.namespace, **common)  # type: ignore[arg-type]
        new = join(overlay.dir, f"dakr-{name}-resources.yaml")
        return Source(target, "kustomize-replicas" if replicas_entry else "kustomize-new-patch",
                      new, **common)  # type: ignore[arg-type]

    def _locate_node_group(self, target: Target) -> Source:
        name = target[2]
        if name in self.layout.node_groups:
            file, _, dotted = self.layout.node_groups[name].partition("#")
            return Source(target, "node-group", file, values_prefix=dotted)
        try:
            found = self._one(target)
        except errors.NotFoundError as e:
            raise errors.NotFoundError(
                f"node group {name}: no nodeGroups entry in the layout and no Cluster API "
                f"MachineDeployment named {name} ({e})") from e
        return Source(target, "node-group", found.path, found.doc_index, found.line,
                      manifest_path=found.path, namespace_in_file=found.namespace)

    def _doc(self, found: _Found) -> dict[str, Any]:
        key = (found.path, found.doc_index)
        if key not in self._docs:
            doc = splice.read_document(self._read(found.path, required=True), found.doc_index)
            if not isinstance(doc, dict):
                raise errors.PermanentError(f"{found.path}: document {found.doc_index} is gone")
            self._docs[key] = doc
        return self._docs[key]

    def observed(self, target: Target) -> dict[str, Any] | None:
        """The object as the cluster would get it from this repository (for the policy and
        the planner); None when the target cannot be located."""
        ns, kind, name = target
        try:
            source = self.locate(target)
        except errors.PermanentError:
            return None
        if source.kind == "helm-values":
            containers = []
            for cname, rpath in source.values_containers:
                res = self._values_at(rpath)
                containers.append({"name": cname,
                                   "resources": _plain(res) if isinstance(res, Mapping) else {}})
            spec: dict[str, Any] = {"template": {"spec": {"containers": containers}}}
            replicas = self._values_at(source.values_replicas)
            if isinstance(replicas, int) and not isinstance(replicas, bool):
                spec["replicas"] = replicas
            return {"apiVersion": "apps/v1", "kind": kind,
                    "metadata": {"name": name, "namespace": ns}, "spec": spec}
        if source.kind == "node-group":
            if source.values_prefix:
                text = self._read(source.path)
                if not text:
                    return None
                node: Any = values.read_values(text)
                for key in values.split_path(source.values_prefix):
                    node = node.get(key) if isinstance(node, Mapping) else None
                count = node if isinstance(node, int) and not isinstance(node, bool) else None
                return {"kind": NODE_GROUP, "metadata": {"name": name},
                        "spec": {"replicas": count}}
            return _copy_doc(self._doc(self._one(target)))
        found = self._one(target)
        obj: dict[str, Any] = _copy_doc(self._doc(found))
        if self.layout.kind != "kustomize":
            return obj
        patches = self._patches_for(target, found)
        for k in self._levels.get(found.path, []):
            # Per level, as kustomize runs them: patches first, then the replicas field.
            for kk, patch, doc in patches:
                if kk is not k:
                    continue
                if patch.json6902:
                    _apply_json6902(obj, doc if isinstance(doc, list) else [])
                elif isinstance(doc, Mapping):
                    obj = _strategic_merge(obj, doc)  # a dict merged with a dict
            if name in k.replicas and kind in ("Deployment", "StatefulSet"):
                obj.setdefault("spec", {})["replicas"] = k.replicas[name]
        obj.setdefault("metadata", {})["namespace"] = self._namespace_of(found.path,
                                                                         found.namespace)
        return obj


def _name_matches(pattern: str, name: str) -> bool:
    """Kustomize patch targets take a regular expression for the name (anchored)."""
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return pattern == name


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return str(obj) if obj is not None and not isinstance(obj, (bool, int, float)) else obj


def _copy_doc(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _deep_copy(obj)
    return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def _specific(patch: _Patch, doc: Any, kind: str, name: str) -> bool:
    """Whether a patch is about this one workload (not a selector matching many)."""
    if patch.target is not None and (patch.target.get("name") != name
                                     or patch.target.get("kind") not in (None, kind)):
        return False
    if patch.json6902:
        return patch.target is not None
    meta = doc.get("metadata") if isinstance(doc, Mapping) else None
    return isinstance(meta, Mapping) and meta.get("name") == name and doc.get("kind") == kind


def _sets_resources(doc: Any, json6902: bool) -> bool:
    if json6902:
        return isinstance(doc, list) and any(
            (isinstance(op, Mapping) and "/resources" in str(op.get("path", "")))
            or (isinstance(op, Mapping) and isinstance(op.get("value"), Mapping)
                and "resources" in str(op.get("value")))
            for op in doc)
    if not isinstance(doc, Mapping):
        return False
    return any("resources" in c for c in planner.containers_of(doc) if isinstance(c, Mapping))


_MERGE_LISTS = {"containers", "initContainers", "env", "volumes", "volumeMounts", "ports"}


def _strategic_merge(base: Any, patch: Any) -> Any:
    """The subset of strategic merge that resource and replica patches use: mappings merge
    key by key, ``null`` deletes, lists of named items (containers, env, ...) merge by
    name, other lists replace."""
    if not isinstance(base, dict) or not isinstance(patch, Mapping):
        return _deep_copy(patch)
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif k in _MERGE_LISTS and isinstance(v, list) and isinstance(out.get(k), list):
            merged = [_deep_copy(i) for i in out[k]]
            for item in v:
                name = item.get("name") if isinstance(item, Mapping) else None
                at = next((i for i, b in enumerate(merged)
                           if isinstance(b, dict) and name is not None and b.get("name") == name),
                          None)
                if at is None:
                    merged.append(_deep_copy(item))
                else:
                    merged[at] = _strategic_merge(merged[at], item)
            out[k] = merged
        else:
            out[k] = _strategic_merge(out.get(k), v)
    return out


def _apply_json6902(obj: Any, ops: Sequence[Any]) -> None:
    """add / replace / remove on plain paths (enough to see what a patch sets)."""
    for op in ops:
        if not isinstance(op, Mapping) or op.get("op") not in ("add", "replace", "remove"):
            continue
        parts = [p.replace("~1", "/").replace("~0", "~")
                 for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            continue
        node = obj
        try:
            for p in parts[:-1]:
                node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
            last = parts[-1]
            if isinstance(node, list):
                if op["op"] == "remove":
                    node.pop(int(last))
                elif last == "-":
                    node.append(_deep_copy(op.get("value")))
                elif op["op"] == "add":
                    node.insert(int(last), _deep_copy(op.get("value")))
                else:
                    node[int(last)] = _deep_copy(op.get("value"))
            elif op["op"] == "remove":
                node.pop(last, None)
            else:
                node[last] = _deep_copy(op.get("value"))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            continue
