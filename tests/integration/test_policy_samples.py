"""The shared sample inputs are what the pipeline really sends to the policies.

rego-tests/data/samples.json feeds the Rego tests (data.samples) and the Python tests.
Cases covered:
- each sample equals what the pipeline's own input builder (policy_input.build) makes
  from the sample's recommendation, target, cluster facts, history and time, so when the
  builder changes the input shape this fails and the samples (and the policies reading
  them) must follow;
- every sample carries each top-level key of the documented contract;
- the default library allows every unmodified sample (they are the "allow side" the Rego
  tests patch one field at a time to reach each deny).
"""

from __future__ import annotations

import pytest

from reconciler.adapters import opa
from reconciler.core import policy_input, validation
from tests.opaserver import samples

CONTRACT_KEYS = {"recommendation", "target", "normalized", "cluster", "history", "now"}


@pytest.mark.parametrize("name", sorted(samples.load()))
def test_sample_is_what_the_pipeline_builds(name: str) -> None:
    s = samples.sample(name)
    rec = validation.parse(s["recommendation"])
    built = policy_input.build(rec, s["target"], now=s["now"], cluster=s["cluster"],
                               history=s["history"],
                               operator_namespace=s["cluster"]["operatorNamespace"])
    assert built == s


@pytest.mark.parametrize("name", sorted(samples.load()))
def test_sample_has_the_contract_keys(name: str) -> None:
    s = samples.sample(name)
    assert set(s) == CONTRACT_KEYS
    assert {"operatorNamespace", "hpa", "pdbs", "gitops", "nodes", "nodeGroup"} <= set(
        s["cluster"])


def test_default_library_allows_every_sample() -> None:
    eng = opa.EmbeddedEngine(samples.POLICIES)
    for name, s in samples.load().items():
        d = eng.decide(s)
        assert d.allow, (name, d.reasons)
    eng.close()
