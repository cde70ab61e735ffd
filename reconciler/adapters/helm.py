"""Helm charts rendered offline with the real Helm library (helm-python-sdk, Go's Helm SDK
through ctypes; no helm binary, no cluster).

The GitOps writer renders a chart before and after it edits a values file, so that an
edit which does not reach the workload (a path no template reads) or reaches more than the
workload is refused before anything is committed. Everything Helm-specific stays here:
values files are parsed with Helm's own YAML reader (Go's parser, which accepts what
PyYAML refuses, such as tabs after a value) and merged in order the way ``helm -f a -f b``
does, and the library's errors become domain errors (``raise ... from e``).

The native library is loaded on first use, not at import: a machine where it cannot load
still runs every other part of the product, and ``available`` says why it cannot.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.domain import errors, lru, mappings

_SKIP_DIRS = {".git", "node_modules", ".venv"}
_LIB: list[types.ModuleType | str] = []  # the loaded module, or why it cannot load


class HelmUnavailable(errors.PermanentError):
    """The Helm library cannot load on this machine (missing or foreign native library)."""


def _module() -> types.ModuleType:
    """helm_python, loaded once; HelmUnavailable with the library's own reason otherwise."""
    if not _LIB:
        try:
            import helm_python

            helm_python.helm_sdk_version()  # the native library really answers
            _LIB.append(helm_python)
        except Exception as e:  # ImportError, OSError, HelmLibraryError: all mean "cannot"
            _LIB.append(f"{type(e).__name__}: {e}".strip())
    lib = _LIB[0]
    if isinstance(lib, str):
        raise HelmUnavailable(f"the Helm library (helm-python-sdk) cannot load here: {lib}")
    return lib


def available() -> str | None:
    """None when the Helm library loads; otherwise why it does not."""
    try:
        _module()
    except HelmUnavailable as e:
        return str(e)
    return None


def _translate(e: Exception, what: str) -> errors.ReconcilerError:
    """A library error as a domain error: every Helm failure here is about the repository's
    chart or values (permanent until someone changes them)."""
    detail = " ".join(str(getattr(e, "detail", "") or e).split())
    return errors.PermanentError(f"{what}: {detail}")


def parse_values(text: str, name: str) -> dict[str, Any]:
    """A values file as Helm reads it (``-f FILE``); PermanentError naming ``name``."""
    helm = _module()
    try:
        parsed = helm.values_from_yaml(text)
    except helm.HelmError as e:
        raise _translate(e, f"{name} is not a values file Helm can read") from e
    return parsed if isinstance(parsed, dict) else {}


def merge_values(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``helm -f a -f b``: later files win; mappings merge key by key, anything else is
    replaced (Helm's ``mergeMaps`` in pkg/cli/values)."""
    return mappings.merge_all(layers)


def chart_files(chart_dir: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to the chart directory, path) of every file Helm loads from it, in
    a stable order; version control and tool directories aside."""
    for dirpath, dirnames, filenames in os.walk(chart_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            path = Path(dirpath, f)
            yield path.relative_to(chart_dir).as_posix(), path


def chart_digest(chart_dir: Path, *extra: bytes) -> str:
    """A digest of what a render of the chart in ``chart_dir`` depends on: every file of
    the chart and ``extra`` (the caller's values, release, namespace). What is kept across
    batches for a chart (its loaded form, a render, its discovered values paths) is kept
    under it, so any change to the chart or the values misses."""
    h = hashlib.sha256()
    for part in extra:
        h.update(len(part).to_bytes(8, "big") + part)
    for rel, path in chart_files(chart_dir):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a dangling link: Helm does not load it either
        h.update(b"\0" + rel.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _archive(chart_dir: Path, overrides: Mapping[str, str]) -> bytes:
    """The chart directory as a .tgz in memory, with ``overrides`` (paths relative to the
    chart directory -> text) in place of the files on disk: the edited chart is rendered
    without writing anything to the working tree before it is verified."""
    buf = io.BytesIO()
    top = chart_dir.name or "chart"
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        def add(rel: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        for rel, path in chart_files(chart_dir):
            seen.add(rel)
            if rel in overrides:
                add(rel, overrides[rel].encode("utf-8"))
            elif path.is_file():
                add(rel, path.read_bytes())
        for rel, text in sorted(overrides.items()):
            if rel not in seen and ".." not in PurePosixPath(rel).parts:
                add(rel, text.encode("utf-8"))
    return buf.getvalue()


def _load(chart_dir: Path, overrides: Mapping[str, str]) -> Any:
    """The chart in ``chart_dir`` (with ``overrides`` in place of its files) loaded; the
    library's errors as domain errors naming the chart."""
    helm = _module()
    what = f"the chart in {chart_dir.name or chart_dir}"
    try:
        return (helm.Chart.load_archive(_archive(chart_dir, overrides)) if overrides
                else helm.Chart.load(chart_dir))
    except helm.HelmError as e:
        raise _translate(e, f"{what} does not load") from e
    except OSError as e:
        raise errors.PermanentError(f"{what} cannot be read: {e.strerror or e}") from e


def _render(chart: Any, chart_dir: Path, values: Mapping[str, Any], release: str,
            namespace: str) -> dict[str, str]:
    helm = _module()
    try:
        rendered: dict[str, str] = chart.render(dict(values), name=release,
                                                namespace=namespace, is_install=True)
    except helm.HelmError as e:
        raise _translate(e, f"the chart in {chart_dir.name} does not render") from e
    return rendered


# Charts loaded from a directory, by the caller's digest (``chart_digest``) of their files: a
# chart is immutable and safe to share between threads, so a chart that several batches
# edit is loaded once. An entry dropped here is freed by the library's finalizer once no
# render holds it any more.
_CHARTS: lru.Lru[str, Any] = lru.Lru(256)


def forget_charts() -> None:
    """Drop the charts kept loaded (a benchmark's cold start)."""
    _CHARTS.clear()


def render_each(chart_dir: Path, value_sets: Sequence[Mapping[str, Any]], *, release: str,
                namespace: str, digest: str = "") -> list[dict[str, str]]:
    """``render`` once per values set, the chart loaded once (a before-and-after pair costs
    one load). ``digest``: a digest of the chart directory's files that the caller
    computed; the chart loaded under it is kept and used again for the same digest.
    Errors as ``render``."""
    chart = _CHARTS.get(digest) if digest else None
    if chart is None:
        chart = _load(chart_dir, {})
        if digest:
            _CHARTS.put(digest, chart)
    try:
        return [_render(chart, chart_dir, vals, release, namespace) for vals in value_sets]
    finally:
        if not digest:
            chart.close()


def render(chart_dir: Path, *, values: Mapping[str, Any], release: str, namespace: str,
           overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template RELEASE CHART -n NAMESPACE`` with
    ``values`` (already merged, see ``merge_values``) would print it; ``overrides`` replace
    files of the chart (a values.yaml of the chart or of a subchart) for this render only.

    PermanentError when the chart does not load or a template fails (naming the chart);
    HelmUnavailable when the library cannot load here.
    """
    with _load(chart_dir, overrides or {}) as chart:
        return _render(chart, chart_dir, values, release, namespace)
