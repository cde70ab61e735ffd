"""Where a target's values really live in a GitOps repository: the index of one batch.

A recommendation names a live object (namespace, kind, name); the repository may define
it as a plain manifest, as a Kustomize base changed by an overlay (under the name it has
before every level's namePrefix/nameSuffix, in the namespace the outermost level sets),
or only as a few keys of a Helm values file. Editing the wrong file is worse than editing
none: a change to a base shared by staging and prod changes both, a change to a value
that an overlay patch overrides changes nothing at all. So the index finds the file that
decides each value (per the repository's layout file) and tells ``render`` how to change
it.

The index is built once per batch: every YAML file is read, but only the files that
mention a target's name are parsed, and only their candidate documents. It also computes
what the cluster would get from the repository (``Index.observed``: patches and the
replicas field applied), which is what the policy and the planner judge.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from reconciler.adapters import helm as helm_lib
from reconciler.config import layout as layoutfile
from reconciler.domain import errors, lru, mappings, model, planner
from reconciler.domain import limits as limits_mod
from reconciler.domain import text as txt
from reconciler.yamledit import bounded, kustomize, splice, values

log = logging.getLogger(__name__)

Target = tuple[str, str, str]  # (namespace, kind, name)

NODE_GROUP = "NodeGroup"
MACHINE_DEPLOYMENT = "MachineDeployment"
_WORKLOAD_KINDS = model.TARGET_KINDS
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
    # kustomize: the name ``path`` gives the object ("" = the target's own name): a base
    # manifest holds it before any namePrefix/nameSuffix, an overlay patch names it as the
    # overlay sees it, before the overlay's own transformers; and the name of the overlay's
    # `replicas:` entry for it.
    name_in_file: str = ""
    replicas_name: str = ""
    values_containers: tuple[tuple[str, str], ...] = ()  # helm: (container, resources path)
    values_replicas: str = ""  # helm: dotted path of the replica count
    # helm, for the render that verifies the edit: the chart's directory ("." at the root,
    # "" when the repository holds none), the values files given to it in order (``-f``;
    # the chart's own values.yaml is its defaults, not one of them), the release and its
    # namespace.
    chart: str = ""
    values_files: tuple[str, ...] = ()
    release: str = ""
    release_namespace: str = ""
    # helm: (key, file) for keys a values file after ``path`` sets: writing them to
    # ``path`` would change nothing, and that file is not this environment's to edit.
    values_shadowed: tuple[tuple[str, str], ...] = ()
    # helm: (key, manifest, path in it) for keys the winning layer sets inline, in the
    # HelmRelease's spec.values or the Application's helm.valuesObject: edited there.
    values_redirect: tuple[tuple[str, str, str], ...] = ()
    values_inline: str = ""  # helm: the layers after the files, merged, as JSON
    # helm: those layers in order, for the render after an edit of one of them: (manifest,
    # dotted path of the mapping in it, the layer as JSON); manifest "" for a layer the
    # writer does not edit.
    values_inline_layers: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Stats:
    files_seen: int = 0
    files_parsed: int = 0
    discovery_renders: int = 0  # chart renders that found values paths (see _discover)


@dataclass
class _Found:
    path: str
    doc_index: int
    line: int
    namespace: str | None  # as written in the document
    name: str = ""  # as written in the document (kustomize: before any name transformer)


@dataclass
class _Patch:
    owner: str  # the kustomization file that lists it
    file: str  # repo-relative; "" for an inline patch
    text: str  # inline patch text, or the file's text once read
    target: Mapping[str, Any] | None
    json6902: bool = False
    docs: list[Any] | None = None  # parsed once, when a batch target needs it
    # Listed under patchesJson6902: kustomize runs those after its level's namePrefix/
    # nameSuffix, so their target names the object with them.
    late: bool = False


@dataclass
class _Kust:
    """One kustomization (or component) and the transformers it runs over what it holds."""

    dir: str
    file: str
    namespace: str | None
    manifests: list[str]
    children: list[_Kust]
    patches: list[_Patch]
    replicas: dict[str, int]
    name_prefix: str = ""
    name_suffix: str = ""
    components: list[_Kust] = field(default_factory=list)  # in the order kustomize runs them

    def expanded(self) -> list[_Kust]:
        """The levels that run over this kustomization's resources, in order: each
        component (its own components first) after the resources are gathered, then the
        kustomization's own transformers."""
        return [*(x for c in self.components for x in c.expanded()), self]


def _names_along(chain: Sequence[_Kust], name: str) -> list[str]:
    """The names an object has on its way out: ``[0]`` as written, ``[i + 1]`` after
    ``chain[i]``'s namePrefix/nameSuffix (levels inner first: outer prefix + inner prefix +
    name + inner suffix + outer suffix, as ``kubectl kustomize`` builds it)."""
    out = [name]
    for k in chain:
        out.append(k.name_prefix + out[-1] + k.name_suffix)
    return out


def _strip_affixes(live: str, chain: Sequence[_Kust]) -> str | None:
    """The name a manifest under ``chain`` must give an object the cluster calls ``live``;
    None when no name can come out as ``live`` (the prefixes or suffixes do not fit)."""
    prefix = "".join(k.name_prefix for k in reversed(chain))
    suffix = "".join(k.name_suffix for k in chain)
    if len(live) <= len(prefix) + len(suffix) or not (live.startswith(prefix)
                                                      and live.endswith(suffix)):
        return None
    return live[len(prefix):len(live) - len(suffix)]


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
                 limits: limits_mod.InputLimits = limits_mod.DEFAULT,
                 repository: Sequence[str] = ()) -> None:
        self.root = root
        self.layout = layout
        self.repository = tuple(repository)  # this repository's clone URL, owner/name
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
        self._helm: _Helm | None = None  # a Helm layout's chart and values layers
        self._discovered: dict[str, _Discovery] = {}  # release namespace -> what probes found

    # ---- building

    @classmethod
    def build(cls, root: Path, layout: layoutfile.Layout, targets: Iterable[Target],
              limits: limits_mod.InputLimits = limits_mod.DEFAULT,
              repository: Sequence[str] = ()) -> Index:
        """Scan the repository once for all ``targets``.

        Every YAML file in scope is read; only those that mention a target's name are
        parsed, and only the documents that can define one of the wanted kinds.
        ``repository``: how this repository is named (its clone URL, its forge
        ``owner/name``), to tell which sources of an Argo CD Application are this one.
        """
        self = cls(root, layout, limits, repository)
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
            self._helm = self._helm_setup()
            self._values = helm_lib.merge_values([data for _, data in self._helm.layers
                                                  if not isinstance(data, _Opaque)])
            workloads = set()
        if layout.kind == "kustomize" and workloads:
            self._overlay = self._load_kustomization(layout.overlay, set())
            self._assign_levels(self._overlay, [])
            files = list(self._levels)
        else:
            files = [f for p in layout.paths for f in _yaml_files(root, p)] if (
                workloads or node_groups) else []
        self._scan(files, workloads, set(_WORKLOAD_KINDS) | {t[1] for t in workloads})
        # Patches name an object as their level sees it: every name it has on the way out.
        for found in self._found.values():
            for f in found:
                self._names.update(_names_along(self._levels.get(f.path, []), f.name))
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
        # By the name a file must hold: under a kustomization with a namePrefix/nameSuffix,
        # the live name without them (one lookup per distinct chain of levels).
        lookups: dict[tuple[int, ...], tuple[set[str], dict[tuple[str, str], list[Target]]]] = {}
        for rel in files:
            chain = self._levels.get(rel, [])
            ident = tuple(id(k) for k in chain)
            if ident not in lookups:
                by_name: dict[tuple[str, str], list[Target]] = {}
                for t in wanted:
                    written = _strip_affixes(t[2], chain)
                    if written is not None:
                        by_name.setdefault((t[1], written), []).append(t)
                lookups[ident] = ({n for _, n in by_name}, by_name)
            self._scan_file(rel, kinds, *lookups[ident])

    def _scan_file(self, rel: str, kinds: set[str], names: set[str],
                   by_name: Mapping[tuple[str, str], list[Target]]) -> None:
        self.stats.files_seen += 1
        if not names:
            return
        try:
            text = (self.root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        if names.isdisjoint(_NAME.findall(text)):
            return
        self.stats.files_parsed += 1
        try:
            bounded.check_yaml(text, self.limits, rel)
            found = splice.scan_documents(text, kinds, names)
        except errors.PermanentError as e:
            log.warning("skipping %s: %s", txt.one_line(rel), txt.one_line(str(e)))
            return
        self._texts[rel] = text
        for ref, data in found:
            if isinstance(data, dict):
                self._docs[(rel, ref.doc_index)] = data
            ns = self._namespace_of(rel, ref.namespace)
            for t in by_name.get((ref.kind, ref.name), []):
                if t[0] == ns or t[1] == MACHINE_DEPLOYMENT:
                    self._found.setdefault(t, []).append(
                        _Found(rel, ref.doc_index, ref.line, ref.namespace, ref.name))

    def _namespace_of(self, rel: str, own: str | None) -> str:
        """The namespace a document deploys to: the outermost kustomization's ``namespace:``
        wins over inner ones and over the document's own."""
        ns = own
        for k in self._levels.get(rel, []):
            if k.namespace:
                ns = k.namespace
        return ns or self.layout.default_namespace

    def _load_kustomization(self, rel_dir: str, seen: set[str]) -> _Kust:
        """The kustomization (or component) in ``rel_dir`` with its nested kustomizations
        and components; which levels run over which manifest is ``_assign_levels``'s."""
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
        prefix, suffix = data.get("namePrefix"), data.get("nameSuffix")
        k = _Kust(rel_dir, file, ns if isinstance(ns, str) and ns else None, [], [], [],
                  kustomize.kustomize_replicas(text),
                  prefix if isinstance(prefix, str) else "",
                  suffix if isinstance(suffix, str) else "")
        for entry in [*(data.get("resources") or []), *(data.get("bases") or [])]:
            if not isinstance(entry, str) or "://" in entry or entry.startswith(("git@", "http")):
                continue  # remote bases cannot be edited from here
            rel = join(rel_dir, entry)
            if (self.root / rel).is_dir():
                k.children.append(self._load_kustomization(rel, seen))
            elif (self.root / rel).is_file():
                k.manifests.append(rel)
        for entry in data.get("components") or []:
            if isinstance(entry, str) and "://" not in entry and not entry.startswith(
                    ("git@", "http")) and (self.root / join(rel_dir, entry)).is_dir():
                k.components.append(self._load_kustomization(join(rel_dir, entry), seen))
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
                k.patches.append(_Patch(file, join(rel_dir, entry["path"]), "", target, True,
                                        late=True))
        # Kustomize's order: patchesStrategicMerge, patches, patchesJson6902; and outer
        # levels' patches run after inner ones: record inner first.
        self._patches.extend((k, p) for p in k.patches)
        return k

    def _assign_levels(self, k: _Kust, outer: list[_Kust]) -> None:
        """Record, for every manifest under ``k``, the levels that transform it in the
        order kustomize runs them (inner first; ``outer``: what runs over all of ``k``'s
        output). A component runs over everything its kustomization gathered before it,
        its own resources included, and before the kustomization's own transformers."""
        after = [*k.expanded(), *outer]
        for rel in k.manifests:
            self._levels.setdefault(rel, []).extend(after)
        for child in k.children:
            self._assign_levels(child, after)
        for i, comp in enumerate(k.components):
            later = [x for c in k.components[i + 1:] for x in c.expanded()]
            self._assign_levels(comp, [*later, k, *outer])

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
        target's manifest, in the order kustomize applies them.

        A level's patch names the object as that level sees it (``_patch_names``): its name
        as written or as the inner levels' namePrefix/nameSuffix left it."""
        _, kind, _ = target
        chain = self._levels.get(found.path, [])
        at = {id(k): i for i, k in enumerate(chain)}
        names = _names_along(chain, found.name or target[2])
        by_name, generic = self._patch_index()
        hits: list[tuple[tuple[int, int], _Kust, _Patch, Any]] = []
        for candidate in dict.fromkeys(names):
            for order, k, patch, doc in by_name.get(candidate, []):
                if id(k) not in at or candidate not in _patch_names(patch, names, at[id(k)]):
                    continue
                if patch.target is not None and patch.target.get("kind") not in (None, kind):
                    continue
                if patch.target is None and (not isinstance(doc, Mapping)
                                             or doc.get("kind") != kind):
                    continue
                hits.append(((at[id(k)], order), k, patch, doc))
        for order, k, patch in generic:
            assert patch.target is not None
            tk, tn = patch.target.get("kind"), patch.target.get("name")
            if id(k) not in at or (tk is not None and tk != kind):
                continue
            if tn is not None and not any(_name_matches(str(tn), n)
                                          for n in _patch_names(patch, names, at[id(k)])):
                continue
            if "labelSelector" in patch.target or "annotationSelector" in patch.target:
                continue  # selectors on labels are not resolved here
            docs = self._patch_docs(patch)
            if patch.json6902:
                hits.append(((at[id(k)], order), k, patch, docs[0] if docs else []))
            else:
                hits.extend(((at[id(k)], order), k, patch, doc) for doc in docs)
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
        helm = self._helm
        if helm is None or not helm.chart:
            raise errors.NotFoundError(
                f"{kind}/{name} has no values path in the layout (looked for "
                f"{', '.join(repr(k) for k in keys)} under valuesPaths), and no chart in "
                "the repository to find it in")
        found = self._discover(helm.namespace or ns)
        containers = found.containers.get((kind, name), {})
        replicas = found.replicas.get((kind, name), "")
        if not containers and not replicas:
            raise errors.NotFoundError(
                f"{kind}/{name}: no values key of chart {helm.chart} reaches its container "
                f"resources or replica count (probed {found.probes} keys in one render); "
                f"set valuesPaths for {name!r} in the layout")
        first = next(iter(containers.values()), replicas)
        prefix = values.join_path(values.split_path(first, root=True)[:-1])
        return layoutfile.ValuesPath(prefix, dict(containers),
                                     replicas or values.child_path(prefix, "replicaCount"))

    def _discover(self, namespace: str) -> _Discovery:
        """Which values key feeds each workload's container resources and replica count:
        the chart rendered once (through the real Helm library, with the values files,
        release and namespace that verification uses) with a distinct probe in every
        candidate key (every ``resources`` mapping, every integer ``replicaCount`` or
        ``replicas``, at any depth, subcharts' defaults included), then read back from the
        rendered workloads (every kind a recommendation targets). Kept per chart (by the
        digest of its files, values and release) across batches."""
        if namespace in self._discovered:
            return self._discovered[namespace]
        helm = self._helm
        assert helm is not None
        merged = self._with_subchart_defaults(helm.chart)
        base = helm_lib.merge_values([data for _, data in helm.layers
                                      if not isinstance(data, _Opaque)])
        release = helm.release or "release"
        digest = self._chart_digest(helm, release, namespace)
        found = _DISCOVERIES.get(digest)
        if found is None:
            res_paths: list[tuple[str, ...]] = []
            rep_paths: list[tuple[str, ...]] = []
            _candidates(merged, (), res_paths, rep_paths)
            probe: dict[str, Any] = {}
            cpu_of: dict[str, str] = {}
            count_of: dict[int, str] = {}
            for i, path in enumerate(res_paths):
                node = mappings.at(merged, path)
                requests = node.get("requests") if isinstance(node, Mapping) else None
                if requests is not None and not isinstance(requests, Mapping):
                    continue
                cpu = f"{_PROBE_CPU + i}m"
                cpu_of[cpu] = values.join_path(path)
                _put(probe, (*path, "requests", "cpu"), cpu)
            for i, path in enumerate(rep_paths):
                count_of[_PROBE_REPLICAS + i] = values.join_path(path)
                _put(probe, path, _PROBE_REPLICAS + i)
            try:
                self.stats.discovery_renders += 1
                rendered = helm_lib.render_each(
                    self.root / helm.chart, [mappings.deep_merge(base, probe)], release=release,
                    namespace=namespace)[0]
            except errors.PermanentError as e:
                raise errors.NotFoundError(
                    f"the values paths of chart {helm.chart} cannot be found by a render "
                    f"({e}); set valuesPaths in the layout") from e
            found = _read_probes(rendered, cpu_of, count_of, len(cpu_of) + len(count_of))
            _DISCOVERIES.put(digest, found)
        self._discovered[namespace] = found
        self._values = merged  # subcharts' defaults seen too (observed, prefix checks)
        return found

    def _with_subchart_defaults(self, chart: str) -> dict[str, Any]:
        """The merged values with each subchart's own values.yaml (charts/<dir>) under its
        chart name, beneath what the parent's layers set (Helm coalesces them so)."""
        subs: dict[str, Any] = {}
        charts = self.root / chart / "charts"
        if charts.is_dir():
            for d in sorted(charts.iterdir()):
                if not (d / "Chart.yaml").is_file():
                    continue
                rel = join(chart, f"charts/{d.name}")
                meta = values.read_values(self._read(join(rel, "Chart.yaml")))
                name = meta.get("name") if isinstance(meta, Mapping) else None
                data = values.read_values(self._read(join(rel, "values.yaml")))
                if isinstance(name, str) and isinstance(data, Mapping):
                    subs[name] = data
        return mappings.deep_merge(subs, self._values or {})

    def _chart_digest(self, helm: _Helm, release: str, namespace: str) -> str:
        return helm_lib.chart_digest(
            self.root / helm.chart,
            repr((helm.chart, helm.files, release, namespace, helm.inline)).encode(),
            *(rel.encode() + b"\0" + json.dumps(
                data if not isinstance(data, _Opaque) else repr(data), sort_keys=True,
                default=str).encode() for rel, data in helm.layers))

    def _values_at(self, dotted: str) -> Any:
        """The value at a values path ("" is the whole file); None where it is not set."""
        return mappings.at(self._values, values.split_path(dotted, root=True))

    def _replicas_path(self, vp: layoutfile.ValuesPath) -> str:
        """The replica count's path: as configured, or, when the layout left it to its
        default (``<prefix>.replicas``) and the file sets ``<prefix>.replicaCount`` instead
        (as every chart from ``helm create`` does), that key: writing ``replicas`` beside
        it would change a key no template reads."""
        if not vp.replicas_default or self._values_at(vp.replicas) is not None:
            return vp.replicas
        chart_own = values.child_path(vp.prefix, "replicaCount")
        return chart_own if self._values_at(chart_own) is not None else vp.replicas

    def _helm_setup(self) -> _Helm:
        """How the cluster renders the chart of a Helm layout, and every values layer in
        Helm's order (the chart's values.yaml, the ``-f`` files, an Argo CD Application's
        inline values).

        The chart: the layout's ``chart``, else the Application's ``spec.source.path``,
        else the nearest directory above the values file that holds a Chart.yaml ("" when
        none does: the chart lives elsewhere). The files: ``valuesFiles``, else the
        Application's ``helm.valueFiles``, else ``valuesFile``. The release: the layout's
        ``releaseName``, else the Application's (its ``helm.releaseName``, else its name),
        else the chart's name; the namespace likewise (the Application's destination)."""
        lay = self.layout
        chart, release, namespace = lay.chart, lay.release_name, lay.namespace
        files = list(lay.values_files)
        inline: list[tuple[str, Any]] = []
        inline_at: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
        app: _ArgoHelm | None = None
        if lay.application:
            app = _argo_helm(lay.application, self._read(lay.application, required=True),
                             self.repository)
        elif lay.helm_release:
            app = _flux_helm(lay.helm_release, self._read(lay.helm_release, required=True),
                             self._configmap)
        if app is not None:
            chart = chart or app.chart
            files = files or list(app.files)
            release = release or app.release
            namespace = namespace or app.namespace
            inline = list(app.inline)
            inline_at = app.inline_at
        own = lay.values_file or (files[-1] if files else join(chart or ".", "values.yaml"))
        files = files or [own]
        if not chart and not (app is not None and app.chart_elsewhere):
            parts = PurePosixPath(own).parts[:-1]
            chart = next(("/".join(parts[:n]) or "." for n in range(len(parts), -1, -1)
                          if (self.root / "/".join(parts[:n]) / "Chart.yaml").is_file()), "")
        elif chart:
            chart = join(chart, "") or "."  # one spelling: "./charts/x/" is "charts/x"
        if not release and chart:
            meta = values.read_values(self._read(join(chart, "Chart.yaml")))
            name = meta.get("name") if isinstance(meta, Mapping) else None
            release = name if isinstance(name, str) else ""
        defaults = join(chart, "values.yaml") if chart else ""
        if app is not None and app.replaces_defaults and files and defaults not in files:
            raise errors.ConfigError(
                f"layout: helmRelease {lay.helm_release}: spec.chart.spec.valuesFiles does "
                f"not list the chart's {defaults}: Flux then drops the chart's defaults, "
                "which the writer does not render; list it first")
        names = ([defaults] if defaults and defaults not in files
                 and (self.root / defaults).is_file() else []) + files
        layers: list[tuple[str, Any]] = []
        for rel in names:
            data = values.read_values(self._read(rel, required=True))
            self.stats.files_seen += 1
            self.stats.files_parsed += 1
            if data is None:
                data = {}
            if not isinstance(data, Mapping):
                raise errors.PermanentError(f"{rel} does not hold a mapping")
            layers.append((rel, data))
        if own not in names:
            raise errors.NotFoundError(f"{own} is not one of the values files the cluster "
                                       f"uses ({', '.join(names)})")
        return _Helm(chart, release, namespace, own,
                     tuple(f for f in files if f != defaults), [*layers, *inline],
                     json.dumps(helm_lib.merge_values([data for _, data in inline
                                                       if not isinstance(data, _Opaque)]),
                                sort_keys=True, default=str) if inline else "", inline_at,
                     len(layers))

    def _configmap(self, near: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ``data`` of ConfigMap ``name`` (in ``namespace``, or with none) from a
        manifest in the directory of ``near`` or below it; None when there is none."""
        parent = PurePosixPath(near).parent.as_posix()
        for rel in _yaml_files(self.root, "" if parent == "." else parent):
            try:  # a file that is too big or not YAML holds no ConfigMap for this
                text = self._read(rel)
                if "ConfigMap" not in text or name not in text:
                    continue
                docs = bounded.load_yaml(text, self.limits, rel)
            except errors.ReconcilerError:
                continue
            for doc in docs:
                meta = doc.get("metadata") if isinstance(doc, Mapping) else None
                if (isinstance(meta, Mapping) and doc.get("kind") == "ConfigMap"
                        and meta.get("name") == name
                        and meta.get("namespace", namespace) in (namespace, "")
                        and isinstance(doc.get("data"), Mapping)):
                    return {"file": rel, "data": doc["data"]}
        return None

    def _shadowed(self, keys: Iterable[str]) -> tuple[tuple[tuple[str, str], ...],
                                                     tuple[tuple[str, str, str], ...]]:
        """(key, file) for each of ``keys`` that a layer after the environment's own file
        sets (that layer's value wins over anything written to the own file), and (key,
        manifest, path in it) for those whose winning layer is a mapping written inline in
        this environment's HelmRelease or Application, which is edited instead."""
        helm = self._helm
        assert helm is not None
        at = next(i for i, (rel, _) in enumerate(helm.layers) if rel == helm.own)
        editable = {label: (file, prefix) for label, file, prefix in helm.inline_at}
        out: list[tuple[str, str]] = []
        redirect: list[tuple[str, str, str]] = []
        for key in keys:
            path = values.split_path(key, root=True)
            for rel, data in reversed(helm.layers[at + 1:]):
                if isinstance(data, _Opaque):
                    n = min(len(path), len(data.path or ()))
                    if data.path is None or path[:n] == data.path[:n]:
                        out.append((key, rel))
                        break
                    continue
                if mappings.at(data, path) is not None:
                    if rel in editable:
                        file, prefix = editable[rel]
                        redirect.append((key, file, values.join_path((*prefix, *path))))
                    else:
                        out.append((key, rel))
                    break
        return tuple(out), tuple(redirect)

    def _inline_layers(self) -> tuple[tuple[str, str, str], ...]:
        """The layers after the files as ``Source.values_inline_layers`` has them."""
        helm = self._helm
        assert helm is not None
        editable = {label: (file, prefix) for label, file, prefix in helm.inline_at}
        out = []
        for rel, data in helm.layers[helm.inline_from:]:
            if isinstance(data, _Opaque):
                continue
            file, prefix = editable.get(rel, ("", ()))
            out.append((file, values.join_path(prefix) if prefix else "",
                        json.dumps(data, sort_keys=True, default=str)))
        return tuple(out)

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
            helm = self._helm
            assert helm is not None
            vp = self._values_path(target)
            configured = any(vp is v for v in self.layout.values_paths.values())
            if configured and not isinstance(self._values_at(vp.prefix), Mapping):
                raise errors.NotFoundError(
                    f"{', '.join(rel for rel, _ in helm.layers)} set no mapping at "
                    f"{vp.prefix or 'the top level'} for {kind}/{name}")
            replicas = self._replicas_path(vp)
            keys = [values.child_path(r, section, res) for r in vp.containers.values()
                    for section in ("requests", "limits") for res in _RESOURCE_NAMES]
            shadowed, redirect = self._shadowed([*keys, replicas])
            return Source(target, "helm-values", helm.own,
                          values_prefix=vp.prefix, values_containers=tuple(vp.containers.items()),
                          values_replicas=replicas, chart=helm.chart,
                          values_files=helm.files, release=helm.release,
                          release_namespace=helm.namespace or target[0],
                          values_shadowed=shadowed, values_redirect=redirect,
                          values_inline=helm.inline,
                          values_inline_layers=self._inline_layers())
        found = self._one(target)
        doc = self._doc(found)
        plain = Source(target, "manifest", found.path, found.doc_index, found.line,
                       manifest_path=found.path, namespace_in_file=found.namespace,
                       api_version=str(doc.get("apiVersion", "")))
        if self.layout.kind != "kustomize" or self._overlay is None:
            return plain
        overlay = self._overlay
        # A manifest the overlay lists from its own directory is its own; one it takes
        # from elsewhere (``../guestbook/app.yaml``) may be another application's too, and
        # is left alone like a base.
        own = found.path in overlay.manifests and (
            not overlay.dir or found.path.startswith(overlay.dir + "/"))
        # The names the object has on its way out of the overlay: the overlay's patches
        # see it as ``names[level]`` (its bases' and components' namePrefix/nameSuffix
        # applied, not the overlay's own); its `replicas:` field runs last and finds it
        # by any of them.
        chain = self._levels.get(found.path, [])
        level = len(chain) - 1 if chain and chain[-1] is overlay else 0
        names = _names_along(chain, found.name or name)
        replicas_name = next((n for n in names[: level + 2] if n in overlay.replicas), "")
        replicas_entry = bool(replicas_name)
        # Only a patch written for exactly this workload may be edited: one whose target
        # selects several workloads would change them all. Such a shared patch is left as
        # it is and overridden by a new patch listed after it (in `patches:`, which runs
        # after patchesStrategicMerge; patchesJson6902 runs after both).
        mine = [(k, p, d) for k, p, d in self._patches_for(target, found) if k is overlay]
        patches = [(p, d) for _, p, d in mine
                   if _specific(p, d, kind, _patch_names(p, names, level), set(names))]
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
            "replicas_name": replicas_name if replicas_name != name else "",
        }

        def named(in_file: str) -> dict[str, Any]:
            return {**common, "name_in_file": in_file if in_file != name else ""}

        if files:
            # The patch document names the object in its own way (any earlier name, or
            # anything at all under a target): edit the document that matched.
            in_patch = next((str(d["metadata"]["name"]) for p, d in patches
                             if p.file == files[0] and isinstance(d, Mapping)
                             and isinstance(d.get("metadata"), Mapping)
                             and d["metadata"].get("name")), names[level])
            return Source(target, "kustomize-patch", files[0], **named(in_patch))
        if own or self.layout.edit_base:
            return Source(target, "manifest", found.path, found.doc_index, found.line,
                          namespace_in_file=found.namespace, **named(names[0]))
        new = join(overlay.dir, f"dakr-{names[level]}-resources.yaml")
        return Source(target, "kustomize-replicas" if replicas_entry else "kustomize-new-patch",
                      new, **named(names[level]))

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
                node = mappings.at(values.read_values(text),
                                   values.split_path(source.values_prefix))
                count = node if isinstance(node, int) and not isinstance(node, bool) else None
                return {"kind": NODE_GROUP, "metadata": {"name": name},
                        "spec": {"replicas": count}}
            return _copy_doc(self._doc(self._one(target)))
        found = self._one(target)
        obj: dict[str, Any] = _copy_doc(self._doc(found))
        if self.layout.kind != "kustomize":
            return obj
        patches = self._patches_for(target, found)
        chain = self._levels.get(found.path, [])
        names = _names_along(chain, found.name or name)
        for level, k in enumerate(chain):
            # Per level, as kustomize runs them: patches first, then the replicas field
            # (which finds the object by any name it had, its own level's included).
            for kk, patch, doc in patches:
                if kk is not k:
                    continue
                if patch.json6902:
                    _apply_json6902(obj, doc if isinstance(doc, list) else [])
                elif isinstance(doc, Mapping):
                    obj = _strategic_merge(obj, doc)  # a dict merged with a dict
            entry = next((n for n in names[: level + 2] if n in k.replicas), None)
            if entry is not None and kind in ("Deployment", "StatefulSet"):
                obj.setdefault("spec", {})["replicas"] = k.replicas[entry]
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = self._namespace_of(found.path, found.namespace)
        meta["name"] = names[-1]  # a patch under a target may carry any name
        return obj


def _patch_names(patch: _Patch, names: Sequence[str], level: int) -> set[str]:
    """The names by which a patch of ``chain[level]`` finds the object (``names`` as
    ``_names_along`` gives them), as kustomize v5 matches them: a patch with a target by
    the object's original name or its name before this level's own namePrefix/nameSuffix
    (after them for patchesJson6902, which runs later); a strategic-merge patch without a
    target by any name the object had before this level's transformers."""
    if patch.target is not None:
        return {names[0], names[level + 1] if patch.late else names[level]}
    return set(names[: level + 1])


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


def _specific(patch: _Patch, doc: Any, kind: str, names: Collection[str],
              any_names: Collection[str]) -> bool:
    """Whether a patch is about this one workload (not a selector matching many): its
    target, or its document without one, names the workload as the patch's level sees it
    (``names``); a document under a target holds one of the workload's names too
    (``any_names``), the one ``render`` finds it by."""
    if patch.target is not None and (patch.target.get("name") not in names
                                     or patch.target.get("kind") not in (None, kind)):
        return False
    if patch.json6902:
        return patch.target is not None
    meta = doc.get("metadata") if isinstance(doc, Mapping) else None
    allowed = any_names if patch.target is not None else names
    return isinstance(meta, Mapping) and meta.get("name") in allowed and doc.get("kind") == kind


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


# --------------------------------------------------------------------------- helm

_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage", "nvidia.com/gpu")
# Probes of values-path discovery: CPU requests 1001m, 1002m...; replica counts 90001...
_PROBE_CPU = 1001
_PROBE_REPLICAS = 90001
_REPLICA_KEYS = ("replicaCount", "replicas")


@dataclass(frozen=True)
class _Discovery:
    """What one probe render found: (kind, name) -> {container: resources path}, and
    (kind, name) -> replica count path."""

    containers: Mapping[tuple[str, str], Mapping[str, str]]
    replicas: Mapping[tuple[str, str], str]
    probes: int


# chart digest -> discovery, kept across batches (a chart rarely changes between two)
_DISCOVERIES: lru.Lru[str, _Discovery] = lru.Lru(256)


def forget_discoveries() -> None:
    """Drop the discoveries kept across batches (a benchmark's cold start, tests)."""
    _DISCOVERIES.clear()


def _candidates(node: Mapping[str, Any], at: tuple[str, ...],
                res: list[tuple[str, ...]], rep: list[tuple[str, ...]]) -> None:
    for k, v in node.items():
        key = str(k)
        if key == "resources" and (v is None or isinstance(v, Mapping)):
            res.append((*at, key))
        elif (key in _REPLICA_KEYS and isinstance(v, int) and not isinstance(v, bool)):
            rep.append((*at, key))
        elif isinstance(v, Mapping):
            _candidates(v, (*at, key), res, rep)


def _put(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _read_probes(rendered: Mapping[str, str], cpu_of: Mapping[str, str],
                 count_of: Mapping[int, str], probes: int) -> _Discovery:
    containers: dict[tuple[str, str], dict[str, str]] = {}
    replicas: dict[tuple[str, str], str] = {}
    for template, text in sorted(rendered.items()):
        # Parsing is most of a discovery's cost: a template whose text names no workload
        # kind (a Service, an Ingress, NOTES.txt) cannot hold a probe.
        if template.endswith("NOTES.txt") or not any(k in text for k in _WORKLOAD_KINDS):
            continue
        try:
            docs = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, Mapping) or doc.get("kind") not in _WORKLOAD_KINDS:
                continue
            meta, spec = doc.get("metadata"), doc.get("spec")
            if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
                continue
            key = (str(doc["kind"]), str(meta.get("name")))
            n = spec.get("replicas")
            if isinstance(n, int) and n in count_of:
                replicas[key] = count_of[n]
            pod = mappings.at(spec, ("template", "spec"))
            for c in (pod.get("containers") or []) if isinstance(pod, Mapping) else []:
                cpu = mappings.at(c, ("resources", "requests", "cpu"))
                if isinstance(c, Mapping) and isinstance(cpu, str) and cpu in cpu_of:
                    containers.setdefault(key, {})[str(c.get("name"))] = cpu_of[cpu]
    return _Discovery(containers, replicas, probes)


@dataclass(frozen=True)
class _Helm:
    """A Helm layout as the cluster renders it (see ``Index._helm_setup``)."""

    chart: str
    release: str
    namespace: str
    own: str  # the environment's own values file: where edits go
    files: tuple[str, ...]  # the ``-f`` files in order (the chart's values.yaml aside)
    layers: list[tuple[str, Any]]  # every values layer in Helm's order: (name, mapping)
    inline: str  # the Application's inline values (given after the files), as JSON
    inline_at: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # see _ArgoHelm
    inline_from: int = 0  # where in ``layers`` the inline layers begin


@dataclass(frozen=True)
class _Opaque:
    """A values layer the writer cannot read (a Flux ``valuesFrom`` Secret, or a ConfigMap
    whose manifest is not in the repository): it may set any key under ``path`` (None =
    anywhere), so a key there is not written to a file it would override."""

    path: tuple[str, ...] | None


@dataclass(frozen=True)
class _ArgoHelm:
    """A Helm release as an Argo CD Application or a Flux HelmRelease declares it."""

    chart: str
    files: tuple[str, ...]
    release: str
    namespace: str
    inline: tuple[tuple[str, Any], ...]  # layers after the files, in order
    replaces_defaults: bool = False  # Flux: the files replace the chart's values.yaml
    chart_elsewhere: bool = False  # Argo CD: a chart from a Helm or another Git repository
    # Inline layers written as a mapping in the manifest: label -> (manifest, the path of
    # the mapping in it), so that a key such a layer sets is edited there.
    inline_at: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


def _argo_helm(rel: str, text: str, repository: Sequence[str] = ()) -> _ArgoHelm:
    """What an Argo CD Application says about its Helm source: the chart's path, the
    value files (relative to it, in order), the release name (``helm.releaseName``, else
    the Application's name), the destination namespace and the inline values
    (``helm.valuesObject``, else ``helm.values``), which Argo CD gives after the files.

    An Application with one ``source`` is taken to deploy from this repository (the one
    its file lives in). One with several ``sources`` names its repositories: exactly one
    source renders a chart (``helm`` or ``chart``), and a ``$<ref>/path`` value file is
    read from the source with that ``ref`` when it is this repository (``repository``,
    see ``names``: the writer's clone URL and forge ``owner/name``; when neither is
    known, the one Git repository all its ``path`` and ``ref`` sources name). A chart
    from a Helm repository or another Git repository is not in this repository: the
    files are still edited, and rendering says it cannot render it."""
    app = values.read_values(text)
    spec = app.get("spec") if isinstance(app, Mapping) else None
    if not isinstance(spec, Mapping) or app.get("kind") != "Application":
        raise errors.ConfigError(f"layout: application {rel} is not an Argo CD Application")
    source = spec.get("source")
    if isinstance(source, Mapping):
        if not isinstance(source.get("path"), str):
            raise errors.ConfigError(f"layout: application {rel} has no spec.source.path "
                                     "(a chart from a Helm repository is read only from "
                                     "spec.sources, beside a ref to this repository)")
        chart, elsewhere, refs = join("", source["path"]) or ".", False, dict[str, bool]()
    else:
        source, chart, elsewhere, refs = _argo_sources(rel, spec.get("sources"), repository)
    raw_helm = source.get("helm")
    helm: Mapping[str, Any] = raw_helm if isinstance(raw_helm, Mapping) else {}
    files: list[str] = []
    for f in helm.get("valueFiles") or []:
        if isinstance(f, str) and f.startswith("$") and f[1:].partition("/")[0] in refs:
            name, _, path = f[1:].partition("/")
            if not refs[name]:
                raise errors.ConfigError(
                    f"layout: application {rel}: value file {f!r} is in another repository "
                    f"(source ref {name!r}), not in this one")
            files.append(join("", path))
        elif not isinstance(f, str) or f.startswith("$") or "://" in f or elsewhere:
            raise errors.ConfigError(f"layout: application {rel}: value file {f!r} is not a "
                                     "file of this repository")
        else:
            files.append(join(chart, f))
    raw_meta, raw_dest = app.get("metadata"), spec.get("destination")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    dest: Mapping[str, Any] = raw_dest if isinstance(raw_dest, Mapping) else {}
    release = helm.get("releaseName") or meta.get("name") or ""
    inline: list[tuple[str, Any]] = []
    at: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    obj = helm.get("valuesObject")
    if isinstance(obj, Mapping) and source is spec.get("source"):  # not in a list
        at = ((f"{rel} (helm.values)", rel, ("spec", "source", "helm", "valuesObject")),)
    if obj is None and isinstance(helm.get("values"), str):
        obj = values.read_values(helm["values"])  # a string: edited by hand only
    if isinstance(obj, Mapping):
        inline.append((f"{rel} (helm.values)", obj))
    return _ArgoHelm("" if elsewhere else chart, tuple(files), str(release),
                     str(dest.get("namespace") or ""), tuple(inline),
                     chart_elsewhere=elsewhere, inline_at=at)


def _argo_sources(rel: str, sources: Any, repository: Sequence[str]
                  ) -> tuple[Mapping[str, Any], str, bool, dict[str, bool]]:
    """(the source that renders the chart, its path in this repository, whether the
    chart is elsewhere, ref name -> whether that ref is this repository) of a
    multi-source Application; ConfigError naming it otherwise."""
    where = f"layout: application {rel}"
    entries = [e for e in sources if isinstance(e, Mapping)] if isinstance(sources, list) else []
    if not entries:
        raise errors.ConfigError(f"{where} has neither spec.source nor spec.sources")
    charts = [e for e in entries if "helm" in e or "chart" in e]
    if len(charts) != 1:
        raise errors.ConfigError(
            f"{where}: {len(charts)} of its sources render a Helm chart (helm or chart); "
            "the writer reads an Application with exactly one")
    git_urls = {_repo_key(str(e.get("repoURL") or "")) for e in entries
                if ("path" in e or "ref" in e) and "chart" not in e}
    mine = {_repo_key(r) for r in repository} - {""}

    def ours(key: str) -> bool:  # an owner/name identity matches any host
        return key in mine or any(key.endswith("/" + m) for m in mine)

    def here(url: str) -> bool:
        key = _repo_key(url)
        return ours(key) if mine else len(git_urls) == 1 and key in git_urls

    source = charts[0]
    refs = {str(e["ref"]): here(str(e.get("repoURL") or ""))
            for e in entries if isinstance(e.get("ref"), str)}
    path = source.get("path")
    if "chart" in source or not isinstance(path, str) or not here(str(source.get("repoURL")
                                                                       or "")):
        return source, "", True, refs
    return source, join("", path) or ".", False, refs


def names(clone_url: str, forge_repo: str) -> tuple[str, ...]:
    """How this repository is named where an Argo CD Application could name it: its clone
    URL when it is a remote one (a local path is no name an Application uses), and its
    forge ``owner/name``. Empty: not known, and an Application whose sources name one
    Git repository is taken to name this one."""
    remote = ("://" in clone_url and not clone_url.startswith("file://")) or bool(
        re.match(r"^[\w.-]+@[\w.-]+:", clone_url))
    return tuple(n for n in (clone_url if remote else "", forge_repo) if n)


def _repo_key(url: str) -> str:
    """A repository URL in one spelling, to tell whether two name the same repository:
    no scheme or user, ``host/path`` for an scp-like ``git@host:path``, no trailing ``/``
    or ``.git``, lower case."""
    u = url.strip().lower()
    u = re.sub(r"^[a-z][a-z0-9+.-]*://", "", u)
    u = re.sub(r"^[^/@]+@", "", u)
    if re.match(r"^[^/:]+:(?!\d+/)", u):
        u = u.replace(":", "/", 1)
    u = u.rstrip("/")
    return u[:-4] if u.endswith(".git") else u


_FLUX_API = "helm.toolkit.fluxcd.io/"
ConfigMapReader = Callable[[str, str, str], "Mapping[str, Any] | None"]


def _flux_helm(rel: str, text: str, configmap: ConfigMapReader) -> _ArgoHelm:
    """What a Flux HelmRelease says about its chart, in the order helm-controller merges
    its values: the chart's ``spec.chart.spec.valuesFiles`` (relative to the source's root,
    which must be this repository: a ``GitRepository``; they replace the chart's own
    values.yaml), then each ``spec.valuesFrom`` entry, then ``spec.values``. The release is
    ``spec.releaseName``, else ``[targetNamespace-]name``; the namespace
    ``spec.targetNamespace``, else the HelmRelease's own. A ``valuesFrom`` ConfigMap is read
    from its manifest when one lies in the HelmRelease's directory or below; a Secret, or
    a ConfigMap not found there, is an ``_Opaque`` layer. ``configmap(near, namespace,
    name)`` finds the manifest. Errors are ConfigErrors naming the HelmRelease and field."""
    hr = values.read_values(text)
    where = f"layout: helmRelease {rel}"
    if (not isinstance(hr, Mapping) or hr.get("kind") != "HelmRelease"
            or not str(hr.get("apiVersion", "")).startswith(_FLUX_API)):
        raise errors.ConfigError(f"{where} is not a Flux HelmRelease ({_FLUX_API}v2)")
    raw_meta, spec = hr.get("metadata"), hr.get("spec")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    if not isinstance(spec, Mapping):
        raise errors.ConfigError(f"{where} has no spec")
    if "chartRef" in spec:
        raise errors.ConfigError(f"{where}: spec.chartRef names a chart outside this "
                                 "repository; only spec.chart with a GitRepository is read")
    raw_chart = spec.get("chart")
    chart_spec = raw_chart.get("spec") if isinstance(raw_chart, Mapping) else None
    if not isinstance(chart_spec, Mapping) or not isinstance(chart_spec.get("chart"), str):
        raise errors.ConfigError(f"{where}: spec.chart.spec.chart must be the chart's path")
    ref = chart_spec.get("sourceRef")
    kind = ref.get("kind") if isinstance(ref, Mapping) else None
    if kind != "GitRepository":
        raise errors.ConfigError(f"{where}: spec.chart.spec.sourceRef.kind is {kind!r}: "
                                 "only a chart in a GitRepository (this one) can be rendered")
    chart = join("", chart_spec["chart"]) or "."
    raw_files = chart_spec.get("valuesFiles") or []
    legacy = chart_spec.get("valuesFile")  # v2beta1, merged before valuesFiles
    if not isinstance(raw_files, list) or not all(isinstance(f, str) and f
                                                  for f in [*raw_files, legacy or "x"]):
        raise errors.ConfigError(f"{where}: spec.chart.spec.valuesFiles must be a list of "
                                 "paths in the repository")
    files = [join("", f) for f in ([legacy] if legacy else []) + raw_files]
    name, hr_ns = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    target_ns = spec.get("targetNamespace")
    if target_ns is not None and not isinstance(target_ns, str):
        raise errors.ConfigError(f"{where}: spec.targetNamespace must be a namespace name")
    release = spec.get("releaseName") or (f"{target_ns}-{name}" if target_ns else name)
    if not isinstance(release, str):
        raise errors.ConfigError(f"{where}: spec.releaseName must be a release name")
    layers: list[tuple[str, Any]] = []
    raw_from = spec.get("valuesFrom") or []
    if not isinstance(raw_from, list):
        raise errors.ConfigError(f"{where}: spec.valuesFrom must be a list")
    for i, entry in enumerate(raw_from):
        field_name = f"spec.valuesFrom[{i}]"
        if (not isinstance(entry, Mapping) or entry.get("kind") not in ("ConfigMap", "Secret")
                or not isinstance(entry.get("name"), str)):
            raise errors.ConfigError(f"{where}: {field_name} must name a ConfigMap or Secret")
        key = entry.get("valuesKey") or "values.yaml"
        target_path = entry.get("targetPath")
        if target_path is not None and not isinstance(target_path, str):
            raise errors.ConfigError(f"{where}: {field_name}.targetPath must be a values path")
        try:
            path = values.split_path(target_path) if target_path else None
        except errors.FieldError as e:
            raise errors.ConfigError(f"{where}: {field_name}.targetPath: {e.reason}") from e
        ref_name = f"{entry['kind']}/{entry['name']}"
        found = (configmap(rel, hr_ns, entry["name"]) if entry["kind"] == "ConfigMap"
                 else None)
        raw = found["data"].get(key) if found is not None else None
        if found is None or not isinstance(raw, str):
            under = f" under {target_path}" if target_path else ""
            layers.append((f"{ref_name} ({field_name} of {rel}: not read from the "
                           f"repository, so it may set any key{under})", _Opaque(path)))
            continue
        data: Any = values.read_values(raw)
        for part in reversed(path or ()):
            data = {part: data}
        if not isinstance(data, Mapping):
            raise errors.ConfigError(f"{where}: {field_name}: {found['file']} key {key} does "
                                     "not hold a values mapping")
        layers.append((f"{found['file']} ({ref_name}, {field_name} of {rel})", data))
    inline = spec.get("values")
    if inline is not None and not isinstance(inline, Mapping):
        raise errors.ConfigError(f"{where}: spec.values must be a mapping")
    at: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    if inline:
        layers.append((f"{rel} (spec.values)", inline))
        at = ((f"{rel} (spec.values)", rel, ("spec", "values")),)
    return _ArgoHelm(chart, tuple(files), release, str(target_ns or hr_ns), tuple(layers),
                     replaces_defaults=True, inline_at=at)
