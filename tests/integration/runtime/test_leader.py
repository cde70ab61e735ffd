"""Leader election (reconciler.leader) against the test Kubernetes API server.

Short durations (lease 1 s, renew deadline 0.6 s, retry 0.1 s) keep each case to a few
seconds. Cases:
- two candidates: exactly one leads and keeps renewing; the other waits past a whole lease
  duration without taking over.
- a leader that releases on stop: the standby takes over well before a lease duration;
  leaseTransitions goes up by one; acquireTime and holder change.
- a leader that crashes (stops renewing, no release): the standby takes over only once the
  lease duration has passed since the last renewal it saw.
- renewals failing with 500s for longer than the renew deadline: `lost` is set before the
  lease could expire for others, run_as_leader calls on_lost, stops the work, returns 1.
- another holder showing up in the record: the leader declares the lease lost at once.
- 409 races: two candidates creating the lease at once (AlreadyExists), and two updating a
  released lease from the same resourceVersion (Conflict): one leads, the other stays a
  follower, leaseTransitions goes up once.
- temporary errors while acquiring (429, 503, a timed-out request) are retried.
- run_as_leader: disabled runs the work directly without touching leases; stop before
  leading returns 0 without running the work; a normal stop returns 0 and releases.
- RBAC with the chart's Role and RoleBinding: the service account elects in the release
  namespace; in another namespace it gets a PermanentError naming the lease and namespace.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from reconciler.config import settings
from reconciler.domain import errors
from reconciler.runtime import leader
from tests import chart_rbac
from tests.fakes.kubeapi.handle import KubeApi

LEASE = "test-leader"
LEASE_DURATION, RENEW_DEADLINE, RETRY = 1.0, 0.6, 0.1


def lease_settings(identity: str, namespace: str = "default",
                   **kw: Any) -> settings.LeaderSettings:
    return settings.LeaderSettings(enabled=True, lease_name=LEASE, namespace=namespace,
                                 identity=identity, lease_duration=LEASE_DURATION,
                                 renew_deadline=RENEW_DEADLINE, retry_period=RETRY, **kw)


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Candidate:
    """One elector acquiring in a thread, as `reconciler run` would."""

    def __init__(self, client: Any, identity: str, namespace: str = "default") -> None:
        self.identity = identity
        self.standby = threading.Event()
        self.elector = leader.Elector(client, lease_settings(identity, namespace),
                                      on_standby=self.standby.set)
        self.stop = threading.Event()
        self.acquired = threading.Event()
        self.acquired_at = 0.0
        self.acquired_wall = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if self.elector.acquire(self.stop):
                self.acquired_at = time.monotonic()
                self.acquired_wall = time.time()
                self.acquired.set()
        except BaseException as e:
            self.error = e

    def start(self) -> Candidate:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)
        self.elector.release()


@pytest.fixture
def candidates(kubeapi: KubeApi) -> Iterator[Callable[..., Candidate]]:
    made: list[Candidate] = []

    def make(identity: str, client: Any = None, namespace: str = "default") -> Candidate:
        c = Candidate(client or kubeapi.api_client(), identity, namespace)
        made.append(c)
        return c

    yield make
    kubeapi.faults.clear()
    for c in made:
        c.close()


def start_run(client: Any, cfg: settings.LeaderSettings, stop: threading.Event,
              work: Callable[[threading.Event], object],
              **kw: Any) -> tuple[threading.Thread, dict[str, int]]:
    """run_as_leader in a daemon thread (a failed test must not hang the run); its return
    code lands in out["rc"]."""
    out: dict[str, int] = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "rc", leader.run_as_leader(client, cfg, stop, work, **kw)), daemon=True)
    t.start()
    return t, out


def lease(kubeapi: KubeApi, namespace: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = kubeapi.get("coordination.k8s.io/v1", "Lease", LEASE,
                                       namespace)["spec"]
    return spec


# --------------------------------------------------------------------------- one leader


def test_one_leads_the_other_waits(kubeapi: KubeApi,
                                   candidates: Callable[..., Candidate]) -> None:
    a = candidates("a").start()
    assert a.acquired.wait(3), a.error
    b = candidates("b").start()
    assert b.standby.wait(3), b.error
    # Longer than a lease duration: only the renewals can keep b out.
    assert not b.acquired.wait(LEASE_DURATION * 1.5)
    assert a.elector.is_leader() and not b.elector.is_leader()
    assert not a.elector.lost.is_set()
    spec = lease(kubeapi)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] != spec["renewTime"]  # renewed since acquisition
    assert b.elector.holder == "a"
    assert kubeapi.requests.count("update", "leases") >= 5  # a renews every retry period


def test_release_hands_over_at_once(kubeapi: KubeApi,
                                    candidates: Callable[..., Candidate]) -> None:
    a = candidates("a").start()
    assert a.acquired.wait(3), a.error
    b = candidates("b").start()
    assert b.standby.wait(3), b.error
    before = lease(kubeapi)
    released_at = time.monotonic()
    assert a.elector.release() is True
    assert not a.elector.is_leader()
    assert b.acquired.wait(3), b.error
    assert b.acquired_at - released_at < LEASE_DURATION / 2
    after = lease(kubeapi)
    assert after["holderIdentity"] == "b"
    assert after["leaseTransitions"] == before["leaseTransitions"] + 1
    assert after["acquireTime"] != before["acquireTime"]
    assert not a.elector.lost.is_set()  # released, not lost


def test_crashed_leader_is_replaced_after_the_lease_duration(
        kubeapi: KubeApi, candidates: Callable[..., Candidate]) -> None:
    a = candidates("a").start()
    assert a.acquired.wait(3), a.error
    b = candidates("b").start()
    assert b.standby.wait(3), b.error
    a.elector.stop_renewing()  # a crash: no more renewals, no release
    crashed_at = time.monotonic()
    last = lease(kubeapi)
    assert last["holderIdentity"] == "a"
    assert b.acquired.wait(3), b.error
    # a wrote renewTime (same machine, same clock) before the server stored that renewal,
    # and b can only have seen it after: b must wait a whole lease duration beyond it.
    renewed = datetime.strptime(last["renewTime"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    assert b.acquired_wall >= renewed + LEASE_DURATION
    assert b.acquired_at - crashed_at <= 2 * LEASE_DURATION  # but not much longer
    spec = lease(kubeapi)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert a.elector.release() is False  # a's stale resourceVersion: b keeps the lease
    assert lease(kubeapi)["holderIdentity"] == "b"


# --------------------------------------------------------------------------- losing it


def test_failing_renewals_lose_the_lease_and_stop_the_work(kubeapi: KubeApi) -> None:
    started, work_stopped = threading.Event(), threading.Event()
    out: dict[str, Any] = {}

    def work(ev: threading.Event) -> None:
        started.set()
        ev.wait(10)
        out["stopped_at"] = time.monotonic()
        work_stopped.set()

    def on_lost() -> None:
        out["on_lost_at"] = time.monotonic()
        out["work_running"] = not work_stopped.is_set()

    stop = threading.Event()
    t, rc = start_run(kubeapi.api_client(), lease_settings("a"), stop, work, on_lost=on_lost)
    try:
        assert started.wait(3)
        rule = kubeapi.faults.fail_next(10_000, 500, verb="update", resource="leases")
        failing_since = time.monotonic()
        assert work_stopped.wait(3)
        t.join(3)
        assert rc == {"rc": 1}
        lost_after = out["stopped_at"] - failing_since
        # Retried within the renew deadline (one failure is not a loss), and lost once the
        # deadline passed since the last good renewal: before the lease could expire.
        assert rule.hits >= 3
        assert out["work_running"] is True  # on_lost comes while the work may still run
        assert out["on_lost_at"] <= out["stopped_at"]
        assert RENEW_DEADLINE / 2 <= lost_after < LEASE_DURATION
        assert not stop.is_set()  # the caller's event is left alone
    finally:
        stop.set()
        t.join(5)
        kubeapi.faults.clear()


def test_another_holder_means_lost_at_once(kubeapi: KubeApi,
                                           candidates: Callable[..., Candidate]) -> None:
    a = candidates("a").start()
    assert a.acquired.wait(3), a.error

    def usurp(obj: dict[str, Any]) -> None:
        obj["spec"]["holderIdentity"] = "intruder"

    changed_at = time.monotonic()
    kubeapi.modify("coordination.k8s.io/v1", "Lease", LEASE, usurp)
    assert a.elector.lost.wait(3)
    # Seen at the next renewal (one retry period), not after the whole renew deadline.
    assert time.monotonic() - changed_at < RETRY * 3.5
    assert lease(kubeapi)["holderIdentity"] == "intruder"  # and nothing written back


# --------------------------------------------------------------------------- races


def test_race_to_create_the_lease(kubeapi: KubeApi, candidates: Callable[..., Candidate],
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.runtime.leader")
    # a reads "no lease", then its create is held back while b reads and creates.
    kubeapi.faults.delay(0.5, n=1, verb="create", resource="leases")
    a = candidates("a").start()
    assert wait_for(lambda: kubeapi.requests.count("create", "leases") == 1)
    b = candidates("b").start()
    assert b.acquired.wait(3), b.error
    assert wait_for(lambda: kubeapi.requests.count("create", "leases") == 2)
    assert a.standby.wait(3), a.error
    assert not a.acquired.is_set() and a.error is None
    assert lease(kubeapi)["holderIdentity"] == "b"
    assert len(kubeapi.items("coordination.k8s.io/v1", "Lease", "default")) == 1
    assert any("lost the race to create" in r.getMessage() for r in caplog.records)


def test_race_to_take_a_released_lease(kubeapi: KubeApi,
                                       candidates: Callable[..., Candidate],
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.runtime.leader")
    kubeapi.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": LEASE, "namespace": "default"},
                  "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                           "leaseTransitions": 4}})
    # Both read the same resourceVersion; a's update reaches the server after b's.
    kubeapi.faults.delay(0.5, n=1, verb="update", resource="leases")
    a = candidates("a").start()
    assert wait_for(lambda: kubeapi.requests.count("update", "leases") == 1)
    b = candidates("b").start()
    assert b.acquired.wait(3), b.error
    assert a.standby.wait(3), a.error
    assert not a.acquired.is_set() and a.error is None
    spec = lease(kubeapi)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 5  # one transition, not two
    assert any("lost the race to update" in r.getMessage() for r in caplog.records)


def test_temporary_errors_while_acquiring_are_retried(
        kubeapi: KubeApi, candidates: Callable[..., Candidate]) -> None:
    kubeapi.faults.fail_next(1, 429, verb="get", resource="leases", retry_after=1)
    kubeapi.faults.fail_next(1, "timeout", verb="get", resource="leases", seconds=1.0)
    kubeapi.faults.fail_next(1, 503, verb="create", resource="leases")
    a = candidates("a").start()
    assert a.acquired.wait(4), a.error
    assert kubeapi.faults.pending == 0
    assert kubeapi.requests.count("create", "leases") == 2
    assert lease(kubeapi)["holderIdentity"] == "a"


# --------------------------------------------------------------------------- run_as_leader


def test_run_as_leader_disabled_runs_the_work_directly(kubeapi: KubeApi) -> None:
    stop = threading.Event()
    seen: list[threading.Event] = []
    cfg = settings.LeaderSettings(enabled=False)  # no namespace needed either
    assert leader.run_as_leader(kubeapi.api_client(), cfg, stop, seen.append) == 0
    assert seen == [stop]
    with pytest.raises(errors.ConfigError, match="namespace"):  # enabled: it must know where
        leader.run_as_leader(kubeapi.api_client(), dataclasses.replace(cfg, enabled=True),
                             stop, seen.append)
    assert seen == [stop]
    assert kubeapi.requests.count(resource="leases") == 0


def test_run_as_leader_stopped_while_standing_by(kubeapi: KubeApi,
                                                 candidates: Callable[..., Candidate]) -> None:
    a = candidates("a").start()
    assert a.acquired.wait(3), a.error
    stop, standby = threading.Event(), threading.Event()
    ran: list[threading.Event] = []
    t, out = start_run(kubeapi.api_client(), lease_settings("b"), stop, ran.append,
                       on_standby=standby.set)
    try:
        assert standby.wait(3)
    finally:
        stop.set()
        t.join(3)
    assert out == {"rc": 0} and ran == []
    assert lease(kubeapi)["holderIdentity"] == "a"


def test_run_as_leader_normal_stop_releases(kubeapi: KubeApi) -> None:
    stop, started = threading.Event(), threading.Event()

    def work(ev: threading.Event) -> None:
        started.set()
        assert lease(kubeapi)["holderIdentity"] == "a"  # acting only while holding it
        ev.wait(10)

    t, out = start_run(kubeapi.api_client(), lease_settings("a"), stop, work)
    try:
        assert started.wait(3)
    finally:
        stop.set()
        t.join(3)
    assert out == {"rc": 0}
    spec = lease(kubeapi)
    assert spec["holderIdentity"] == ""  # released: a standby need not wait
    assert spec["leaseTransitions"] == 0


# --------------------------------------------------------------------------- RBAC


def test_rbac_with_the_charts_role(kubeapi: KubeApi,
                                   candidates: Callable[..., Candidate]) -> None:
    role, bindings = chart_rbac.roles(), chart_rbac.bindings()
    assert "kind: Role\n" in role and "leases" in role
    assert "kind: RoleBinding" in bindings
    kubeapi.ensure_namespace("dakr-operator")
    kubeapi.enable_rbac(role, bindings)
    sa = kubeapi.service_account_client("dakr-operator", "dakr-reconciler")

    a = candidates("a", client=sa, namespace="dakr-operator").start()
    assert a.acquired.wait(3), a.error
    assert lease(kubeapi, "dakr-operator")["holderIdentity"] == "a"

    elsewhere = candidates("b", client=sa, namespace="default").start()
    assert wait_for(lambda: elsewhere.error is not None)
    err = elsewhere.error
    assert isinstance(err, errors.PermanentError), err
    assert f"lease '{LEASE}'" in str(err) and "namespace 'default'" in str(err)
    assert "forbidden" in str(err).lower()
    assert not kubeapi.exists("coordination.k8s.io/v1", "Lease", LEASE, "default")

    with pytest.raises(errors.PermanentError, match="namespace 'default'"):
        leader.run_as_leader(sa, lease_settings("c"), threading.Event(), lambda ev: None)
