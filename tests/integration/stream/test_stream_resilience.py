"""The stream client against the reference platform over real gRPC on loopback: failures.

Cases:
- the platform is killed mid-batch ten times (and restarted on the same port): every
  recommendation ends up stored exactly once (one ADDED in the store's change log, no
  MODIFIED), each is acked or covered by a later Hello.resume_from, and the cursor ends at
  the last sequence, and no reader thread outlives its connection;
- the platform stalls (alive, but stops sending and reading): the heartbeat watchdog ends
  the stream within its bound, the client reconnects, resumes and gets everything;
- a platform that ends every stream right after one batch (the batch and the end arrive
  together): each batch is stored and the next Hello resumes past it, so the same batch is
  not sent forever;
- a half-open path (a proxy that silently drops every byte): keepalive pings notice it
  within keepalive_time + keepalive_timeout (the watchdog is set far away), and the client
  recovers through a fresh connection;
- duplicates and garbage: redeliveries are acked as duplicates and change nothing, garbage
  is nacked with the offending field names, and the same stream keeps flowing;
- a message that makes validation itself fail (a bug, simulated) is nacked and the stream
  goes on, instead of killing the reader and coming back after every reconnect;
- an error that is not one of ours escaping a handler (a real OSError writing the
  platform's policy data) is nacked naming its type ("internal error: OSError: ..."),
  logged on one line, and the next messages are still stored, on the same connection
  (it used to end the stream thread);
- keepalive settings agree with the server's ping policy: pings every second on an idle
  stream keep one connection open; against gRPC's default policy (5 min) the same client
  is sent away (too_many_pings) and has to reconnect, which proves the check can fail.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from typing import Any

import pytest

from reconciler.adapters.opa import platform_data as policy_data
from reconciler.devtools import platform
from reconciler.domain import validation
from reconciler.stream.gen import stream_pb2
from tests.integration import stream_support as ss

N_KILL = 3000


def test_killed_mid_batch_ten_times_stores_everything_exactly_once(tmp_path: pathlib.Path
                                                                    ) -> None:
    docs = [ss.doc(i) for i in range(N_KILL)]
    # A small window bounds what one platform life can deliver (about the acks waited for,
    # plus what the kill's latency lets through, plus the window), so ten kills happen
    # well before the end of the feed.
    kw = {"window": 30, "batch": 10}
    srv = ss.server(docs, **kw)
    port = srv.port
    h = ss.harness(tmp_path, ss.fast_config(f"127.0.0.1:{port}")).start()
    servers = [srv]
    try:
        in_flight_at_kill = []
        for _ in range(10):
            pst = srv.state
            ss.wait(lambda p=pst: len(p.acks) >= 20, 30, "this platform to be streaming")
            in_flight_at_kill.append(pst.sent - len(pst.acks))
            srv.stop(None)  # abrupt: streams are cut wherever they are
            assert len(h.stored_ids()) < N_KILL, "the kill must happen mid-stream"
            srv = ss.server(docs, port=port, **kw)
            servers.append(srv)
        assert any(n > 0 for n in in_flight_at_kill), "no kill hit messages in flight"
        ss.wait(lambda: len(h.stored_ids()) == N_KILL, 30, "everything stored")
        ss.wait(lambda: h.state.cursor() == N_KILL, 10, "cursor at the end")
    finally:
        h.stop()
        srv.stop(None)
    assert h.stored_ids() == ss.ids(N_KILL)
    changes = h.changes()
    assert all(changes[("ADDED", i)] == 1 for i in ss.ids(N_KILL))
    assert not [key for key in changes if key[0] == "MODIFIED"]
    acked = {a for s in servers for a in s.state.acked_ids()}
    resumed = {docs[seq - 1]["spec"]["recommendationId"]
               for s in servers for seq in s.state.resumed}
    assert acked | resumed == ss.ids(N_KILL)
    assert sum(s.state.connections for s in servers) >= 11
    assert h.client.stats.stored == N_KILL
    # every connection's reader thread ended with it
    assert not [t for t in threading.enumerate() if t.name == "stream-reader"]


def test_stalled_platform_is_detected_by_the_heartbeat_watchdog(tmp_path: pathlib.Path) -> None:
    docs = [ss.doc(i) for i in range(120)]
    srv = ss.server(docs, faults=platform.Faults(stall_after=50), batch=8)
    timeout = 1.5
    h = ss.harness(tmp_path, ss.fast_config(srv.address, heartbeat_timeout=timeout)).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == 120, 20, "everything stored")
    finally:
        h.stop()
        srv.stop(None)
    st = srv.state
    assert len(st.stalls) == 2 and len(st.hellos) == 3
    for stall, hello in zip(st.stalls, st.hellos[1:], strict=True):
        # watchdog bound + the longest backoff + scheduling slack on a busy machine
        assert hello["time"] - stall < timeout + 0.5 + 1.0
    assert any("heartbeat watchdog" in r for r in h.client.stats.disconnects)
    assert [hl["resume_from"] for hl in st.hellos] == [0, 50, 100]


def test_a_platform_that_ends_every_stream_after_one_batch_still_gets_everything_stored(
        tmp_path: pathlib.Path) -> None:
    # Each connection: one batch of 5, then the platform aborts the call at once, so the
    # batch and the end arrive together. What arrived before the end must be stored (and
    # the cursor moved), or the platform resends the same batch after every reconnect
    # (once seen in CI: an `ingest --until-idle` that stored nothing).
    n, per = 40, 5
    docs = [ss.doc(i) for i in range(n)]
    srv = ss.server(docs, faults=platform.Faults(drop_after=per), batch=per)
    h = ss.harness(tmp_path, ss.fast_config(srv.address, backoff_max=0.05)).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == n, 30, "everything stored")
    finally:
        h.stop()
        srv.stop(None)
    resumes = [hl["resume_from"] for hl in srv.state.hellos]
    # every connection after the first resumes past the whole batch before it
    assert resumes[:n // per] == list(range(0, n, per)), resumes
    assert h.state.cursor() == n


def test_half_open_path_is_detected_by_keepalive(tmp_path: pathlib.Path) -> None:
    srv = ss.server([ss.doc(i) for i in range(10)])
    proxy = ss.BlackholeProxy(srv.port)
    cfg = ss.fast_config(f"127.0.0.1:{proxy.port}", heartbeat_timeout=60.0)
    h = ss.harness(tmp_path, cfg).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == 10, 10, "first batch stored")
        proxy.blackhole()
        cut = time.monotonic()
        srv.add(platform.build_feed([ss.doc(i) for i in range(10, 20)]))
        ss.wait(lambda: len(srv.state.hellos) == 2, 10, "a reconnect")
        detected = srv.state.hellos[1]["time"] - cut
        ss.wait(lambda: len(h.stored_ids()) == 20, 10, "second batch stored")
    finally:
        h.stop()
        proxy.close()
        srv.stop(None)
    # keepalive_time 1 s + keepalive_timeout 1 s, plus backoff and slack; the watchdog (60 s)
    # played no part.
    assert detected < 4.5
    assert not any("watchdog" in r for r in h.client.stats.disconnects)
    assert h.stored_ids() == ss.ids(20)


def test_duplicates_and_garbage_are_answered_and_the_stream_keeps_flowing(
        tmp_path: pathlib.Path) -> None:
    docs = [ss.doc(i) for i in range(100)]
    srv = ss.server(docs, faults=platform.Faults(garbage_every=10, duplicate_every=7), batch=4)
    h = ss.harness(tmp_path, ss.fast_config(srv.address))
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    st = srv.state
    assert st.connections == 1  # nothing made the stream restart
    assert h.stored_ids() == ss.ids(100)
    changes = h.changes()
    assert sum(changes.values()) == 100 and not [k for k in changes if k[0] == "MODIFIED"]
    nacks = st.nacks()
    garbage = {n["id"] for n in nacks}
    assert {f"garbage-{i}" for i in range(10)} == garbage
    fields = {n["id"]: n["fields"] for n in nacks}
    assert fields["garbage-0"] == ["document_json"]
    assert fields["garbage-1"] == ["(document)"]
    assert "spec.targetRef.kind" in fields["garbage-2"]
    assert "spec.containers[0].resources.requests.cpu" in fields["garbage-2"]
    dups = [a for a in st.acks if a["kind"] == "ack" and a["duplicate"]]
    assert dups, "the platform sent duplicates; they must be acked as such"
    firsts = [a for a in st.acks if a["kind"] == "ack" and not a["duplicate"]]
    assert sorted(a["id"] for a in firsts) == sorted(ss.ids(100))
    # acks for messages after the first garbage prove the stream went on
    assert max(a["sequence"] for a in firsts) > min(n["sequence"] for n in nacks)


@pytest.mark.parametrize(("min_ping_ms", "single_connection"), [
    (500, True),  # server allows the client's ping rate
    (300_000, False),  # gRPC's default: the client gets too_many_pings and reconnects
])
def test_keepalive_pings_match_the_server_policy(tmp_path: pathlib.Path, min_ping_ms: int,
                                                 single_connection: bool) -> None:
    srv = ss.server([ss.doc(0)], heartbeat_interval=30.0, min_ping_interval_ms=min_ping_ms)
    # gRPC clients send at most one ping a second, so 1 s is the fastest keepalive there is;
    # the third ping too soon is the server's limit (max_ping_strikes 2), ~4 s after connect.
    cfg = ss.fast_config(srv.address, keepalive_time_ms=1000, keepalive_timeout_ms=1000,
                         heartbeat_interval=30.0, heartbeat_timeout=60.0)
    h = ss.harness(tmp_path, cfg).start()
    try:
        ss.wait(lambda: len(h.stored_ids()) == 1, 10, "stored")
        if single_connection:
            time.sleep(5.0)  # long enough for the fourth ping, which would be sent away
        else:
            ss.wait(lambda: srv.state.connections >= 2, 10, "too_many_pings and a reconnect")
    finally:
        h.stop()
        srv.stop(None)
    assert (srv.state.connections == 1) is single_connection, h.client.stats.disconnects


def test_a_message_that_trips_a_validator_bug_is_nacked_not_retried_forever(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_parse = validation.parse

    def parse(doc: object) -> Any:
        if isinstance(doc, dict) and doc["spec"]["recommendationId"] == "rec-00003":
            raise RuntimeError("simulated validator bug")
        return real_parse(doc)

    monkeypatch.setattr(validation, "parse", parse)
    srv = ss.server([ss.doc(i) for i in range(8)])
    h = ss.harness(tmp_path, ss.fast_config(srv.address))
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    assert h.stored_ids() == ss.ids(8) - {"rec-00003"}
    (nack,) = srv.state.nacks()
    assert nack["id"] == "rec-00003" and "RuntimeError" in nack["reason"]
    assert srv.state.connections == 1


def _unwritable_data_file(tmp: pathlib.Path) -> pathlib.Path:
    """A platform-data path the file can be read from (it is absent) but not written to.

    The path fits the system's limit (PATH_MAX, 4096 bytes), the temporary file written
    beside it (a longer name) does not: writing fails with a real OSError
    (ENAMETOOLONG), as on a full disk or a read-only volume, which the tests, run as root,
    cannot otherwise get without mounting one."""
    parent = tmp
    while len(str(parent)) < 4080:
        parent /= "d" * min(200, 4080 - len(str(parent)) - 1)
    parent.mkdir(parents=True)
    assert len(str(parent)) == 4080
    return parent / "p.json"


def test_an_error_escaping_a_handler_is_nacked_and_the_stream_goes_on(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    data_file = _unwritable_data_file(tmp_path)
    feed = [stream_pb2.PlatformMessage(policy_update=stream_pb2.PolicyUpdate(
        sequence=1, id="p1", data_json='{"freeze": true}')),
        *platform.build_feed([ss.doc(i) for i in range(3)])[1:]]  # sequences 2 and 3
    srv = platform.PlatformServer(feed, heartbeat_interval=0.2).start()
    h = ss.harness(tmp_path, ss.fast_config(srv.address),
                   on_policy_update=lambda data: policy_data.update(data_file, data))
    try:
        h.client.run(until_idle=1.0)
    finally:
        srv.stop(None)
    (nack,) = srv.state.nacks()
    assert nack["sequence"] == 1 and nack["id"] == "p1"
    assert nack["reason"].startswith("(message): internal error: OSError: "), nack
    assert h.stored_ids() == ss.ids(3) - {"rec-00000"}
    assert srv.state.connections == 1 and h.client.stats.disconnects == ["idle"]
    assert h.state.cursor() == 3
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "message 1" in line.getMessage() and "OSError" in line.getMessage()
    assert "\n" not in line.getMessage() and line.exc_info is None  # the traceback: debug
