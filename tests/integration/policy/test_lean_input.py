"""The embedded engine sends a decision only what the policy set reads of its input.

Cases covered:
- the default library: what is sent of every sample leaves out what no rule reads (the
  target's pod template, the recommendation's status, its own quantities, savings and id,
  apiVersions) and keeps what the rules read; the decision document on the full input and
  on what is sent is the same, through decide and decide_many;
- a target's annotations: only the keys a rule looks up (Argo CD's tracking ones) are
  sent, not kubectl's last applied manifest beside them, and the decision (an operator
  in direct mode routed to gitops by the tracking annotation) is the one on the whole
  input;
- a policy author's rule that reads a field the library does not (the target's container
  images) sees it: the field is sent and the rule denies;
- a module that reads the input as a whole (``walk(input, ...)``): every input is sent whole;
- a reload that adds a rule reading a new field sends that field from then on, and the
  decision follows it;
- lean_input=False sends every input whole (how bench_policy measures the engine's floor).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from reconciler.domain import decision
from tests import samples

IMAGE_RULE = """package dakr.guardrails

deny contains {"rule": "LatestImage", "msg": c.name} if {
	some c in input.target.spec.template.spec.containers
	endswith(c.image, ":latest")
}
"""


def _engine(policies: Path = samples.POLICIES, **kw: Any) -> embedded.EmbeddedEngine:
    eng = embedded.EmbeddedEngine(policies, [policies / "data.yaml", samples.OPT_IN],
                                  reload_interval=-1, **kw)
    assert eng.last_error is None, eng.last_error
    return eng


def _answer(d: decision.Decision) -> tuple[Any, ...]:
    """A decision without what differs between two askings (its id)."""
    return (d.allow, d.mode, d.deny, d.warnings, d.bounds, d.live, d.node_consolidation)


def _latest(inp: dict[str, Any]) -> dict[str, Any]:
    inp["target"]["spec"]["template"]["spec"]["containers"][0]["image"] = "example/x:latest"
    return inp


def test_the_library_is_sent_what_it_reads_and_decides_alike() -> None:
    eng = _engine()
    try:
        for name, inp in samples.load().items():
            sent = eng.sent(inp)
            rec = sent["recommendation"]
            assert "status" not in rec and "apiVersion" not in rec, name
            assert not {"containers", "projectedSavings", "recommendationId"} & set(rec["spec"])
            assert rec["kind"] == inp["recommendation"]["kind"]
            assert rec["spec"]["action"] == inp["recommendation"]["spec"]["action"]
            assert sent["now"] == inp["now"] and sent["cluster"] == inp["cluster"]
            assert sent["normalized"] == inp["normalized"]
            if inp["target"] is not None:
                assert sent["target"]["spec"] == {"replicas": inp["target"]["spec"]["replicas"]}
                assert sent["target"]["metadata"]["labels"] == inp["target"]["metadata"]["labels"]
            assert eng.evaluate(opa.DECISION_PATH, sent) == eng.evaluate(opa.DECISION_PATH, inp)
        inputs = list(samples.load().values())
        whole = _engine(lean_input=False)
        try:
            expected = [_answer(d) for d in whole.decide_many(inputs)]
        finally:
            whole.close()
        for got in (eng.decide_many(inputs), [eng.decide(i) for i in inputs]):
            assert [_answer(d) for d in got] == expected
    finally:
        eng.close()


def test_only_the_annotations_a_rule_looks_up_are_sent() -> None:
    eng = _engine()
    whole = _engine(lean_input=False)
    try:
        inp = samples.sample("rightsizing", {"/cluster/operatorMode": "direct"})
        manifest = json.dumps(inp["target"])
        inp["target"]["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": manifest,
            "deployment.kubernetes.io/revision": "7",
            "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cartservice",
        }
        sent = eng.sent(inp)
        assert sent["target"]["metadata"]["annotations"] == {
            "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cartservice"}
        d = eng.decide(inp)
        assert d.mode == "gitops" and _answer(d) == _answer(whole.decide(inp))
        assert any(w.startswith("managed by argocd") for w in d.warnings)
        assert _answer(eng.decide_many([inp])[0]) == _answer(d)
    finally:
        eng.close()
        whole.close()


def test_an_authors_rule_sees_the_fields_it_reads(tmp_path: Path) -> None:
    shutil.copytree(samples.POLICIES, tmp_path / "policies")
    (tmp_path / "policies" / "guardrails" / "images.rego").write_text(IMAGE_RULE)
    eng = _engine(tmp_path / "policies")
    try:
        inp = _latest(samples.sample("rightsizing"))
        assert eng.sent(inp)["target"]["spec"]["template"] == inp["target"]["spec"]["template"]
        d = eng.decide(inp)
        assert not d.allow and "LatestImage" in [x.rule for x in d.deny]
        assert "LatestImage" in [x.rule for x in eng.decide_many([inp])[0].deny]
    finally:
        eng.close()


def test_a_module_reading_the_whole_input_is_sent_everything(tmp_path: Path) -> None:
    shutil.copytree(samples.POLICIES, tmp_path / "policies")
    (tmp_path / "policies" / "walk.rego").write_text(
        "package dakr.walked\n\nvalues := count([v | walk(input, [_, v])])\n")
    eng = _engine(tmp_path / "policies")
    try:
        inp = samples.sample("rightsizing")
        assert eng.sent(inp) == inp
    finally:
        eng.close()


def test_a_reload_sends_what_the_new_set_reads(tmp_path: Path) -> None:
    shutil.copytree(samples.POLICIES, tmp_path / "policies")
    eng = _engine(tmp_path / "policies")
    try:
        inp = _latest(samples.sample("rightsizing"))
        assert "template" not in eng.sent(inp)["target"]["spec"]
        assert "LatestImage" not in [x.rule for x in eng.decide(inp).deny]
        (tmp_path / "policies" / "guardrails" / "images.rego").write_text(IMAGE_RULE)
        assert eng.reload(force=True)
        assert "template" in eng.sent(inp)["target"]["spec"]
        assert "LatestImage" in [x.rule for x in eng.decide(inp).deny]
    finally:
        eng.close()


def test_lean_input_off_sends_every_input_whole() -> None:
    eng = _engine(lean_input=False)
    try:
        inp = samples.sample("rightsizing")
        assert eng.sent(inp) == inp
    finally:
        eng.close()
