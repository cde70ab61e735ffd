"""`reconciler run` with a node group whose nodes are marked for the node operator, as a
separate process against the test Kubernetes API server, with the default policy library
(which says ``nodeConsolidation: mark``).

Cases:
- a NodeGroupRecommendation created through the API is decided and its nodes marked
  (taint, label, annotations), phase Applying; the node operator (here: the test) deletes
  one node, then the other: the recommendation goes Applied within seconds of the last
  deletion, with a resync period of ten minutes and a deadline of an hour: the watch of
  the marked nodes brought it back (the operator's log says so);
- a stale mark (two days old, of a recommendation that no longer exists) left on another
  node is removed by the operator's resync, and a mark of a recommendation still
  Applying is not;
- SIGTERM ends it, exit 0.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import kubernetes
import pytest

from reconciler.adapters import kube
from reconciler.direct import mark
from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.runtime import operator_support as op

pytestmark = pytest.mark.timeout(300)

POLICIES = Path(__file__).resolve().parents[3] / "policies"
NG_PLURAL = "nodegrouprecommendations"


def argv(api: KubeApi, tmp: Path) -> list[str]:
    return ["--mode", "direct", "--store", "kube", "--kubeconfig", api.kubeconfig_path,
            "--state-dir", str(tmp / "state"), "--policies", str(POLICIES),
            "--policy-data", str(samples.OPT_IN), "--resync", "600"]


def node_group(rec_id: str, nodes: list[str]) -> dict[str, object]:
    return {"apiVersion": op.API, "kind": model.NODE_GROUP, "metadata": {"name": rec_id},
            "spec": {"recommendationId": rec_id, "nodeGroup": "default-pool",
                     "action": "consolidate", "currentNodeCount": 5,
                     "targetNodeCount": 5 - len(nodes), "nodesToRemove": nodes}}


def phase(api: KubeApi, name: str) -> str:
    obj = api.get(op.API, model.NODE_GROUP, name)
    return str((obj.get("status") or {}).get("phase", ""))


def owner_of(api: KubeApi, node: str) -> str:
    n = api.get("v1", "Node", node)
    return mark.owner(n) if mark.is_marked(n) else ""


def test_marked_nodes_followed_until_removed(kubeapi: KubeApi, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    api.seed(api.node("node-a"), api.node("node-b"), api.node("node-s"))
    # node-s: marked two days ago by a recommendation long gone (a mark left behind).
    hand = kube.Kube(api.api_client(), kube.Options(qps=1000, burst=1000))
    n = hand.refresh_node("node-s")
    assert n is not None
    hand.patch_node("node-s", mark.mark_ops(n, "ng-long-gone", dt.datetime.now(dt.UTC)
                                            - dt.timedelta(days=2)))
    assert owner_of(api, "node-s") == "ng-long-gone"

    running = op.start(argv(api, tmp_path), tmp_path)
    try:
        custom = kubernetes.client.CustomObjectsApi(api.api_client())
        custom.create_cluster_custom_object(op.GROUP, op.VERSION, NG_PLURAL,
                                            node_group("ng-1", ["node-a", "node-b"]))
        # (Applying is written first, with the way back; the marks follow.)
        op.wait_for(lambda: (api.get(op.API, model.NODE_GROUP, "ng-1").get("status") or {})
                    .get("conditions", [{}])[-1].get("reason") == "Marked", timeout=30)
        assert phase(api, "ng-1") == model.APPLYING
        assert owner_of(api, "node-a") == owner_of(api, "node-b") == "ng-1"
        assert [t["key"] for t in api.get("v1", "Node", "node-a")["spec"]["taints"]] == [
            mark.TAINT]
        status = api.get(op.API, model.NODE_GROUP, "ng-1")["status"]
        assert status["decision"]["mode"] == "direct"
        assert status["previous"]["marked"] == ["node-a", "node-b"]

        # The resync at start removed the stale mark, not ng-1's (still Applying).
        op.wait_for(lambda: owner_of(api, "node-s") == "", timeout=20)
        assert owner_of(api, "node-a") == "ng-1"

        core = kubernetes.client.CoreV1Api(api.api_client())
        core.delete_node("node-a")
        op.wait_for(lambda: "node-a removed" in str(
            api.get(op.API, model.NODE_GROUP, "ng-1")["status"].get("message")), timeout=20)
        assert phase(api, "ng-1") == model.APPLYING
        core.delete_node("node-b")
        op.wait_for(lambda: phase(api, "ng-1") == model.APPLIED, timeout=20)
        status = api.get(op.API, model.NODE_GROUP, "ng-1")["status"]
        assert status["message"] == "the node operator removed node-a, node-b"
        # What brought it back: the watch of the marked nodes.
        assert "node node-b marked by ng-1 is gone: looking at ng-1 again" in running.logs()
    finally:
        rc = running.stop()
    assert rc == 0, running.logs()[-3000:]
