"""WATCH on the test API server through `kubernetes.watch.Watch`.

Cases:
- from a list's resourceVersion: ADDED, MODIFIED, DELETED in order, with increasing
  resourceVersions, objects deserialized by the client;
- without a resourceVersion: the current objects first as ADDED;
- label selectors: an object that stops matching arrives as DELETED, one that starts
  matching as ADDED;
- timeoutSeconds ends the stream; allowWatchBookmarks yields BOOKMARK events carrying the
  latest resourceVersion;
- a resourceVersion older than the retained window: an ERROR event with a 410 Expired
  Status, which the client raises as ApiException(410) (and a LIST with
  resourceVersionMatch=Exact gets 410 too);
- faults.drop_watches() ends open streams; the client's own retry resumes from the last
  resourceVersion without losing events;
- custom resources and leases can be watched too; watch requests are counted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, serve, typed_api

ApiException = kubernetes.client.exceptions.ApiException


@pytest.fixture
def kubeapi_factory() -> Iterator[Callable[..., KubeApi]]:
    """Servers with options, closed at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(serve(**options))


def _watch() -> Any:
    return kubernetes.watch.Watch()  # type: ignore[no-untyped-call]


def _collect(func: Any, n: int, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The first n events of a watch (the stream must end by itself via timeout_seconds)."""
    w = _watch()
    events = []
    for ev in w.stream(func, *args, **kwargs):
        events.append(ev)
        if len(events) >= n:
            w.stop()
    return events


def test_events_from_resource_version(kubeapi: KubeApi) -> None:
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", "default")
    events = _collect(core.list_namespaced_config_map, 3, "default", resource_version=rv,
                      timeout_seconds=5)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"].data == {"k": "2"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert kubeapi.requests.count("watch", "configmaps") == 1


def test_initial_state_without_resource_version(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.pod("a"), kubeapi.pod("b"))
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    events = _collect(core.list_namespaced_pod, 2, "default", timeout_seconds=5)
    assert sorted((e["type"], e["object"].metadata.name) for e in events) == [
        ("ADDED", "a"), ("ADDED", "b")]


def test_selector_transitions(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.pod("p", labels={"app": "web"}))
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "db"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "web"}}})
    events = _collect(core.list_namespaced_pod, 2, "default", label_selector="app=web",
                      resource_version=rv, timeout_seconds=5)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


def test_timeout_and_bookmarks(kubeapi_factory: Any) -> None:
    k = kubeapi_factory(bookmark_interval=0.2)
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    rv = core.list_namespaced_pod("default").metadata.resource_version
    k.seed(k.pod("a"))
    started = time.monotonic()
    events = list(_watch().stream(
        core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=1,
        allow_watch_bookmarks=True))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and "BOOKMARK" in types
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")
    assert int(bookmark["raw_object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"].metadata.resource_version)


def test_too_old_resource_version_is_410(kubeapi_factory: Any) -> None:
    k = kubeapi_factory(history=3)
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    with pytest.raises(ApiException) as e:
        list(_watch().stream(core.list_namespaced_config_map, "default",
                                             resource_version=rv, timeout_seconds=2))
    assert e.value.status == 410
    assert "Expired: too old resource version" in e.value.reason
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("default", resource_version=rv,
                                        resource_version_match="Exact")
    assert e.value.status == 410
    k.store.compact()
    latest = core.list_namespaced_config_map("default").metadata.resource_version
    events = _collect(core.list_namespaced_config_map, 0, "default", resource_version=latest,
                      timeout_seconds=1)
    assert events == []


def test_drop_watches_and_client_resume(kubeapi: KubeApi) -> None:
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    got: list[str] = []
    w = _watch()
    done = threading.Event()

    def consume() -> None:
        for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv):
            got.append(ev["object"].metadata.name)
            if len(got) == 2:
                w.stop()
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    try:
        core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        kubeapi.faults.drop_watches()
        core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
        assert done.wait(5)
    finally:
        w.stop()
        kubeapi.faults.drop_watches()
        t.join(5)
    assert got == ["before", "after"]
    assert kubeapi.requests.count("watch", "configmaps") == 2  # the client re-watched


def test_watch_custom_resources_and_leases(kubeapi: KubeApi) -> None:
    client = kubeapi.api_client()
    typed_api(kubernetes.client.ApiextensionsV1Api, client).create_custom_resource_definition({
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]}})
    custom = typed_api(kubernetes.client.CustomObjectsApi, client)
    custom.create_namespaced_custom_object("example.com", "v1", "default", "things", {
        "apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}})
    events = _collect(custom.list_namespaced_custom_object, 1, "example.com", "v1", "default",
                      "things", timeout_seconds=5)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "t"
    coord = typed_api(kubernetes.client.CoordinationV1Api, client)
    coord.create_namespaced_lease("default", {"metadata": {"name": "l"},
                                              "spec": {"holderIdentity": "me"}})
    events = _collect(coord.list_namespaced_lease, 1, "default", timeout_seconds=5)
    assert events[0]["object"].spec.holder_identity == "me"
