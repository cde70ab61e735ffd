"""Kustomize edits verified by a real build (reconciler.gitops.kustomize_verify) and the
binary behind it (reconciler.adapters.kustomize).

The repository is the Argo CD guestbook overlay (tests/golden/layout/guestbook:
kustomize-guestbook/ with ``namePrefix: kustomize-`` over ../guestbook/, the Service file
with the trailing tabs of the original). Tests that build are skipped when neither
``kustomize`` nor ``kubectl`` is on PATH.

Cases:
- the writer's edit (a new patch plus its kustomization entry) passes: two builds, nothing
  refused, nothing skipped, and the repository's files are not touched;
- a patch whose target names the live name (what the writer did before it knew the name
  transformers) is refused: the build leaves the workload as it was, and the reason names
  the first value found instead of the recommended one (replicas 2, not 3);
- an edit that also changes another object (the Service) refuses every recommendation of
  the overlay, naming that object;
- an edit after which the overlay no longer builds is refused with Kustomize's message;
- an overlay that already fails to build before the edit is skipped with the reason,
  nothing refused;
- a batch without Kustomize edits (or with nothing rendered) runs no build;
- adapter: ``find`` with "off" or "" is None, with a binary that is not there is None,
  with "auto" finds kustomize or kubectl; a directory without a kustomization is a
  PermanentError naming it; a binary that cannot start is a ConfigError; a build past its
  timeout is a TemporaryError.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from reconciler.adapters import kustomize
from reconciler.config import layout
from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import kustomize_verify, render

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "layout"
BUILDER = kustomize.find()
needs_kustomize = pytest.mark.skipif(BUILDER is None, reason="no kustomize or kubectl on PATH")
LAYOUT = layout.parse_layout({"kind": "kustomize", "overlay": "kustomize-guestbook"})
LIVE = ("default", "Deployment", "kustomize-guestbook-ui")
PATCH = "kustomize-guestbook/dakr-guestbook-ui-resources.yaml"
KUST = "kustomize-guestbook/kustomization.yaml"


def _repo(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "repo"
    shutil.copytree(GOLDEN / "guestbook", root)
    return root


def _read(root: pathlib.Path) -> object:
    def read(rel: str) -> str:
        try:
            return (root / rel).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise errors.NotFoundError(rel) from e
    return read


def _batch(root: pathlib.Path) -> tuple[list[tuple[repo_index.Source, planner.Plan]],
                                        render.Rendered]:
    index = repo_index.Index.build(root, LAYOUT, [LIVE])
    plan = planner.Plan("r-gb", "Deployment", "default", LIVE[2], resources=(
        planner.ValueEdit("guestbook-ui", "requests", "cpu", None, "50m"),
        planner.ValueEdit("guestbook-ui", "limits", "memory", None, "128Mi")), replicas=(2, 3))
    items = [(index.locate(LIVE), plan)]
    rendered = render.render_many(root, items, base_text=_read(root))  # type: ignore[arg-type]
    assert rendered.errors == {} and sorted(rendered.texts) == [PATCH, KUST]
    return items, rendered


def _snapshot(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@needs_kustomize
def test_the_writers_edit_passes(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    before = _snapshot(root)
    outcome = kustomize_verify.check(root, items, rendered, BUILDER)
    assert (outcome.failed, outcome.skipped, outcome.builds) == ({}, {}, 2)
    assert _snapshot(root) == before


@needs_kustomize
def test_a_patch_targeting_the_live_name_is_refused(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    texts = dict(rendered.texts)
    texts[KUST] = texts[KUST].replace("name: guestbook-ui", f"name: {LIVE[2]}")
    outcome = kustomize_verify.check(root, items, render.Rendered(texts, {}, {}), BUILDER)
    reason = outcome.failed["r-gb"]
    assert reason.startswith(f"kustomize-guestbook: Deployment/{LIVE[2]}: after the edit")
    assert reason.endswith("the build has 2 at spec.replicas, not 3")


@needs_kustomize
def test_a_change_to_another_object_refuses_the_overlay(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    texts = dict(rendered.texts)
    svc = "guestbook/guestbook-ui-svc.yaml"
    texts[svc] = (root / svc).read_text().replace("type: NodePort", "type: ClusterIP")
    outcome = kustomize_verify.check(root, items, render.Rendered(texts, {}, {}), BUILDER)
    assert "also changes Service/kustomize-guestbook-ui" in outcome.failed["r-gb"]


@needs_kustomize
def test_an_edit_that_breaks_the_build_is_refused(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    texts = dict(rendered.texts)
    texts[KUST] = texts[KUST].replace("dakr-guestbook-ui-resources.yaml", "missing.yaml")
    outcome = kustomize_verify.check(root, items, render.Rendered(texts, {}, {}), BUILDER)
    assert outcome.failed["r-gb"].startswith("the edit of kustomize-guestbook cannot be "
                                             "verified: kustomize build of")
    assert "missing.yaml" in outcome.failed["r-gb"]


@needs_kustomize
def test_an_overlay_broken_before_the_edit_is_skipped(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    (root / KUST).write_text((root / KUST).read_text() + "- ../nowhere.yaml\n")
    outcome = kustomize_verify.check(root, items, rendered, BUILDER)
    assert outcome.failed == {}
    assert outcome.skipped["kustomize-guestbook"].startswith(
        "the build of kustomize-guestbook fails before the edit")


def test_nothing_to_verify_runs_no_build(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    items, rendered = _batch(root)
    never = kustomize.Kustomize(("/nonexistent/kustomize", "build"))
    assert kustomize_verify.check(root, [], rendered, never).builds == 0
    empty = render.Rendered({}, {}, {})
    assert kustomize_verify.check(root, items, empty, never).builds == 0
    failed = render.Rendered(rendered.texts, {}, {"r-gb": "refused"})
    assert kustomize_verify.check(root, items, failed, never).builds == 0


def test_find() -> None:
    assert kustomize.find("off") is None
    assert kustomize.find("") is None
    assert kustomize.find("dakr-no-such-kustomize") is None
    auto = kustomize.find("auto")
    if shutil.which("kustomize") or shutil.which("kubectl"):
        assert auto is not None and auto.argv[1] in ("build", "kustomize")
    else:
        assert auto is None


@needs_kustomize
def test_build_of_a_directory_without_kustomization(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    with pytest.raises(errors.PermanentError, match=r"kustomize build of .* failed"):
        BUILDER.build(tmp_path)


def test_a_binary_that_cannot_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot run"):
        kustomize.Kustomize(("/nonexistent/kustomize", "build")).build(tmp_path)


def test_a_build_past_its_timeout(tmp_path: pathlib.Path) -> None:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    slow = kustomize.Kustomize((sh, "-c", "sleep 30"), timeout=0.2)
    with pytest.raises(errors.TemporaryError, match="did not finish"):
        slow.build(tmp_path)
