"""Which policy set decided: the revision every decision carries.

Cases:
- the digest is of content only: the same sources in another order or under other file
  names give the same revision; one changed source, or a changed data.config, gives
  another; data outside config (the platform's parameters) does not count (table);
- the embedded engine and an OPA sidecar (the Data API stand-in) loaded with the same
  library and data label their decisions with the same revision, one by one and batched;
- editing a policy file changes the revision of the next decision (embedded reload), and
  through the sidecar once OPA has reloaded (after the revision's short cache);
- a sidecar that will not list its policies (403) still decides: the revision is empty.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from reconciler.adapters.opa import embedded, sidecar
from reconciler.adapters.opa import engine as opa
from tests import samples
from tests.fakes.opaserver import OpaServer

A, B = "package a\nx := 1\n", "package b\ny := 2\n"


@pytest.mark.parametrize(("left", "right", "same"), [
    ((([A, B], {"k": 1})), (([B, A], {"k": 1})), True),
    ((([A, B], {"k": 1})), (([A, B + "\n"], {"k": 1})), False),
    ((([A, B], {"k": 1})), (([A, B], {"k": 2})), False),
    ((([A, B], None)), (([A, B], None)), True),
    ((([A], {"k": 1})), (([A, B], {"k": 1})), False),
], ids=["order", "source", "config", "no-config", "module-added"])
def test_revision_is_a_digest_of_content(left: tuple[list[str], object],
                                         right: tuple[list[str], object], same: bool) -> None:
    assert (opa.revision(*left) == opa.revision(*right)) is same
    assert opa.revision(*left).startswith("sha256:")


def test_file_names_and_platform_data_do_not_count(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "sub").mkdir(parents=True)
    two.mkdir()
    (one / "sub" / "a.rego").write_text(A)
    (two / "renamed.rego").write_text(A)
    (one / "data.yaml").write_text("config: {k: 1}\n")
    (two / "data.yaml").write_text("config: {k: 1}\nplatform: {freeze: true}\n")
    e1 = embedded.EmbeddedEngine(one, reload_interval=-1)
    e2 = embedded.EmbeddedEngine(two, reload_interval=-1)
    try:
        assert e1.revision == e2.revision != ""
    finally:
        e1.close()
        e2.close()


def test_embedded_and_sidecar_agree_on_the_revision() -> None:
    inputs = [samples.sample("rightsizing"), samples.sample("replica_scaling")]
    local = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=-1)
    try:
        with OpaServer(samples.POLICIES, samples.DATA_FILES) as srv:
            remote = sidecar.SidecarEngine(srv.url)
            try:
                want = local.decide(inputs[0]).policy_revision
                assert want.startswith("sha256:")
                assert remote.decide(inputs[0]).policy_revision == want
                assert {d.policy_revision for d in remote.decide_many(inputs)} == {want}
                assert {d.policy_revision for d in local.decide_many(inputs)} == {want}
            finally:
                remote.close()
    finally:
        local.close()


def test_an_edited_policy_is_a_new_revision(tmp_path: Path) -> None:
    pol = tmp_path / "policies"
    shutil.copytree(samples.POLICIES, pol)
    inp = samples.sample("rightsizing")
    with OpaServer(pol, [pol / "data.yaml", samples.OPT_IN]) as srv:
        local = srv.engine  # the stand-in's own embedded engine, reloading every second
        remote = sidecar.SidecarEngine(srv.url)
        try:
            before = remote.decide(inp).policy_revision
            assert before == local.revision
            rule = pol / "timing" / "cooldown.rego"
            rule.write_text(rule.read_text() + "\n# a reviewed change\n")
            local.reload()
            assert local.decide(inp).policy_revision not in ("", before)
            time.sleep(sidecar.REVISION_TTL + 0.1)
            assert remote.decide(inp).policy_revision == local.revision
        finally:
            remote.close()


def test_a_sidecar_that_hides_its_policies_still_decides() -> None:
    with OpaServer(samples.POLICIES, samples.DATA_FILES) as srv:
        # An OPA authorization policy may refuse the module list: decisions go on.
        srv.faults.hide_policies = True
        remote = sidecar.SidecarEngine(srv.url)
        try:
            dec = remote.decide(samples.sample("rightsizing"))
            assert dec.allow and dec.policy_revision == ""
        finally:
            remote.close()
