"""The simulated kubelet's checkpoint API (through the node proxy) and its Jobs, via the
official client.

Cases:
- "ok": 200 with `{"items": [path]}`, the path in the kubelet's format, recorded in
  `checkpoints`; an unknown pod or container gets the kubelet's 404 text, a missing node
  the API server's 404 Status;
- "gate-off": 404 "404 page not found" (the kubelet has no such route);
- "unsupported": 500 "checkpointing of ns/pod/container failed (rpc error: code = Unknown
  desc = checkpoint/restore support not available)";
- "forbidden": 403, the kubelet refusing the API server's identity nodes/checkpoint;
- "slow": answered after `checkpoint_delay` within the `timeout` query parameter, 500
  DeadlineExceeded past it; a timeout that is not a number is the kubelet's 404;
- modes per node override the default; unknown modes are refused;
- Jobs created through BatchV1Api complete (succeeded 1, SuccessCriteriaMet + Complete),
  watched to the end; Jobs matching `fail_jobs` fail (failed 1, FailureTarget + Failed with
  the message); every created Job is in `jobs_created`, seeded ones are not run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException
JSON = dict[str, Any]
WAIT = 10


def _setup(k: KubeApi) -> Any:
    k.seed(k.node("node-a"), k.node("node-b"))
    k.seed(k.pod("db-0", node="node-a", containers=[k.container("pg")]))
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def _checkpoint(k: KubeApi, target: str = "default/db-0/pg", node: str = "node-a",
                timeout: str | None = None) -> Any:
    """POST nodes/{node}/proxy/checkpoint/{target}[?timeout=...] as client-go's
    `.Suffix(...).Param("timeout", ...)` does; raises ApiException on errors."""
    api = k.api_client()
    query = [("timeout", timeout)] if timeout is not None else []
    params = api.param_serialize(
        method="POST", resource_path="/api/v1/nodes/{name}/proxy/{path}",
        path_params={"name": node, "path": f"checkpoint/{target}"}, query_params=query,
        header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()
    return api.response_deserialize(response, {"200": "object"}).data


def _error(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as e:
        call()
    return e.value.status, e.value.body if isinstance(e.value.body, str) else e.value.body.decode()


# ---------------------------------------------------------------------- checkpoints


def test_ok_returns_the_archive_path(kubeapi: KubeApi) -> None:
    core = _setup(kubeapi)
    (path,) = _checkpoint(kubeapi)["items"]
    assert path.startswith("/var/lib/kubelet/checkpoints/checkpoint-db-0_default-pg-")
    assert path.endswith(".tar")
    # The generated method types the answer as a string (of the decoded JSON).
    again = core.connect_post_node_proxy_with_path("node-a", "checkpoint/default/db-0/pg")
    assert "/var/lib/kubelet/checkpoints/checkpoint-db-0_default-pg-" in again
    assert kubeapi.server.checkpoints == kubeapi.kubelet.checkpoints
    assert kubeapi.kubelet.checkpoints[0] == path and len(kubeapi.kubelet.checkpoints) == 2
    assert _error(lambda: _checkpoint(kubeapi, "default/ghost/pg")) == (
        404, "pod does not exist")
    assert _error(lambda: _checkpoint(kubeapi, "default/db-0/nope")) == (
        404, "container nope does not exist")
    assert _error(lambda: _checkpoint(kubeapi, node="node-b")) == (404, "pod does not exist")
    with pytest.raises(ApiException) as e:  # the API server's own answer: a Status
        _checkpoint(kubeapi, node="node-z")
    assert e.value.status == 404
    assert status_body(e.value)["message"] == 'nodes "node-z" not found'
    assert len(kubeapi.kubelet.checkpoints) == 2
    assert kubeapi.requests.count("create", "nodes", "proxy") == 6


@pytest.mark.parametrize(("mode", "code", "body"), [
    ("gate-off", 404, "404 page not found\n"),
    ("unsupported", 500, "checkpointing of default/db-0/pg failed (rpc error: code = Unknown "
                         "desc = checkpoint/restore support not available)"),
    ("forbidden", 403, "Forbidden (user=kube-apiserver-kubelet-client, verb=create, "
                       "resource=nodes, subresource=checkpoint)"),
])
def test_failure_modes(kubeapi: KubeApi, mode: str, code: int, body: str) -> None:
    core = _setup(kubeapi)
    kubeapi.kubelet.checkpoint_mode = mode
    assert _error(lambda: core.connect_post_node_proxy_with_path(
        "node-a", "checkpoint/default/db-0/pg")) == (code, body)
    assert kubeapi.kubelet.checkpoints == []


def test_slow_honours_the_timeout(kubeapi: KubeApi) -> None:
    _setup(kubeapi)
    kubeapi.kubelet.checkpoint_mode = "slow"
    kubeapi.kubelet.checkpoint_delay = 0.05
    assert len(_checkpoint(kubeapi, timeout="1")["items"]) == 1
    kubeapi.kubelet.checkpoint_delay = 1.5  # longer than the caller allows
    assert _error(lambda: _checkpoint(kubeapi, timeout="1")) == (
        500, "checkpointing of default/db-0/pg failed (rpc error: code = DeadlineExceeded "
             "desc = context deadline exceeded)")
    assert _error(lambda: _checkpoint(kubeapi, timeout="soon")) == (
        404, "cannot parse value of timeout parameter")
    assert len(kubeapi.kubelet.checkpoints) == 1


def test_modes_per_node(kubeapi: KubeApi) -> None:
    core = _setup(kubeapi)
    kubeapi.seed(kubeapi.pod("db-1", node="node-b", containers=[kubeapi.container("pg")]))
    kubeapi.kubelet.set_checkpoint_mode("node-b", "unsupported")
    assert core.connect_post_node_proxy_with_path("node-a", "checkpoint/default/db-0/pg")
    status, _ = _error(lambda: core.connect_post_node_proxy_with_path(
        "node-b", "checkpoint/default/db-1/pg"))
    assert status == 500
    assert kubeapi.kubelet.checkpoint_mode_for("node-b") == "unsupported"
    assert kubeapi.kubelet.checkpoint_mode_for("node-a") == "ok"
    with pytest.raises(ValueError, match="unknown checkpoint mode"):
        kubeapi.kubelet.set_checkpoint_mode("node-a", "flaky")


# ---------------------------------------------------------------------- jobs


def _job(name: str) -> JSON:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "run", "image": "registry.example/job:1"}]}}}}


def _finished(batch: Any, rv: str, name: str) -> JSON:
    """The Job's state once a watch shows it Complete or Failed."""
    w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    last: JSON = {}
    for ev in w.stream(batch.list_namespaced_job, "default", resource_version=rv,
                       field_selector=f"metadata.name={name}", timeout_seconds=WAIT):
        last = ev["raw_object"]
        kinds = {c["type"] for c in (last.get("status") or {}).get("conditions") or []}
        if kinds & {"Complete", "Failed"}:
            w.stop()
    assert (last.get("status") or {}).get("conditions"), f"{name} never finished: {last}"
    return last


def test_jobs_complete_or_fail(kubeapi: KubeApi) -> None:
    batch = typed_api(kubernetes.client.BatchV1Api, kubeapi.api_client())
    kubeapi.kubelet.fail_jobs(r"^nightly-", "Job has reached the specified backoff limit")
    rv = batch.list_namespaced_job("default").metadata.resource_version
    batch.create_namespaced_job("default", _job("migrate"))
    batch.create_namespaced_job("default", _job("nightly-report"))
    done = _finished(batch, rv, "migrate")
    assert done["status"]["succeeded"] == 1 and done["status"]["active"] == 0
    assert [(c["type"], c["status"], c["reason"]) for c in done["status"]["conditions"]] == [
        ("SuccessCriteriaMet", "True", "CompletionsReached"),
        ("Complete", "True", "CompletionsReached")]
    assert done["status"]["completionTime"]
    failed = _finished(batch, rv, "nightly-report")
    assert failed["status"]["failed"] == 1 and "succeeded" not in failed["status"]
    assert [(c["type"], c["reason"], c["message"]) for c in failed["status"]["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert [j["metadata"]["name"] for j in kubeapi.server.jobs_created] == [
        "migrate", "nightly-report"]
    typed = batch.read_namespaced_job_status("migrate", "default")
    assert typed.status.succeeded == 1


def test_dry_run_and_seeded_jobs_do_not_run(kubeapi: KubeApi) -> None:
    batch = typed_api(kubernetes.client.BatchV1Api, kubeapi.api_client())
    batch.create_namespaced_job("default", _job("rehearsal"), dry_run="All")
    seeded = copy.deepcopy(_job("history"))
    seeded["metadata"]["namespace"] = "default"
    kubeapi.seed(seeded)
    assert kubeapi.kubelet.settled()
    assert kubeapi.server.jobs_created == []
    assert not (kubeapi.get("batch/v1", "Job", "history").get("status") or {}).get("conditions")
