"""plan_drain / classify: which pods of a node a drain evicts, waits for, skips or refuses.

Cases (table):
- a ReplicaSet / StatefulSet pod is evicted;
- finished pods (Succeeded, Failed) are skipped, even bare or with emptyDir;
- mirror (static) pods are skipped always, even with ignore_daemonsets=False;
- DaemonSet pods are skipped with ignore_daemonsets, block without it;
- a pod with a deletionTimestamp is waited for, not evicted again;
- a bare pod (no owner, or owners without controller=true) blocks, or is evicted with
  bare_pods="evict";
- an emptyDir volume blocks unless delete_emptydir_data (other volumes do not);
- karpenter.sh/do-not-disrupt "true" blocks unless respect_do_not_disrupt=False;
- a pod both bare and with emptyDir names both reasons.
Plan: pods bound to another node are ignored; the plan keeps the order and uid of the
pods; ok is False as soon as one pod blocks. Options: invalid values are refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.direct import drain
from reconciler.domain import errors

JSON = dict[str, Any]


def pod(name: str, *, owner: str | None = "ReplicaSet", phase: str = "Running",
        node: str = "node-a", annotations: dict[str, str] | None = None,
        volumes: list[JSON] | None = None, terminating: bool = False,
        controller: bool = True) -> JSON:
    meta: JSON = {"name": name, "namespace": "shop", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "web",
                                    "uid": "owner-uid", "controller": controller}]
    if annotations:
        meta["annotations"] = annotations
    if terminating:
        meta["deletionTimestamp"] = "2026-11-25T00:00:00Z"
    spec: JSON = {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": phase}}


EMPTYDIR = [{"name": "cache", "emptyDir": {}}]
CONFIGMAP = [{"name": "conf", "configMap": {"name": "conf"}}]
MIRROR = {drain.MIRROR_ANNOTATION: "abc123"}
DEFAULT = drain.DrainOptions()


@pytest.mark.parametrize(
    ("the_pod", "options", "fate", "why_contains"),
    [
        (pod("rs"), DEFAULT, "evict", "evictable"),
        (pod("sts", owner="StatefulSet"), DEFAULT, "evict", "evictable"),
        (pod("rs-conf", volumes=CONFIGMAP), DEFAULT, "evict", "evictable"),
        (pod("done", phase="Succeeded"), DEFAULT, "skip", "finished (Succeeded)"),
        (pod("crashed", phase="Failed", owner=None, volumes=EMPTYDIR), DEFAULT, "skip",
         "finished (Failed)"),
        (pod("static", owner="Node", annotations=MIRROR), DEFAULT, "skip", "mirror"),
        (pod("static2", owner=None, annotations=MIRROR),
         drain.DrainOptions(ignore_daemonsets=False), "skip", "mirror"),
        (pod("ds", owner="DaemonSet"), DEFAULT, "skip", "DaemonSet web"),
        (pod("ds2", owner="DaemonSet"), drain.DrainOptions(ignore_daemonsets=False), "block",
         "ignore_daemonsets"),
        (pod("going", terminating=True), DEFAULT, "wait", "terminating"),
        (pod("going-bare", owner=None, terminating=True), DEFAULT, "wait", "terminating"),
        (pod("bare", owner=None), DEFAULT, "block", "no controller"),
        (pod("loose", controller=False), DEFAULT, "block", "no controller"),
        (pod("bare-ok", owner=None), drain.DrainOptions(bare_pods="evict"), "evict",
         "evictable"),
        (pod("scratch", volumes=EMPTYDIR), DEFAULT, "block", "emptyDir volume(s) cache"),
        (pod("scratch-ok", volumes=EMPTYDIR), drain.DrainOptions(delete_emptydir_data=True),
         "evict", "evictable"),
        (pod("pinned", annotations={drain.DO_NOT_DISRUPT: "true"}), DEFAULT, "block",
         "do-not-disrupt"),
        (pod("pinned-no", annotations={drain.DO_NOT_DISRUPT: "false"}), DEFAULT, "evict",
         "evictable"),
        (pod("pinned-ok", annotations={drain.DO_NOT_DISRUPT: "true"}),
         drain.DrainOptions(respect_do_not_disrupt=False), "evict", "evictable"),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else None,
)
def test_classify(the_pod: JSON, options: drain.DrainOptions, fate: str,
                  why_contains: str) -> None:
    got_fate, why = drain.classify(the_pod, options)
    assert (got_fate, why_contains in why) == (fate, True), why


def test_both_reasons_are_named() -> None:
    fate, why = drain.classify(pod("worst", owner=None, volumes=EMPTYDIR), DEFAULT)
    assert fate == "block"
    assert "no controller" in why and "emptyDir volume(s) cache" in why


def test_plan_sorts_pods_in_order() -> None:
    pods = [pod("a"), pod("ds", owner="DaemonSet"), pod("b", owner="StatefulSet"),
            pod("going", terminating=True), pod("elsewhere", node="node-b"),
            pod("done", phase="Succeeded")]
    plan = drain.plan_drain("node-a", pods, DEFAULT)
    assert plan.ok
    assert plan.evict == (drain.PodRef("shop", "a", "uid-a"), drain.PodRef("shop", "b", "uid-b"))
    assert plan.wait == (drain.PodRef("shop", "going", "uid-going"),)
    assert [(ns, name) for ns, name, _ in plan.skipped] == [("shop", "ds"), ("shop", "done")]
    assert plan.blocking == ()


@pytest.mark.parametrize(
    ("pods", "blocking_names"),
    [
        ([pod("a"), pod("bare", owner=None)], ["bare"]),
        ([pod("bare", owner=None), pod("scratch", volumes=EMPTYDIR), pod("a")],
         ["bare", "scratch"]),
        ([pod("a"), pod("b")], []),
        ([], []),
    ],
)
def test_plan_blocking(pods: list[JSON], blocking_names: list[str]) -> None:
    plan = drain.plan_drain("node-a", pods, DEFAULT)
    assert [name for _, name, _ in plan.blocking] == blocking_names
    assert plan.ok == (not blocking_names)


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"retry_interval": -1}, {"poll_interval": 0}, {"bare_pods": "delete"}],
)
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        drain.DrainOptions(**kwargs)
