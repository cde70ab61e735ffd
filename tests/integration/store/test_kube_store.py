"""KubeStore (recommendations as custom resources) against the test API server, through the
real `kubernetes` client.

Cases:
- the whole store contract (tests/store_contract.py), run on CRDs with the chart's names,
  scopes and status subresource but a schema that preserves unknown fields: the contract's
  records are generic (a `count` in status, a `Denied` phase, a `défaut` namespace) and the
  real schema would rightly prune or refuse them; `reopen` is a picklable partial that
  loads the test server's kubeconfig, so the two-process test runs against the same server;
- with the chart's real CRDs: a model-shaped recommendation round-trips (spec and a full
  status through the status subresource), a replay sends no write, and a status the schema
  refuses is a PermanentError naming the field;
- object names: an id that is a DNS-1123 subdomain is the name; any other id gets a
  deterministic, valid, hash-suffixed name (table test);
- a watch from a compacted history ("" = from the start) falls back to the current objects
  as ADDED, and a watch from a compacted resourceVersion raises a TemporaryError;
- list_record_pages: LIST with limit and continue, one version for every page;
  list_records reads every page and orders them by creation;
- a status write that keeps failing with 500 is retried and then succeeds (counted by the
  server), and one refused by RBAC is a PermanentError.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import kube
from reconciler.adapters.store import kube as kube_store
from reconciler.adapters.store import port as store_api
from reconciler.domain import errors
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi
from tests.store_contract import StoreContract

ROOT = Path(__file__).resolve().parents[3]
FAST = kube.Options(qps=1000, burst=1000, retries=3, backoff=0.01, backoff_max=0.05,
                    timeout=5.0)


def open_store(kubeconfig: str) -> kube_store.KubeStore:
    """Module level, so that a partial of it pickles into the contract's child processes."""
    return kube_store.KubeStore(kube.Kube(kube.load_client(kubeconfig), FAST), owns_client=True)


class TestKubeStoreContract(StoreContract):
    @pytest.fixture
    def store(self, kubeapi: KubeApi) -> Iterator[store_api.Store]:
        install_crds(kubeapi, permissive_schema=True)
        kubeapi.ensure_namespace("défaut")
        s = open_store(kubeapi.kubeconfig_path)
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, kubeapi: KubeApi) -> Any:
        return functools.partial(open_store, kubeapi.kubeconfig_path)


@pytest.fixture
def real_store(kubeapi: KubeApi) -> Iterator[kube_store.KubeStore]:
    install_crds(kubeapi)
    s = open_store(kubeapi.kubeconfig_path)
    yield s
    s.close()


def _rec_spec(rec_id: str) -> dict[str, Any]:
    return {"recommendationId": rec_id, "action": "Rightsizing",
            "targetRef": {"kind": "Deployment", "name": "web"},
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m"}}}],
            "confidence": 0.9, "projectedSavings": {"monthly": 12.5, "currency": "USD"}}


def test_real_crds_round_trip(kubeapi: KubeApi, real_store: kube_store.KubeStore) -> None:
    res = real_store.upsert("WorkloadRecommendation", "rec-1", "default", "x",
                            _rec_spec("rec-1"))
    assert res.created and res.record.name == "rec-1"
    status = {"phase": "Applied", "appliedAt": "2026-01-02T03:04:05Z",
              "previous": {"containers": {"app": {"requests": {"cpu": "100m"}}}},
              "conditions": [{"type": "Applied", "status": "True", "reason": "Patched",
                              "message": "ok", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
              "decision": {"allowed": True, "mode": "direct", "reasons": [], "warnings": []}}
    upd = real_store.update_status("WorkloadRecommendation", "rec-1", status,
                                   res.record.resource_version)
    assert upd.status == status
    obj = kubeapi.get("dakr.devzero.io/v1alpha1", "WorkloadRecommendation", "rec-1")
    assert obj["status"] == status and obj["spec"] == _rec_spec("rec-1")
    kubeapi.requests.reset()
    again = real_store.upsert("WorkloadRecommendation", "rec-1", "default", "x",
                              _rec_spec("rec-1"))
    assert (again.created, again.changed) == (False, False)
    assert kubeapi.requests.writes() == []


def test_real_schema_refuses_bad_status(real_store: kube_store.KubeStore) -> None:
    rec = real_store.upsert("WorkloadRecommendation", "rec-1", "default", "x",
                            _rec_spec("rec-1")).record
    with pytest.raises(errors.PermanentError, match=r"status\.phase"):
        real_store.update_status("WorkloadRecommendation", "rec-1", {"phase": "Denied"},
                                 rec.resource_version)


@pytest.mark.parametrize("rec_id,expect_same", [
    ("rec-0001", True), ("a.b-c", True), ("x" * 253, True),
    ("Rec_0001", False), ("rec-ü", False), ("-lead", False), ("x" * 254, False),
    ("日本", False), ("a..b", False),
])
def test_object_names(rec_id: str, expect_same: bool) -> None:
    name = kube_store.object_name(rec_id)
    assert (name == rec_id) is expect_same
    assert len(name) <= 253
    assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", name)
    assert kube_store.object_name(rec_id) == name  # deterministic
    if not expect_same:
        assert kube_store.object_name(rec_id + "2") != name


def test_watch_after_compaction(kubeapi: KubeApi, real_store: kube_store.KubeStore) -> None:
    a = real_store.upsert("WorkloadRecommendation", "a", "default", "a", _rec_spec("a")).record
    real_store.update_status("WorkloadRecommendation", "a", {"phase": "Approved"},
                             a.resource_version)
    kubeapi.store.compact()
    # The history after a's creation is gone: 410 Gone, raised as ExpiredError ...
    with pytest.raises(errors.ExpiredError, match="too old"):
        list(real_store.watch_records("WorkloadRecommendation", a.resource_version, 2))
    # ... and a new list gives the current objects and a version to watch from.
    recs, version = real_store.list_records("WorkloadRecommendation")
    assert [(r.id, r.phase) for r in recs] == [("a", "Approved")]
    assert [e.type for e in real_store.watch_records("WorkloadRecommendation", version, 1)
            if e.type != "BOOKMARK"] == []


def test_list_record_pages_pages_through_limit_and_continue(
        kubeapi: KubeApi, real_store: kube_store.KubeStore) -> None:
    W = "WorkloadRecommendation"
    for rid in ["e", "d", "c", "b", "a"]:  # created in reverse name order
        real_store.upsert(W, rid, "default", rid, _rec_spec(rid))
    kubeapi.requests.reset()
    pages = list(real_store.list_record_pages(W, page_size=2))
    # pages by name, as the API server lists; each page in creation order
    assert [[r.id for r in page] for page, _ in pages] == [["b", "a"], ["d", "c"], ["e"]]
    assert len({version for _, version in pages}) == 1
    assert kubeapi.requests.count("list", "workloadrecommendations") == 3
    # the whole list: every page, in creation order
    recs, version = real_store.list_records(W)
    assert [r.id for r in recs] == ["e", "d", "c", "b", "a"] and version == pages[0][1]


def test_status_write_retried_on_500(kubeapi: KubeApi,
                                     real_store: kube_store.KubeStore) -> None:
    rec = real_store.upsert("WorkloadRecommendation", "a", "default", "a",
                            _rec_spec("a")).record
    kubeapi.faults.fail_next(2, 500, subresource="status")
    kubeapi.requests.reset()
    out = real_store.update_status("WorkloadRecommendation", "a", {"phase": "Approved"},
                                   rec.resource_version)
    assert out.phase == "Approved"
    assert kubeapi.requests.count("update", "workloadrecommendations", "status") == 3


def test_status_write_forbidden(kubeapi: KubeApi) -> None:
    install_crds(kubeapi)
    kubeapi.enable_rbac("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- apiGroups: [dakr.devzero.io]
  resources: [workloadrecommendations]
  verbs: [get, list, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
""")
    s = kube_store.KubeStore(kube.Kube(kubeapi.service_account_client("ops", "op"), FAST))
    rec = s.upsert("WorkloadRecommendation", "a", "default", "a", _rec_spec("a")).record
    with pytest.raises(errors.PermanentError, match="forbidden"):
        s.update_status("WorkloadRecommendation", "a", {"phase": "Approved"},
                        rec.resource_version)
