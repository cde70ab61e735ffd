"""Leader election for ``reconciler run`` on a coordination.k8s.io/v1 Lease.

The chart may run a second replica as a warm standby; only the replica holding the Lease may
act, otherwise two reconcilers would race on the same workloads and pull requests. This is
client-go's algorithm (controller-runtime defaults: lease 15 s, renew deadline 10 s, retry
2 s), written here rather than using ``kubernetes.leaderelection`` because that package
builds its API object on the global default configuration (we always pass an explicit
ApiClient), blocks a follower forever with no stop event, never releases on shutdown and
round-trips timestamps through ``str(datetime)``.

States of an :class:`Elector`::

    follower --acquire()--> leader --renew fails for renew_deadline, or another holder seen--> lost
        ^                      |
        +---- (new process) ---+--release()--> released (holderIdentity cleared)

Safety rests on three rules, as in client-go:

* A follower never trusts the holder's clock: it takes over only when the record has not
  changed for ``leaseDurationSeconds`` *as measured by its own monotonic clock since it last
  saw the record change*, or when the record has no holder (released).
* Every write is guarded by the resourceVersion read just before it, so of two candidates
  racing for the same record exactly one wins; the loser gets 409 and stays a follower.
* A leader that cannot renew within ``renew_deadline`` (shorter than the lease duration)
  declares the lease lost and must stop acting *before* any follower may take over.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3

from reconciler.adapters import kube
from reconciler.config import settings
from reconciler.domain import clock, errors

log = logging.getLogger("reconciler.runtime.leader")

JSON = dict[str, Any]

# --------------------------------------------------------------------------- elector


class _NotFound(Exception):
    """The lease does not exist (or vanished between a read and a write)."""


class _LostRace(Exception):
    """409: another candidate created or updated the lease first. Not an error."""


class Elector:
    """One candidate for one Lease. ``acquire`` blocks as a follower; once leading, a
    background thread renews every ``retry_period`` and sets ``lost`` when it cannot;
    ``release`` ends leadership cleanly and hands the lease over at once.

    ``on_standby`` is called (once) when a valid lease held by someone else is first seen:
    this replica is a healthy standby.
    """

    def __init__(self, api_client: Any, cfg: settings.LeaderSettings, *,
                 on_standby: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if not cfg.namespace:
            raise errors.ConfigError(
                "leader election needs a namespace for its lease: set POD_NAMESPACE or "
                "--leader-elect-namespace (the chart's Role grants leases in the release "
                "namespace only)")
        if not cfg.lease_name:
            raise errors.ConfigError(
                f"leader election needs a lease name: set {settings.ENV_LEASE} or "
                "--leader-elect-lease")
        self.settings = cfg
        self.identity = cfg.identity or settings.candidate_identity()
        self.name, self.namespace = cfg.lease_name, cfg.namespace
        self.lost = threading.Event()
        self._api = kubernetes.client.CoordinationV1Api(api_client)
        self._clock, self._wall = clock, wall
        self._on_standby = on_standby
        self._lock = threading.Lock()  # guards the record fields below
        self._lease: JSON | None = None          # last lease read or written by us
        self._observed_spec: JSON | None = None  # the record as last seen
        self._observed_at = 0.0                  # our clock when it last changed
        self._leading = False
        self._last_renew = 0.0                   # our clock before the last successful write
        self._renew_stop = threading.Event()
        self._renew_thread: threading.Thread | None = None
        self._shown_holder: str | None = None

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def is_leader(self) -> bool:
        """True while leading: acquired, not lost, not released."""
        return self._leading and not self.lost.is_set()

    @property
    def holder(self) -> str:
        """The holder in the record as last seen ("" when none or released)."""
        with self._lock:
            return str((self._observed_spec or {}).get("holderIdentity") or "")

    # ------------------------------------------------------------------ API (one place)

    def _translate(self, e: BaseException, verb: str) -> Exception:
        """Every API failure of the elector goes through here: 409 and 404 drive the state
        machine, 403 is a configuration problem worth a precise message, the rest is
        ``reconciler.adapters.kube``'s mapping (temporary: 429/5xx/timeouts/connections)."""
        err = kube.translate(e, f"{verb} lease {self.where}")
        if isinstance(err, errors.ConflictError):
            return _LostRace(str(err))
        if isinstance(err, errors.NotFoundError):
            return _NotFound(str(err))
        if isinstance(err, kube.Forbidden):
            return errors.PermanentError(
                f"leader election: not allowed to {verb} lease {self.name!r} in namespace "
                f"{self.namespace!r}; the service account needs get, create and update on "
                "leases (coordination.k8s.io) there: the chart's Role grants them in the "
                f"release namespace only ({err})")
        return err

    def _call(self, verb: str, fn: Callable[..., Any], *args: Any, timeout: float) -> JSON:
        try:
            # A number is urllib3's *total* timeout (connect + read): a renewal must not
            # outlive the renew deadline however the time is spent.
            resp = fn(*args, _preload_content=False, _request_timeout=float(timeout))
            try:
                data = resp.data
            finally:
                resp.release_conn()
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._translate(e, verb) from e
        try:
            body = json.loads(data) if data else {}
        except ValueError as e:
            raise errors.TemporaryError(f"{verb} lease {self.where}: unreadable answer") from e
        return body if isinstance(body, dict) else {}

    # ------------------------------------------------------------------ the record

    def _observe(self, lease: JSON) -> None:
        spec = dict(lease.get("spec") or {})
        with self._lock:
            if spec != self._observed_spec:
                self._observed_spec = spec
                self._observed_at = self._clock()

    def _spec(self, old: JSON | None, now: str) -> JSON:
        old = old or {}
        mine = old.get("holderIdentity") == self.identity
        transitions = int(old.get("leaseTransitions") or 0)
        if old and not mine:
            transitions += 1
        spec = dict(old)
        spec.update({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.settings.lease_duration)),
            "acquireTime": old.get("acquireTime") if mine and old.get("acquireTime") else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        })
        return spec

    def _try_acquire_or_renew(self, timeout: float) -> bool:
        """One round of client-go's tryAcquireOrRenew: True when we hold the lease after it.
        Raises TemporaryError / PermanentError; a lost race is just False."""
        now = clock.rfc3339(self._wall(), micro=True)
        try:
            lease: JSON | None = self._call("get", self._api.read_namespaced_lease,
                                            self.name, self.namespace, timeout=timeout)
        except _NotFound:
            lease = None
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None, now)}
            try:
                created = self._call("create", self._api.create_namespaced_lease,
                                     self.namespace, body, timeout=timeout)
            except _LostRace as e:
                log.debug("lost the race to create lease %s: %s", self.where, e)
                return False
            except _NotFound as e:
                raise errors.PermanentError(
                    f"leader election: cannot create lease {self.name!r}: namespace "
                    f"{self.namespace!r} does not exist ({e})") from e
            self._observe(created)
            with self._lock:
                self._lease = created
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
            with self._lock:
                valid = self._observed_at + duration > self._clock()
            if valid:
                self._show_holder(holder)
                return False
            log.info("lease %s held by %s expired (no renewal seen for %gs): taking over",
                     self.where, holder, duration)
        new = dict(lease)
        new["spec"] = self._spec(spec, now)
        try:
            updated = self._call("update", self._api.replace_namespaced_lease,
                                 self.name, self.namespace, new, timeout=timeout)
        except (_LostRace, _NotFound) as e:
            log.debug("lost the race to update lease %s: %s", self.where, e)
            return False
        self._observe(updated)
        with self._lock:
            self._lease = updated
        return True

    def _show_holder(self, holder: str) -> None:
        if holder == self._shown_holder:
            return
        first = self._shown_holder is None
        self._shown_holder = holder
        log.info("standing by: lease %s is held by %s", self.where, holder)
        if first and self._on_standby is not None:
            self._on_standby()

    # ------------------------------------------------------------------ follower

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this candidate holds the lease (True, renewing from then on) or
        ``stop`` is set (False). Temporary API errors are logged and retried; a permanent
        one (403: RBAC) is raised, since waiting would not fix it."""
        if self._leading or self._renew_stop.is_set():
            raise RuntimeError("an Elector acquires once: make a new one for a new election")
        s = self.settings
        log.info("waiting to lead: lease %s as %s", self.where, self.identity)
        while not stop.is_set():
            sent = self._clock()
            try:
                if self._try_acquire_or_renew(timeout=s.renew_deadline):
                    self._became_leader(sent)
                    return True
            except errors.TemporaryError as e:
                log.warning("leader election: %s (retrying)", e)
            # A little jitter so that candidates started together do not stay in step.
            if stop.wait(s.retry_period * random.uniform(1.0, 1.2)):
                break
        return False

    def _became_leader(self, sent: float) -> None:
        with self._lock:
            self._leading = True
            self._last_renew = sent
            spec = (self._lease or {}).get("spec") or {}
        log.info("became leader: lease %s as %s (transitions %s)", self.where, self.identity,
                 spec.get("leaseTransitions", 0))
        self._renew_thread = threading.Thread(target=self._renew_guarded, daemon=True,
                                              name=f"lease-renew-{self.name}")
        self._renew_thread.start()

    # ------------------------------------------------------------------ leader

    def _renew_guarded(self) -> None:
        """A renew thread that dies silently would leave a leader acting on a lease nobody
        renews: any unexpected failure counts as losing it."""
        try:
            self._renew_loop()
        except Exception as e:
            self._lose(f"renewal failed unexpectedly: {type(e).__name__}: {e}")

    def _renew_loop(self) -> None:
        """Renew every retry period; give up once a whole renew deadline has passed since
        the last successful renewal, or at once when another holder shows up. Each request
        may only use the time left before the deadline, so a hung request cannot keep a
        leader acting past it."""
        s = self.settings
        with self._lock:
            last_ok = self._last_renew
        next_try = last_ok + s.retry_period
        last_err: Exception | None = None
        while True:
            deadline = last_ok + s.renew_deadline
            if self._renew_stop.wait(max(0.0, min(next_try, deadline) - self._clock())):
                return
            sent = self._clock()
            if sent >= deadline:
                self._lose(f"could not renew within the renew deadline ({s.renew_deadline:g}s)"
                           + (f": {last_err}" if last_err else ""))
                return
            try:
                ok = self._try_acquire_or_renew(timeout=max(0.05, deadline - sent))
            except errors.ReconcilerError as e:
                ok, last_err = False, e
                log.warning("leader election: renewing lease %s failed: %s", self.where, e)
            if ok:
                last_ok, last_err = sent, None
                with self._lock:
                    self._last_renew = sent
                next_try = sent + s.retry_period
                continue
            holder = self.holder
            if holder and holder != self.identity:
                self._lose(f"the lease is now held by {holder}")
                return
            next_try = self._clock() + s.retry_period

    def _lose(self, why: str) -> None:
        log.error("lost leadership of lease %s (%s): %s", self.where, self.identity, why)
        self.lost.set()

    def stop_renewing(self) -> None:
        """Stop the renew thread without touching the lease: what a crashed or cut-off
        leader looks like to the others, who take over after the lease duration."""
        self._renew_stop.set()
        t = self._renew_thread
        if t is not None and t is not threading.current_thread():
            t.join()

    def release(self) -> bool:
        """Stop renewing and, if the record still names us, clear holderIdentity (guarded by
        the resourceVersion we last wrote) so a standby takes over at once instead of
        waiting a lease duration (client-go's ReleaseOnCancel). Never raises: if it fails,
        the lease simply expires. Returns True when the lease was released."""
        self.stop_renewing()
        was_leading, self._leading = self._leading, False
        with self._lock:
            lease = self._lease
        spec = (lease or {}).get("spec") or {}
        if lease is None or spec.get("holderIdentity") != self.identity:
            return False
        now = clock.rfc3339(self._wall(), micro=True)
        new = dict(lease)
        new["spec"] = dict(spec, holderIdentity="", leaseDurationSeconds=1, acquireTime=now,
                           renewTime=now)
        try:
            updated = self._call("update", self._api.replace_namespaced_lease, self.name,
                                 self.namespace, new, timeout=self.settings.renew_deadline)
        except (_LostRace, _NotFound):
            log.info("not releasing lease %s: someone else changed it first", self.where)
            return False
        except errors.ReconcilerError as e:
            log.warning("could not release lease %s (it will expire instead): %s",
                        self.where, e)
            return False
        self._observe(updated)
        with self._lock:
            self._lease = updated
        log.info("released lease %s%s", self.where, "" if was_leading else " (after losing it)")
        return True


# --------------------------------------------------------------------------- run


def run_as_leader(api_client: Any, cfg: settings.LeaderSettings, stop: threading.Event,
                  work: Callable[[threading.Event], object], *,
                  on_standby: Callable[[], object] | None = None,
                  on_lost: Callable[[], object] | None = None) -> int:
    """Run ``work`` only while leading. Without election, ``work(stop)`` and 0. With it:
    wait as a standby until leading (0 if ``stop`` comes first), then ``work(event)``, where
    the event is set on ``stop`` or when the lease is lost; release on the way out. Returns
    1 when the lease was lost (the caller exits non-zero, the pod restarts and rejoins as a
    standby), else 0. Raises PermanentError when the lease cannot be used at all (RBAC).

    ``on_standby``: called once when another replica is seen leading (a healthy standby).
    ``on_lost``: called once, at the moment the lease is lost, while ``work`` may still be
    finishing a round: the place for a watchdog that exits hard if it does not return
    before a standby may take over (controller-runtime exits at once)."""
    if not cfg.enabled:
        work(stop)
        return 0
    elector = Elector(api_client, cfg, on_standby=on_standby)
    if not elector.acquire(stop):
        log.info("stopped before leading lease %s", elector.where)
        return 0
    combined = threading.Event()

    def bridge() -> None:
        # Polls both instead of chaining callbacks: `stop` belongs to the caller.
        while not combined.is_set():
            if elector.lost.is_set():
                combined.set()
                if on_lost is not None:
                    on_lost()
            elif stop.wait(0.05):
                combined.set()

    link = threading.Thread(target=bridge, daemon=True, name="leader-stop")
    link.start()
    try:
        work(combined)
    finally:
        combined.set()
        link.join()
        elector.release()
    if elector.lost.is_set():
        log.error("exiting: lease %s was lost while leading", elector.where)
        return 1
    return 0
