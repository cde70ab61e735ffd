"""Upstream messages and the non-recommendation downstream messages, over real gRPC.

Cases:
- status updates and audit events produced while the platform is down are kept on disk
  (they survive a client restart with the same state file), and arrive after the
  connection comes up, in order, once each; the outbox empties when the platform confirms;
  the platform's --upstream-out file holds the same lines;
- messages produced while connected, then during an outage, keep their order across it;
- CrdUpdate: a CRD in an allowed group is server-side applied through the Kubernetes API
  (the test API server in tests/fakes/kubeapi, through the official client) with the operator's
  field manager; one in another group, and a malformed one, are nacked naming the field
  and never reach the API; a CRD apply the API server answers 503 is retried by the
  Kubernetes adapter and acked; one it refuses (403) is nacked with the reason, and the
  recommendations behind it are still stored;
- RollbackRequest and PolicyUpdate reach their handlers and are acked; without a handler
  they are nacked with a reason; a PolicyUpdate whose data is not an object is nacked.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import kubernetes

from reconciler.adapters import kube
from reconciler.devtools import platform
from reconciler.stream.gen import stream_pb2
from tests.fakes.kubeapi.fixtures import KubeApi, kubeapi  # noqa: F401
from tests.integration import stream_support as ss


def test_upstream_buffered_while_down_arrives_in_order_after_connect(
        tmp_path: pathlib.Path) -> None:
    port = ss.free_port()
    cfg = ss.fast_config(f"127.0.0.1:{port}")
    first = ss.harness(tmp_path, cfg).start()
    for i in range(3):
        first.client.send_status("WorkloadRecommendation", f"rec-{i:05d}", "Approved")
    first.stop()  # the operator restarts before the platform ever came up
    second = ss.harness(tmp_path, cfg)  # same state file
    second.client.send_audit("applied", kind="WorkloadRecommendation", rec_id="rec-00000",
                             details={"pr": "https://example.test/pr/1"})
    second.client.send_status("WorkloadRecommendation", "rec-00000", "Applied",
                              pull_request_url="https://example.test/pr/1")
    assert second.state.outbox_size() == 5
    second.start()
    out = tmp_path / "upstream.jsonl"
    srv = ss.server([], port=port, upstream_out=str(out))
    try:
        ss.wait(lambda: len(srv.state.upstream) == 5, 10, "five upstream messages")
        ss.wait(lambda: second.state.outbox_size() == 0, 10, "the outbox to drain")
    finally:
        second.stop()
        srv.stop(None)
    up = srv.state.upstream
    assert [u["upstream_sequence"] for u in up] == [1, 2, 3, 4, 5]
    assert [(u["type"], u["recommendation_id"]) for u in up] == [
        ("status_update", "rec-00000"), ("status_update", "rec-00001"),
        ("status_update", "rec-00002"), ("audit_event", "rec-00000"),
        ("status_update", "rec-00000")]
    assert [u.get("phase") for u in up] == ["Approved"] * 3 + [None, "Applied"]
    assert [json.loads(x) for x in out.read_text().splitlines()] == up  # --upstream-out


def test_upstream_order_is_kept_across_an_outage(tmp_path: pathlib.Path) -> None:
    srv = ss.server([ss.doc(0)])
    port = srv.port
    h = ss.harness(tmp_path, ss.fast_config(srv.address)).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == 1, 10, "connected")
        h.client.send_status("WorkloadRecommendation", "rec-00000", "Approved")
        ss.wait(lambda: len(srv.state.upstream) == 1, 10, "live status")
        srv.stop(None)
        for phase in ("Applying", "Applied"):
            h.client.send_status("WorkloadRecommendation", "rec-00000", phase)
        h.client.send_audit("applied", rec_id="rec-00000")
        srv2 = ss.server([ss.doc(0)], port=port)
        # A bound for a stuck client, not a speed: with the test suite's workers on two
        # CPUs a reconnect once took over 10 s.
        ss.wait(lambda: len(srv2.state.upstream) == 3, 30, "buffered messages")
        ss.wait(lambda: h.state.outbox_size() == 0, 30, "the outbox to drain")
    finally:
        h.stop()
        srv.stop(None)
    got = [(u["upstream_sequence"], u.get("phase") or u.get("action"))
           for u in srv2.state.upstream]
    assert got == [(2, "Applying"), (3, "Applied"), (4, "applied")]
    assert srv2.state.hellos[0]["resume_from"] == 1  # and the recommendation is not resent


def _crd(group: str, plural: str = "widgets") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": plural[:-1],
                           "kind": plural[:-1].capitalize(), "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "x-kubernetes-preserve-unknown-fields":
                                   True}}}]},
    }


FAST = kube.Options(qps=1000, burst=1000, retries=3, backoff=0.01, backoff_max=0.02)


class _RecordingKube(kube.Kube):
    """The real Kubernetes adapter, noting which field manager the client asked for."""

    def __init__(self, api_client: Any) -> None:
        super().__init__(api_client, FAST, limiter=kube.RateLimiter(1000, 1000))
        self.managers: list[str] = []

    def apply_crd(self, crd: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
        self.managers.append(field_manager)
        return super().apply_crd(crd, field_manager)


def test_crd_updates_are_applied_only_for_allowed_groups(tmp_path: pathlib.Path,
                                                          kubeapi: KubeApi) -> None:  # noqa: F811
    allowed = _crd("dakr.devzero.io")
    foreign = _crd("evil.example.com")
    misnamed = _crd("dakr.devzero.io", "gadgets")
    misnamed["metadata"]["name"] = "wrong.dakr.devzero.io"
    srv = ss.server([allowed, foreign, misnamed, ss.doc(0)])
    installer = _RecordingKube(kubeapi.api_client())
    h = ss.harness(tmp_path, ss.fast_config(srv.address), crd_installer=installer)
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    acks = {a["id"]: a for a in srv.state.acks}
    assert acks["widgets.dakr.devzero.io"]["kind"] == "ack"
    assert acks["widgets.evil.example.com"]["kind"] == "nack"
    assert acks["widgets.evil.example.com"]["fields"] == ["spec.group"]
    assert "not in the allowed groups" in acks["widgets.evil.example.com"]["reason"]
    assert acks["wrong.dakr.devzero.io"]["fields"] == ["metadata.name"]
    ext = kubernetes.client.ApiextensionsV1Api(kubeapi.api_client())
    names = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert "widgets.dakr.devzero.io" in names
    assert "widgets.evil.example.com" not in names and "wrong.dakr.devzero.io" not in names
    applies = [r for r in kubeapi.requests.log
               if r.content_type == "application/apply-patch+yaml"]
    assert len(applies) == 1  # (the test API server refuses an apply without fieldManager)
    assert installer.managers == ["dakr-reconciler"]
    assert h.stored_ids() == {"rec-00000"}  # recommendations kept flowing alongside


def _serve_crds(tmp_path: pathlib.Path, api: KubeApi, docs: list[Any]
                ) -> tuple[platform.PlatformServer, ss.Harness]:
    """The platform serves ``docs`` once; the client installs CRDs through the adapter."""
    srv = ss.server(docs)
    h = ss.harness(tmp_path, ss.fast_config(srv.address),
                   crd_installer=_RecordingKube(api.api_client()))
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    return srv, h


def test_a_crd_the_api_server_cannot_take_now_is_retried_then_acked(
        tmp_path: pathlib.Path, kubeapi: KubeApi) -> None:  # noqa: F811
    kubeapi.faults.fail_next(2, 503, verb="patch", resource="customresourcedefinitions")
    srv, _ = _serve_crds(tmp_path, kubeapi, [_crd("dakr.devzero.io")])
    assert [a["kind"] for a in srv.state.acks] == ["ack"]
    tries = [r for r in kubeapi.requests.log if r.resource == "customresourcedefinitions"]
    assert len(tries) == 3  # two refused, the third went through
    ext = kubernetes.client.ApiextensionsV1Api(kubeapi.api_client())
    assert ext.read_custom_resource_definition("widgets.dakr.devzero.io").metadata.name


def test_a_crd_the_api_server_refuses_is_nacked_with_its_reason(
        tmp_path: pathlib.Path, kubeapi: KubeApi) -> None:  # noqa: F811
    kubeapi.faults.fail_next(1, 403, verb="patch", resource="customresourcedefinitions")
    srv, h = _serve_crds(tmp_path, kubeapi, [_crd("dakr.devzero.io"), ss.doc(0)])
    acks = {a["id"]: a for a in srv.state.acks}
    assert acks["widgets.dakr.devzero.io"]["kind"] == "nack"
    assert acks["widgets.dakr.devzero.io"]["fields"] == ["(apply)"]
    assert "403" in acks["widgets.dakr.devzero.io"]["reason"] or \
        "forbidden" in acks["widgets.dakr.devzero.io"]["reason"].lower()
    assert h.stored_ids() == {"rec-00000"}  # one refused CRD does not stop the stream


def test_rollback_and_policy_updates_reach_their_handlers(tmp_path: pathlib.Path) -> None:
    rollbacks: list[tuple[str, str, str]] = []
    policies: list[dict[str, Any]] = []
    srv = ss.server([ss.doc(0)])
    h = ss.harness(tmp_path, ss.fast_config(srv.address),
                   on_rollback=lambda k, i, r: rollbacks.append((k, i, r)),
                   on_policy_update=policies.append).start()
    bare = ss.harness(tmp_path / "bare", ss.fast_config(srv.address))
    try:
        ss.wait(lambda: len(h.stored_ids()) == 1, 10, "connected")
        srv.add([
            stream_pb2.PlatformMessage(rollback_request=stream_pb2.RollbackRequest(
                id="rb-1", kind="WorkloadRecommendation", recommendation_id="rec-00000",
                reason="latency regression")),
            stream_pb2.PlatformMessage(policy_update=stream_pb2.PolicyUpdate(
                id="pol-1", data_json=json.dumps({"maxCpuCut": 0.5}))),
            stream_pb2.PlatformMessage(policy_update=stream_pb2.PolicyUpdate(
                id="pol-2", data_json="[1]")),
        ])
        ss.wait(lambda: len(srv.state.acks) == 4, 10, "answers")
        h.stop()
        bare.client.run(until_idle=1.0)  # a fresh operator without handlers
    finally:
        h.stop()
        srv.stop(None)
    assert rollbacks == [("WorkloadRecommendation", "rec-00000", "latency regression")]
    assert policies == [{"maxCpuCut": 0.5}]
    kinds = [(a["id"], a["kind"]) for a in srv.state.acks]
    assert kinds[:4] == [("rec-00000", "ack"), ("rb-1", "ack"), ("pol-1", "ack"),
                         ("pol-2", "nack")]
    later = {a["id"]: a for a in srv.state.acks[4:]}
    assert later["rb-1"]["kind"] == "nack" and "rollback" in later["rb-1"]["reason"]
    assert later["pol-1"]["kind"] == "nack"


def test_platform_feed_numbers_crds_and_recommendations_in_one_sequence() -> None:
    feed = platform.build_feed([_crd("dakr.devzero.io"), ss.doc(0)], garbage_every=1)
    assert [platform.sequence_of(m) for m in feed] == [1, 2, 3, 4]
    assert [m.WhichOneof("body") for m in feed] == [
        "crd_update", "recommendation", "recommendation", "recommendation"]
