"""Fuzzing the stream's message handler (``stream.client.StreamClient``).

What the platform sends is untrusted: a bad message must be refused on its own (a Nack
naming the field and the reason), never take the operator down or lose the messages around
it. Every example drives the real handler with real protobuf messages: each message is
serialised and parsed back (the wire), split and validated by ``StreamClient._unpack`` (what
the reader thread does) and answered by ``StreamClient._handle`` (what the store thread
does: store writes, replies, cursor), on a real SQLite store and stream state in a fresh
temporary directory. Policy updates go to the real platform-data file
(``adapters.opa.platform_data.update``, with the limits the engine reads it with),
rollback requests to the real ``runtime.rollbacks.request``, CRDs to a recording stand-in
for the Kubernetes API (the real adapter needs a cluster). Two tests run over gRPC on
loopback: a hostile feed against the reference platform server, and bytes protobuf
refuses from a raw server.

Cases covered (hypothesis; profiles in tests/fuzz/conftest.py):
- every message body the stream defines (Recommendation, RecommendationBatch, CrdUpdate,
  RollbackRequest, PolicyUpdate, Heartbeat, UpstreamAck, an empty message), with random ids
  and sequences (0, the int64 and uint64 edges), carrying as JSON: arbitrary text; JSON
  token soup; JSON garbled (truncated, a character dropped, inserted or replaced); nesting
  up to thousands of levels; long strings (past the 1 MiB string limit in the examples);
  numbers beyond float and past the int-str digit limit; escaped lone surrogates, raw
  control characters, characters libyaml refuses; the recommendation samples mutated
  (test_fuzz_recommendations' ``mutated_documents``); CRDs and policy data mutated from
  valid ones. Each message with a sequence gets exactly one Ack or Nack for it, nothing
  escapes the handler, a Nack names a field and a reason (never a catch-all's "could not
  be validated" or "internal error") and stays small (16 KiB), a recommendation is acked
  exactly when stored, an installed CRD is always in an allowed group, platform data left
  by an acked update is strict JSON the policy engine's reader loads within the same
  limits, the cursor is the highest
  sequence handled, and a valid message sent next is still acked and stored ("one bad
  object never stops the operator");
- a batch mixing hostile messages with valid recommendations (alone or inside a
  RecommendationBatch) and rollback requests naming a valid one sent before them in the
  same batch: every valid message is acked, every valid recommendation stored as
  validated; the store holds exactly what was acked, every acked document passes
  ``validation.parse``, the cursor is the highest sequence;
- redelivery (the whole batch again after a lost ack, or every message twice in one
  batch): the same answers; a recommendation's second ack is a duplicate and records,
  change log and platform data are unchanged, no record is added twice. Two exceptions,
  by design: a batch carrying two versions of one id replays both (same end state, new
  resource version); a redelivered rollback request is recorded again (one
  RollbackRequested condition, its time may move);
- small limits (depth 8, string 1000, bytes 64 KiB, documents 50) broken in document_json
  (alone or in a batch), crd_json or data_json: nacked on that field with the limit's name
  and value in the reason; the same message within the limits is not refused for a limit;
- wire bytes protobuf refuses (a string made invalid UTF-8, a byte overwritten, the end
  cut off) from messages of every body: the stream's deserializer
  (``client.read_platform_message``) never raises; what protobuf parses comes out as
  protobuf reads it; what it refuses comes out as the items with a readable sequence, each
  parsed on its own or refused with a small nack naming the string field (or
  ``(message)``); when only a string was broken, no item with a sequence is lost;
- over gRPC on loopback: a feed of the hostile examples between valid recommendations is
  answered message by message on one connection, the valid ones stored; from a raw
  server, strings that are not UTF-8 (a recommendation's id, its document, one of two in a
  batch, a CRD, policy data), one such message without a sequence and one cut short: each
  item with a sequence is nacked naming its field, the valid recommendation in that batch
  and the one after everything are stored and acked, the other two are skipped with a
  one-line warning, the cursor is the last sequence, on one connection.

Found by the fuzzer (regression ``@example``s and tests), fixed in stream/client.py (the
last one also in adapters.opa and wiring):
- a sequence above 2**63-1 (proto uint64; the cursor is a SQLite INTEGER) escaped
  ``_handle`` as OverflowError and ended the stream loop: now a Nack on ``sequence``, the
  cursor unmoved; an UpstreamAck above it did the same: now it confirms everything;
- a key or an id holding an escaped lone surrogate (``{"\\ud800": 1}``) made the Nack
  itself unbuildable (protobuf strings are UTF-8): the real field and reason were lost to
  the catch-all, with a traceback in the log; now written as escapes;
- a RollbackRequest naming a recommendation sent earlier in the same batch was nacked as
  unknown (stores were written at the end of the batch) and acked when redelivered;
- a PolicyUpdate holding NaN, Infinity or 1e999 was acked and written as ``NaN`` into the
  platform data, which OPA cannot load (no policy at the next start): now nacked;
- a document with many over-long keys got a Nack about twice its size: over the platform's
  4 MiB receive limit it broke the connection, losing every answer sent with it; a Nack now
  lists at most 10 violations, with field, reason and summary cut to a bounded length;
- a downstream message whose string field is not UTF-8 failed the whole gRPC call
  (protobuf refuses to parse it: the generated stub's deserializer raised), so it came
  back after every reconnect and nothing after it was ever handled: the call now reads
  messages with ``read_platform_message``, which refuses the broken items and lets the
  rest through (the raw-server test and the wire-damage property above);
- a PolicyUpdate nested exactly at the depth limit was acked, stored one level deeper
  (under ``data.platform``) and then refused by the policy engine's reader, which also
  ignored the configured limits: no policy set at the next start. Now the stream counts
  that level, ``platform_data.update`` checks the file as it would write it (updates
  merge, so together they can outgrow the limits) and the engine reads with the
  configured limits (``test_an_acked_policy_update_leaves_data_the_engine_loads``,
  ``test_policy_updates_that_together_outgrow_the_limits_are_refused``).

Found, fixed by their owners (regression tests at the end):
- ``yamledit.bounded.load_json`` let nesting past the depth limit through when libyaml
  refuses the text (U+007F or U+FFFE inside a string, a key longer than 1024 characters);
- ``domain.validation`` reported a problem under a top-level key ``""``
  (``{"": "\\u0001"}``) with an empty field name, so the nack named no field.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import pathlib
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.devtools import platform
from reconciler.domain import errors, model, validation
from reconciler.domain import limits as limits_mod
from reconciler.runtime import rollbacks
from reconciler.stream import client
from reconciler.stream import state as stream_state
from reconciler.stream.gen import stream_pb2 as pb
from tests.fuzz.test_fuzz_recommendations import SEEDS, mutated_documents, nested, trees

MAX_SEQUENCE = client.MAX_SEQUENCE  # 2**63-1: the cursor is a SQLite INTEGER
SEQUENCE_EDGES = [0, 1, 2, 2**31, 2**53 + 1, MAX_SEQUENCE - 1, MAX_SEQUENCE, 2**63, 2**64 - 1]
NACK_BYTES = 16 * 1024  # 256 nacks (a batch's replies) in 4 MiB
SMALL = limits_mod.InputLimits(depth=8, string=1000, bytes=64 * 1024, documents=50)
PRELOADED = SEEDS[0]  # stored before each example, so rollback requests can find it
ANSWERED = ("recommendation", "crd_update", "rollback_request", "policy_update")
CATCH_ALL = "could not be validated"  # StreamClient._validate's reason for a bug
INTERNAL = "internal error:"  # StreamClient._handle's, for an error escaping a handler
# Each example gets a fresh store: in memory-backed /dev/shm where there is one, since
# creating, syncing and closing SQLite files on a loaded disk costs 5x as much.
SCRATCH = "/dev/shm" if pathlib.Path("/dev/shm").is_dir() else None

CRD: dict[str, Any] = {
    "apiVersion": client.CRD_API_VERSION, "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.dakr.devzero.io"},
    "spec": {"group": "dakr.devzero.io", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}
CRD_SEEDS = [CRD,
             dict(CRD, metadata={"name": "widgets.evil.example.com"},
                  spec=dict(CRD["spec"], group="evil.example.com")),
             dict(CRD, metadata={"name": "deployments.apps"},
                  spec=dict(CRD["spec"], group="apps", names={"plural": "deployments"}))]
POLICY_SEEDS: list[Any] = [{"maxCpuCut": 0.5}, {"limits": {"cpu": 2, "memory": 4}},
                           {"freeze": True}, {"config": {"defaults": {"approval": "audit"}}}]


@functools.cache
def valid_seeds() -> list[dict[str, Any]]:
    """The samples the validator accepts (asked when first needed, not at import)."""
    out = []
    for s in SEEDS:
        with contextlib.suppress(errors.ValidationError):
            validation.parse(s)
            out.append(s)
    assert out, "no sample recommendation is valid"
    return out


def with_id(doc: dict[str, Any], rec_id: str) -> dict[str, Any]:
    return dict(doc, spec=dict(doc["spec"], recommendationId=rec_id))


# --------------------------------------------------------------------------- the rig


class ApiServer:
    """Stands in for the Kubernetes API (``client.CrdInstaller``): records what it installs."""

    def __init__(self) -> None:
        self.crds: list[dict[str, Any]] = []

    def apply_crd(self, crd: dict[str, Any], field_manager: str) -> None:
        self.crds.append(copy.deepcopy(crd))


@dataclass
class Rig:
    client: client.StreamClient
    store: sqlite_store.SqliteStore
    state: stream_state.StreamState
    api: ApiServer
    data_file: pathlib.Path
    limits: limits_mod.InputLimits

    def records(self) -> dict[tuple[str, str], store.Record]:
        return {(r.kind, r.id): r for r in self.store.list()}

    def changes(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.record.kind, e.record.id) for kind in model.KINDS
                for e in self.store.watch_records(kind, "0", 0) if e.record is not None]

    def data(self) -> bytes | None:
        return self.data_file.read_bytes() if self.data_file.exists() else None


@contextlib.contextmanager
def rig(limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> Iterator[Rig]:
    """A StreamClient on a fresh SQLite store and stream state; PRELOADED is stored."""
    with tempfile.TemporaryDirectory(prefix="dakr-fuzz-stream-", dir=SCRATCH) as tmp:
        d = pathlib.Path(tmp)
        st = sqlite_store.SqliteStore(d / "store.db")
        state = stream_state.StreamState(d / "stream.db")
        api = ApiServer()
        data_file = d / "platform-data.json"
        c = client.StreamClient(
            client.ClientConfig(target="127.0.0.1:1", limits=limits), st, state,
            crd_installer=api,
            on_rollback=lambda kind, rec_id, reason: rollbacks.request(st, kind, rec_id,
                                                                       reason),
            # The limits the engine reads the file with (as wiring gives them to it).
            on_policy_update=lambda data: policy_data.update(data_file, data, limits))
        try:
            batch.upsert_many(st, [batch.Item.of(validation.parse(PRELOADED))])
            yield Rig(c, st, state, api, data_file, limits)
        finally:
            st.close()
            state.close()


Reply = pb.Ack | pb.Nack


def deliver(r: Rig, messages: Sequence[pb.PlatformMessage]) -> list[Reply]:
    """One batch through the handler, as the stream delivers it; the replies, in order."""
    received = []
    for m in messages:
        wire = pb.PlatformMessage.FromString(m.SerializeToString())
        received += r.client._unpack(wire)
    out = r.client._handle(received)
    assert len(out) <= 1, "one Replies message per batch"
    replies: list[Reply] = []
    for o in out:
        assert o.WhichOneof("body") == "replies"
        replies += [*o.replies.acks, *o.replies.nacks]
    return replies


def items(m: pb.PlatformMessage) -> list[Any]:
    """The parts of a message that are each answered by exactly one Ack or Nack."""
    body = m.WhichOneof("body")
    if body == "recommendation_batch":
        return list(m.recommendation_batch.recommendations)
    return [getattr(m, body)] if body in ANSWERED else []


def kinds(messages: Sequence[pb.PlatformMessage]) -> list[tuple[str, Any]]:
    out = []
    for m in messages:
        body = m.WhichOneof("body")
        out += [("recommendation" if body == "recommendation_batch" else str(body), i)
                for i in items(m)]
    return out


def check_nack(n: pb.Nack) -> None:
    assert n.reason and n.violations, n
    for v in n.violations:
        assert v.field and v.reason, n
    assert CATCH_ALL not in n.reason, f"the handler hit a bug: {n.reason}"
    assert INTERNAL not in n.reason, f"the handler hit a bug: {n.reason}"
    # Bounded, so that a batch's replies fit the platform's 4 MiB receive limit.
    assert n.ByteSize() <= NACK_BYTES, (n.ByteSize(), n.reason[:200])


def goes_on(r: Rig) -> None:
    """The next valid message is still acked and stored."""
    doc = with_id(PRELOADED, "after-the-storm")
    (reply,) = deliver(r, [pb.PlatformMessage(recommendation=pb.Recommendation(
        sequence=1, id="after-the-storm", document_json=json.dumps(doc)))])
    assert isinstance(reply, pb.Ack) and reply.id == "after-the-storm", reply
    assert r.store.get(model.WORKLOAD, "after-the-storm") is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def readable_by_the_engine(r: Rig) -> None:
    """The platform data an acked update left is strict JSON the policy engine loads
    within the limits it reads with (OPA refuses NaN and infinities)."""
    text = r.data_file.read_text(encoding="utf-8")
    json.loads(text, parse_constant=_no_constant)
    opa.load_data_file(r.data_file, r.limits)


def stored_as(doc_json: str) -> batch.Item:
    """What the store must hold for an acked document."""
    return batch.Item.of(validation.parse(json.loads(doc_json)))


# --------------------------------------------------------------------------- strategies

utf8 = st.characters(codec="utf-8")  # protobuf strings are UTF-8: no lone surrogates
proto_text = st.text(utf8, max_size=60)
ids = st.one_of(st.just(""), proto_text,
                st.sampled_from(["rec-0001", "ng-0001", "rec-hpa", "x" * 300, "rec-0001 "]))
sequences = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(SEQUENCE_EDGES))

_JSON_BITS = [
    "{", "}", "[", "]", ",", ":", '"', '"a"', "1", "-0", "0.5", "1e999", "-1e999", "1e-999",
    "1" * 400, "NaN", "Infinity", "-Infinity", "true", "null", '"\\ud800"', '"\\udfff\\ud800"',
    '"\\u0000"', "\\", '"\x01"', '"\x7f"', '"\ufffe"', '"\x85"', " ", "\t", "\n", "\ufeff",
    '"apiVersion"', '"kind"', '"spec"', '"metadata"', '"recommendationId"', '"containers"',
    '"WorkloadRecommendation"', '"NodeGroupRecommendation"', '"dakr.devzero.io/v1alpha1"',
    '"Rightsizing"', '"' + "x" * 300 + '"', "&a", "*a", "!!python/object", "---", "- ", "#",
]
token_soup = st.lists(st.sampled_from(_JSON_BITS), max_size=60).map("".join)
# Spliced into a document's text where its placeholder string was (so the value need not
# be something json.dumps can write: nesting past the recursion limit, raw numbers).
_HOLE = "@@hole@@"
number_texts = st.sampled_from([
    "1e999", "-1e999", "1e-999", "1" * 4300, "-" + "9" * 4300, "1" * 4301, "9" * 10_000,
    "0." + "0" * 5000 + "1", "1E400", "NaN", "-Infinity", "1.7976931348623157e309", "-0",
    "18446744073709551616", "9223372036854775808", "1.5", "0"])


def deep_text(depth: int, leaf: str, kind: str) -> str:
    if kind == "list":
        return "[" * depth + leaf + "]" * depth
    if kind == "dict":
        return '{"a":' * depth + leaf + "}" * depth
    return "[" * depth + leaf  # never closed


deep_texts = st.builds(deep_text, st.one_of(st.integers(1, 300), st.sampled_from(
    [64, 65, 999, 1000, 3000, 20_000])), st.sampled_from(["1", '"x"', '"\x7f"', "{}", ""]),
                       st.sampled_from(["list", "dict", "open"]))
huge_strings = st.builds(lambda n, c: json.dumps(c * n, ensure_ascii=c == "\ud800"),
                         st.sampled_from([1001, 5000, 70_000]),
                         st.sampled_from(["x", "é", "\\", '"', "🚀", "\x01", "\ud800"]))


def to_json(doc: Any, ascii_only: bool, indent: int | None) -> str:
    """The document as JSON text a platform could send; what json.dumps cannot write (a
    cycle, a key of no JSON type) becomes its repr, which is not JSON either."""
    try:
        text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent)
    except (ValueError, TypeError, RecursionError):
        try:
            return repr(doc)[:5000]
        except ValueError:  # an int past the int-str digit limit
            return "[]"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only escaped ones can travel
        text = json.dumps(doc, ensure_ascii=True, indent=indent)
    return text


def json_of(docs: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return st.builds(to_json, docs, st.booleans(), st.sampled_from([None, None, 1]))


@st.composite
def spliced(draw: st.DrawFn, seeds: list[Any]) -> str:
    """A seed with a value replaced by raw text (deep nesting, a huge number or string)."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else doc
    key = draw(st.sampled_from([*spec, "extra"]))
    spec[key] = _HOLE
    raw = draw(st.one_of(deep_texts, number_texts, huge_strings))
    return json.dumps(doc).replace(f'"{_HOLE}"', raw, 1)


@st.composite
def garbled(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    text = draw(texts)
    op = draw(st.sampled_from(["truncate", "drop", "insert", "replace"]))
    if not text:
        return text
    i = draw(st.integers(0, len(text) - 1))
    if op == "truncate":
        return text[:i]
    if op == "drop":
        return text[:i] + text[i + 1:]
    if op == "insert":
        return text[:i] + draw(st.sampled_from(_JSON_BITS)) + text[i:]
    return text[:i] + draw(utf8) + text[i + 1:]


def _paths(doc: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value in an acyclic JSON-like tree, in document order."""
    out: list[tuple[Any, Any]] = []
    todo = [doc]
    while todo:
        v = todo.pop(0)
        if isinstance(v, dict | list):
            for k, x in (v.items() if isinstance(v, dict) else enumerate(v)):
                out.append((v, k))
                todo.append(x)
    return out


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """A seed with zero to three values replaced, deleted, or nested deep."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        if not paths:
            break
        container, key = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "deep"]))
        if op == "delete":
            del container[key]
        elif op == "deep":
            container[key] = nested(draw(st.integers(5, 120)), container[key], draw(
                st.booleans()))
        else:
            container[key] = draw(trees)
    return doc


def payloads(docs: st.SearchStrategy[Any], seeds: list[Any]) -> st.SearchStrategy[str]:
    """JSON text for one field of a message: mostly documents, some of them broken."""
    documents = json_of(docs)
    return st.one_of(documents, documents, documents, garbled(documents), spliced(seeds),
                     token_soup, st.text(utf8, max_size=300), deep_texts, huge_strings,
                     number_texts)


rec_docs = st.one_of(mutated_documents(), mutated(SEEDS), st.sampled_from(SEEDS), trees)
crd_docs = st.one_of(mutated(CRD_SEEDS), st.sampled_from(CRD_SEEDS), trees)
policy_docs = st.one_of(mutated(POLICY_SEEDS), st.dictionaries(st.text(max_size=8), trees,
                                                               max_size=4), trees)
rec_payloads = payloads(rec_docs, SEEDS)  # built once: hypothesis caches per strategy object


@st.composite
def recommendations(draw: st.DrawFn) -> pb.Recommendation:
    text = draw(rec_payloads)
    choice = draw(st.sampled_from(["said", "none", "any"]))
    rec_id = "" if choice == "none" else draw(ids)
    if choice == "said":  # the id the document says, as the platform sends it
        with contextlib.suppress(ValueError, RecursionError):  # UnicodeError included
            said = validation.raw_id(json.loads(text))
            said.encode("utf-8")
            rec_id = said
    return pb.Recommendation(sequence=draw(sequences), id=rec_id, document_json=text)


crd_updates = st.builds(pb.CrdUpdate, sequence=sequences, id=ids,
                        crd_json=payloads(crd_docs, CRD_SEEDS))
policy_updates = st.builds(pb.PolicyUpdate, sequence=sequences, id=ids,
                           data_json=payloads(policy_docs, POLICY_SEEDS))
rollback_requests = st.builds(
    pb.RollbackRequest, sequence=sequences, id=ids,
    kind=st.one_of(st.sampled_from([model.WORKLOAD, model.NODE_GROUP, ""]), proto_text),
    recommendation_id=st.one_of(st.sampled_from(["rec-0001", "ng-0001", "nope"]), proto_text),
    reason=st.text(utf8, max_size=200))
other_messages = st.one_of(  # every body but recommendations
    crd_updates.map(lambda m: pb.PlatformMessage(crd_update=m)),
    policy_updates.map(lambda m: pb.PlatformMessage(policy_update=m)),
    rollback_requests.map(lambda m: pb.PlatformMessage(rollback_request=m)),
    st.builds(pb.Heartbeat, unix_millis=st.integers(-(2**63), 2**63 - 1)).map(
        lambda m: pb.PlatformMessage(heartbeat=m)),
    st.builds(pb.UpstreamAck, upstream_sequence=sequences).map(
        lambda m: pb.PlatformMessage(upstream_ack=m)),
    st.just(pb.PlatformMessage()),
)
platform_messages = st.one_of(
    recommendations().map(lambda r: pb.PlatformMessage(recommendation=r)),
    st.lists(recommendations(), max_size=4).map(lambda rs: pb.PlatformMessage(
        recommendation_batch=pb.RecommendationBatch(recommendations=rs))),
    other_messages,
)


def rec_msg(seq: int, rec_id: str, text: str) -> pb.PlatformMessage:
    return pb.PlatformMessage(recommendation=pb.Recommendation(sequence=seq, id=rec_id,
                                                               document_json=text))


def spec_with(**kw: Any) -> str:
    return json.dumps(dict(PRELOADED, spec=dict(PRELOADED["spec"], **kw)))


def spec_raw(key: str, raw: str) -> str:
    """PRELOADED with ``spec.<key>`` written as ``raw`` JSON text."""
    return spec_with(**{key: _HOLE}).replace(f'"{_HOLE}"', raw, 1)


# The hostile examples, each as a recommendation's document_json (also fed over gRPC).
HOSTILE_DOCUMENTS = [
    "", " ", "null", "[]", "{}", "0", '"x"', "[" * 20_000, "{" * 3000 + "}" * 3000,
    '{"a":' * 1000 + "1" + "}" * 1000, "[" * 999 + "]" * 999, "1" * 4301, "1e999",
    '{"apiVersion": "dakr.devzero.io/v1alpha1", "kind": "WorkloadRecommendation", "spec": {',
    json.dumps(PRELOADED)[:-1], json.dumps(PRELOADED) + "x", json.dumps([PRELOADED] * 3),
    '"\\ud800"', '{"\\ud800": 1}', '{"a": "\x01"}', "\ufeff{}", "NaN", "&a [*a]",
    spec_with(recommendationId="\ud800"), spec_with(**{"\ud800": 1}),
    spec_with(action="x" * (2**20 + 1)), spec_with(replicas=10**4299),
    spec_with(action="\udfff"), spec_raw("extra", "[" * 2000 + "]" * 2000),
    spec_with(confidence=float("nan")), spec_with(confidence=float("inf")),
]


# --------------------------------------------------------------------------- the tests


@given(platform_messages)
# Regressions (module docstring): sequences past what the cursor holds ...
@example(rec_msg(2**63, "rec-0002", json.dumps(SEEDS[1])))
@example(rec_msg(2**64 - 1, "", "{"))
@example(rec_msg(MAX_SEQUENCE, "rec-0002", json.dumps(SEEDS[1])))
@example(pb.PlatformMessage(upstream_ack=pb.UpstreamAck(upstream_sequence=2**64 - 1)))
# ... lone surrogates in an id or a field name ...
@example(rec_msg(7, "", spec_with(recommendationId="\ud800")))
@example(rec_msg(7, "", spec_with(**{"\ud800": 1})))
@example(rec_msg(7, "rec-0001", spec_with(**{"a\udfffb": {"\ud800": 1}})))
@example(rec_msg(3, "", '{"spec": {"recommendationId": "\\ud800"}}'))
# Edge cases: nesting past the limits, strings past them, numbers past float and str.
@example(rec_msg(3, "rec-0001", spec_raw("action", "[" * 2000 + '"x"' + "]" * 2000)))
@example(rec_msg(3, "rec-0001", "[" * 20_000))
@example(rec_msg(3, "rec-0001", spec_with(action="x" * (2**20 + 1))))
@example(rec_msg(3, "rec-0001", spec_with(replicas=10**4299)))
# ... a nack that would be twice the size of a document with many long bad keys ...
@example(rec_msg(3, "rec-0001", spec_with(**{f"{i:04d}" + "k" * 1100: "\x01"
                                             for i in range(200)})))
@example(rec_msg(3, "rec-0001", json.dumps(PRELOADED).replace("2", "1" * 4301, 1)))
# A batch holding a message twice, valid then broken, and one past the cursor's range.
@example(pb.PlatformMessage(recommendation_batch=pb.RecommendationBatch(recommendations=[
    pb.Recommendation(sequence=5, id="rec-0002", document_json=json.dumps(SEEDS[1])),
    pb.Recommendation(sequence=5, id="rec-0002", document_json="{"),
    pb.Recommendation(sequence=2**64 - 1, id="rec-0003", document_json=json.dumps(SEEDS[2]))])))
# CRDs: valid, outside the allowed groups, malformed, with a surrogate for a group.
@example(pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=2, id="w",
                                                    crd_json=json.dumps(CRD))))
@example(pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=2, id="w", crd_json=json.dumps(
    CRD_SEEDS[1]))))
@example(pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=2, crd_json='{"spec": []}')))
@example(pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=2, crd_json=json.dumps(
    dict(CRD, spec=dict(CRD["spec"], group="\ud800"))))))
# ... policy data OPA cannot load, or the engine could not once stored (64 deep).
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=2, data_json='{"a": NaN}')))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(
    sequence=2, data_json='{"a": {"b": [1, -Infinity]}}')))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=2, data_json='{"a": 1e999}')))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(
    sequence=2, data_json='{"a":' * 64 + "1" + "}" * 64)))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=2, data_json="[1]")))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(
    sequence=2, data_json='{"\\ud800": "\\udfff"}')))
@example(pb.PlatformMessage(policy_update=pb.PolicyUpdate(
    sequence=2, data_json=json.dumps({"blob": ["x" * 1000] * 1100}))))
@example(pb.PlatformMessage(rollback_request=pb.RollbackRequest(
    sequence=2, kind="", recommendation_id="rec-0001", reason="")))
@example(pb.PlatformMessage(rollback_request=pb.RollbackRequest(
    sequence=2, kind="Pod", recommendation_id="rec-0001\x00", reason="\x00" * 5000)))
@example(pb.PlatformMessage())
def test_every_message_gets_one_answer(msg: pb.PlatformMessage) -> None:
    with rig() as r:
        before = {rid for _, rid in r.records()}
        replies = deliver(r, [msg])
        expected = kinds([msg])
        assert sorted(x.sequence for x in replies) == sorted(i.sequence for _, i in expected)
        for x in replies:
            event(f"{msg.WhichOneof('body')}: {type(x).__name__.lower()}")
        for x in replies:
            if isinstance(x, pb.Nack):
                check_nack(x)
            if x.sequence > MAX_SEQUENCE:  # beyond what the cursor can record: refused
                assert isinstance(x, pb.Nack) and x.violations[0].field == "sequence", x
        recs = {i.sequence for k, i in expected if k == "recommendation"}
        acked = {x.id for x in replies if isinstance(x, pb.Ack) and x.sequence in recs}
        stored = {rid for _, rid in r.records()}
        assert stored - before <= acked <= stored, "a recommendation is acked once stored"
        for crd in r.api.crds:  # nothing outside the allow-list reaches the cluster
            assert not client.check_crd(crd, client.DEFAULT_ALLOWED_GROUPS)
        if r.data() is not None:
            readable_by_the_engine(r)
        handled = [i.sequence for _, i in expected if i.sequence <= MAX_SEQUENCE]
        assert r.state.cursor() == max(handled, default=0)
        goes_on(r)


@st.composite
def mixed_batches(draw: st.DrawFn) -> tuple[list[pb.PlatformMessage], dict[int, str]]:
    """Valid recommendations (ids ``ok-N``) among hostile messages, sequences increasing;
    consecutive recommendations sometimes travel in one RecommendationBatch; a rollback
    request may name a valid one sent before it. Also returns sequence -> document_json of
    the valid ones (and "" for those rollback requests)."""
    seeds = valid_seeds()
    kinds_ = draw(st.lists(st.sampled_from(["valid", "valid", "rec", "other", "rollback"]),
                           min_size=1, max_size=8))
    seq = draw(st.integers(0, 1000))
    recs: list[tuple[pb.Recommendation | None, pb.PlatformMessage | None]] = []
    valid: dict[int, str] = {}
    earlier: list[tuple[str, str]] = []  # (kind, id) of the valid ones so far
    for n, k in enumerate(kinds_):
        seq += draw(st.integers(1, 3))
        if k == "rollback":  # of a valid recommendation earlier in this batch: acked
            kind, rec_id = draw(st.sampled_from(earlier)) if earlier else ("", "nope")
            if earlier:
                valid[seq] = ""
            recs.append((None, pb.PlatformMessage(rollback_request=pb.RollbackRequest(
                sequence=seq, kind=kind, recommendation_id=rec_id, reason="regression"))))
        elif k == "valid":
            doc = with_id(draw(st.sampled_from(seeds)), f"ok-{n}")
            text = json.dumps(doc, ensure_ascii=draw(st.booleans()),
                              indent=draw(st.sampled_from([None, 2])))
            valid[seq] = text
            earlier.append((doc["kind"], f"ok-{n}"))
            recs.append((pb.Recommendation(sequence=seq, id=draw(st.sampled_from(
                [f"ok-{n}", ""])), document_json=text), None))
        elif k == "rec":
            rec = draw(recommendations())
            rec.sequence = seq
            recs.append((rec, None))
        else:
            m = draw(other_messages)
            body = m.WhichOneof("body")
            if body in ANSWERED:
                getattr(m, body).sequence = seq
            recs.append((None, m))
    messages: list[pb.PlatformMessage] = []
    pending: list[pb.Recommendation] = []
    for rec, other in [*recs, (None, None)]:
        if rec is not None and draw(st.booleans()):
            pending.append(rec)  # into the next RecommendationBatch
            continue
        if pending:
            messages.append(pb.PlatformMessage(
                recommendation_batch=pb.RecommendationBatch(recommendations=pending)))
            pending = []
        if rec is not None:
            messages.append(pb.PlatformMessage(recommendation=rec))
        elif other is not None:
            messages.append(other)
    return messages, valid


@given(mixed_batches())
@example(([rec_msg(1, "ok-0", json.dumps(with_id(SEEDS[1], "ok-0"))),
           rec_msg(2, "", "[" * 5000), rec_msg(3, "", spec_with(**{"\ud800": 1})),
           rec_msg(4, "ok-3", json.dumps(with_id(SEEDS[2], "ok-3")))],
          {1: json.dumps(with_id(SEEDS[1], "ok-0")), 4: json.dumps(with_id(SEEDS[2], "ok-3"))}))
def test_a_mixed_batch_loses_nothing_valid(case: tuple[list[pb.PlatformMessage],
                                                       dict[int, str]]) -> None:
    messages, valid = case
    with rig() as r:
        replies = deliver(r, messages)
        answered = kinds(messages)
        by_seq = {x.sequence: x for x in replies}
        assert len(by_seq) == len(replies) == len(answered)  # sequences are distinct here
        last: dict[tuple[str, str], batch.Item] = {}
        for k, i in answered:
            x = by_seq[i.sequence]
            if isinstance(x, pb.Nack):
                check_nack(x)
            if i.sequence in valid:
                assert isinstance(x, pb.Ack), f"valid message refused: {x}"
            if k == "recommendation" and isinstance(x, pb.Ack):
                item = stored_as(i.document_json)  # an acked document is valid
                assert x.id == item.id
                last[(item.kind, item.id)] = item
        records = r.records()
        preloaded = batch.Item.of(validation.parse(PRELOADED))
        last.setdefault((preloaded.kind, preloaded.id), preloaded)
        assert set(records) == set(last), "stored exactly what was acked"
        for key, item in last.items():
            assert records[key].spec == item.spec
        assert r.state.cursor() == max((i.sequence for _, i in answered), default=0)


def _answer(x: Reply) -> tuple[Any, ...]:
    if isinstance(x, pb.Ack):
        return ("ack", x.sequence, x.id)
    return ("nack", x.sequence, x.id, x.reason, tuple((v.field, v.reason) for v in x.violations))


@st.composite
def numbered(draw: st.DrawFn) -> list[pb.PlatformMessage]:
    """A few messages with distinct, increasing sequences."""
    messages = draw(st.lists(platform_messages, min_size=1, max_size=3))
    seq = 0
    for m in messages:
        for i in items(m):
            seq += 1
            i.sequence = seq
    return messages


@given(numbered(), st.booleans())
@example([pb.PlatformMessage(recommendation_batch=pb.RecommendationBatch(recommendations=[
    pb.Recommendation(sequence=1, document_json=json.dumps(SEEDS[1])),
    pb.Recommendation(sequence=2, document_json=json.dumps(with_id(SEEDS[2], "rec-0002")))]))],
    False)
@example([rec_msg(1, "rec-0002", json.dumps(SEEDS[1])), pb.PlatformMessage(
    rollback_request=pb.RollbackRequest(sequence=2, recommendation_id="rec-0002"))], False)
@example([rec_msg(1, "rec-0002", json.dumps(SEEDS[1])), rec_msg(2, "rec-0002", "{")], False)
@example([rec_msg(1, "rec-0002", json.dumps(SEEDS[1])),
          pb.PlatformMessage(rollback_request=pb.RollbackRequest(
              sequence=2, recommendation_id="rec-0002", reason="slow")),
          pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=3, data_json='{"a": 1}')),
          pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=4, data_json='{"a": 2}')),
          pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=5, crd_json=json.dumps(CRD)))],
         True)
def test_redelivery_changes_nothing(messages: list[pb.PlatformMessage], in_one_batch: bool
                                    ) -> None:
    with rig() as r:
        if in_one_batch:
            replies = deliver(r, [*messages, *messages])
            pairs: dict[int, list[Reply]] = {}
            for x in replies:
                pairs.setdefault(x.sequence, []).append(x)
            assert all(len(p) == 2 for p in pairs.values())
            first, again = [p[0] for p in pairs.values()], [p[1] for p in pairs.values()]
            before = None
        else:
            first = deliver(r, messages)
            before = (r.records(), r.changes(), r.data(), r.state.cursor())
            again = deliver(r, messages)
        assert [_answer(x) for x in again] == [_answer(x) for x in first]
        recs = {i.sequence for k, i in kinds(messages) if k == "recommendation"}
        # An id acked twice in the batch may carry two versions: replaying the batch writes
        # the older one, then the newer again (the end state is the same).
        versions = Counter(x.id for x in first if isinstance(x, pb.Ack) and x.sequence in recs)
        for x in again:
            if isinstance(x, pb.Ack) and x.sequence in recs and versions[x.id] == 1:
                assert x.duplicate, f"a redelivered recommendation changed the store: {x}"
        added = Counter((k, rid) for t, k, rid in r.changes() if t == store.ADDED)
        assert max(added.values()) == 1, "a record added twice"
        if before is None:
            return
        records, changes, data, cursor = before
        rolled = {(m.rollback_request.kind or model.WORKLOAD, m.rollback_request.recommendation_id)
                  for m in messages if m.WhichOneof("body") == "rollback_request"}
        replayed = {rid for rid, n in versions.items() if n > 1}
        now = r.records()
        assert set(now) == set(records)
        for key, rec in now.items():
            assert rec.spec == records[key].spec
            if key in rolled:  # the request is recorded again: one condition, new time
                conds = [c for c in rec.status.get("conditions") or []
                         if c.get("type") == rollbacks.ROLLBACK_REQUESTED]
                assert len(conds) == 1 and conds[0]["status"] == "True"
            elif key[1] not in replayed:
                assert rec == records[key]
        if not rolled and not replayed:
            assert r.changes() == changes
        assert r.data() == data
        assert r.state.cursor() == cursor


# -- limits


leaf_texts = st.one_of(st.text(utf8, max_size=20),
                       st.sampled_from(["[", '{"a": [', "]]]", "\x7f", "\ufffe", "\x85", "\\"]))
long_strings = st.builds(lambda c, n: (c * n)[:n], st.sampled_from(
    ["x", "é", "\\", '"', "🚀", "\x01", "[", "\ud800", "\x7f"]), st.integers(1001, 3000))


@st.composite
def breaches(draw: st.DrawFn) -> tuple[str, Any, Any]:
    """(limit name, a value that breaks it, the same kind of value within the limits)."""
    name = draw(st.sampled_from(["depth", "string", "bytes", "documents"]))
    if name == "depth":
        leaf = draw(leaf_texts)
        as_dict = draw(st.booleans())
        return name, nested(draw(st.integers(9, 300)), leaf, as_dict), nested(2, leaf, as_dict)
    if name == "string":
        s = draw(long_strings)
        short = s[:draw(st.integers(0, 1000 - 8))]
        if draw(st.booleans()):
            return name, {s: 1}, {short: 1}
        return name, s, short
    if name == "bytes":
        n = draw(st.integers(7000, 12_000))
        return name, ["abcdefgh"] * n, ["abcdefgh"] * 10
    return name, [1] * draw(st.integers(51, 500)), [1] * 10


@st.composite
def over_limits(draw: st.DrawFn) -> tuple[str, str, pb.PlatformMessage, pb.PlatformMessage]:
    """(limit, field, a message breaking the limit there, the same message within it)."""
    name, bad, good = draw(breaches())
    where = draw(st.sampled_from(["document_json", "batch", "crd_json", "data_json"]))
    if name == "documents":  # only a list at the top counts JSON values as documents
        bad_doc, good_doc = bad, good
    elif where in ("document_json", "batch"):
        seed = draw(st.sampled_from(valid_seeds()))
        bad_doc, good_doc = (dict(seed, spec=dict(seed["spec"], extra=v)) for v in (bad, good))
    elif where == "crd_json":
        bad_doc, good_doc = (dict(CRD, metadata=dict(CRD["metadata"], labels=v))
                             for v in (bad, good))
    else:
        bad_doc, good_doc = {"k": bad}, {"k": good}
    seq = draw(st.integers(1, 2**32))

    def message(doc: Any) -> pb.PlatformMessage:
        text = to_json(doc, draw(st.booleans()), None)
        if where == "document_json":
            return rec_msg(seq, "", text)
        if where == "batch":
            return pb.PlatformMessage(recommendation_batch=pb.RecommendationBatch(
                recommendations=[pb.Recommendation(sequence=seq, document_json=text)]))
        if where == "crd_json":
            return pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=seq, crd_json=text))
        return pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=seq, data_json=text))

    field_name = "document_json" if where == "batch" else where
    return name, field_name, message(bad_doc), message(good_doc)


@given(over_limits())
@example(("depth", "data_json", pb.PlatformMessage(policy_update=pb.PolicyUpdate(
    sequence=1, data_json=json.dumps({"k": nested(300, "x", False)}))),
    pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=1, data_json='{"k": 1}'))))
@example(("string", "document_json", rec_msg(1, "", spec_with(**{"k" * 1001: 1})),
          rec_msg(1, "", spec_with(k=1))))
@example(("string", "crd_json", pb.PlatformMessage(crd_update=pb.CrdUpdate(
    sequence=1, crd_json=json.dumps(dict(CRD, x="\\" * 1001)))),
    pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=1, crd_json=json.dumps(CRD)))))
def test_a_message_over_a_limit_is_nacked_naming_it(
        case: tuple[str, str, pb.PlatformMessage, pb.PlatformMessage]) -> None:
    name, field_name, over, within = case
    with rig(SMALL) as r:
        (x,) = deliver(r, [over])
        limit = f"input limit {name}={getattr(SMALL, name)}"
        assert isinstance(x, pb.Nack), x
        check_nack(x)
        assert limit in x.reason, x
        assert [v.field for v in x.violations] == [field_name]
        (y,) = deliver(r, [within])
        if isinstance(y, pb.Nack):
            check_nack(y)
            assert "input limit" not in y.reason, y
        goes_on(r)


# -- what protobuf refuses

MARK = "~~"  # in a string, where damage that only breaks its UTF-8 goes
marked = st.one_of(proto_text, proto_text.map(lambda t: t + MARK), st.just(MARK))
wire_recs = st.builds(pb.Recommendation, sequence=sequences, id=marked, document_json=marked)
wire_messages = st.one_of(
    wire_recs.map(lambda r: pb.PlatformMessage(recommendation=r)),
    st.lists(wire_recs, max_size=4).map(lambda rs: pb.PlatformMessage(
        recommendation_batch=pb.RecommendationBatch(recommendations=rs))),
    st.builds(pb.CrdUpdate, sequence=sequences, id=marked, crd_json=marked).map(
        lambda m: pb.PlatformMessage(crd_update=m)),
    st.builds(pb.PolicyUpdate, sequence=sequences, id=marked, data_json=marked).map(
        lambda m: pb.PlatformMessage(policy_update=m)),
    st.builds(pb.RollbackRequest, sequence=sequences, id=marked, kind=marked,
              recommendation_id=marked, reason=marked).map(
        lambda m: pb.PlatformMessage(rollback_request=m)),
    st.builds(pb.UpstreamAck, upstream_sequence=sequences).map(
        lambda m: pb.PlatformMessage(upstream_ack=m)),
)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[pb.PlatformMessage, bytes]:
    """A message and its wire bytes with damage: a string made invalid UTF-8 (where the
    mark was), one byte overwritten, or the end cut off."""
    msg = draw(wire_messages)
    raw = msg.SerializeToString()
    how = draw(st.sampled_from(["utf8", "utf8", "byte", "cut"]))
    if how == "utf8" and MARK.encode() in raw:
        i = draw(st.sampled_from([n for n in range(len(raw)) if raw.startswith(b"~~", n)]))
        bad = draw(st.sampled_from([b"\xff\xfe", b"\xc3(", b"\x80\x80", b"\xed\xa0"]))
        raw = raw[:i] + bad + raw[i + 2:]
    elif how == "byte" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    elif how == "cut":
        raw = raw[:draw(st.integers(0, len(raw)))]
    return msg, raw


@given(damaged())
@example((rec_msg(1, MARK, "{}"), rec_msg(1, MARK, "{}").SerializeToString().replace(
    b"~~", b"\xff\xfe")))
def test_what_protobuf_refuses_is_read_as_far_as_it_can_be(
        case: tuple[pb.PlatformMessage, bytes]) -> None:
    """The stream's deserializer never raises (gRPC would fail the whole call): a message
    protobuf parses comes out as protobuf reads it; one it refuses comes out as the items
    that have a sequence, each parsed on its own or refused with a small, well-formed nack
    naming the field. When only a string was broken, no item with a sequence is lost."""
    original, raw = case
    got = client.read_platform_message(raw)
    try:
        parsed: pb.PlatformMessage | None = pb.PlatformMessage.FromString(raw)
        problem = ""
    except Exception as e:
        parsed, problem = None, str(e)
    if parsed is not None:
        assert got == parsed
        return
    assert isinstance(got, client._Garbled)
    nowhere: Any = None  # splitting and refusing touch neither store nor stream state
    c = client.StreamClient(client.ClientConfig(target="127.0.0.1:1"), nowhere, nowhere)
    received = c._unpack(got)
    assert len(received) == len(got.parts)
    for rcv, (kind, m, problems) in zip(received, got.parts, strict=True):
        assert kind in ANSWERED and rcv.kind == kind and rcv.payload is m
        if problems:
            assert isinstance(rcv.prepared, pb.Nack) and rcv.prepared.sequence == m.sequence
            check_nack(rcv.prepared)
            fields = {f.name for f in m.DESCRIPTOR.fields if f.type == f.TYPE_STRING}
            assert {v.field for v in rcv.prepared.violations} <= fields | {"(message)"}
    event(f"refused: {len(got.parts)} parts, {sum(bool(p) for _, _, p in got.parts)} nacked")
    if "bad UTF-8" in problem:  # the structure is intact
        readable = {i.sequence for _, i in kinds([original]) if i.sequence}
        assert readable <= {m.sequence for _, m, _ in got.parts}
        assert any(p for _, _, p in got.parts) or not readable


# --------------------------------------------------------------------------- over gRPC


def test_a_hostile_feed_over_grpc(tmp_path: pathlib.Path) -> None:
    """The hostile examples between valid recommendations, through the reference platform
    on loopback: every message answered on one connection, the valid ones stored."""
    valid = [with_id(s, f"ok-{n}") for n, s in enumerate(valid_seeds()[:4])]
    feed = [rec_msg(0, "", text) for text in HOSTILE_DOCUMENTS]
    for n, doc in enumerate(valid):
        feed.insert(n * 9, rec_msg(0, doc["spec"]["recommendationId"], json.dumps(doc)))
    feed.append(pb.PlatformMessage(crd_update=pb.CrdUpdate(crd_json=json.dumps(CRD_SEEDS[1]))))
    feed.append(pb.PlatformMessage(policy_update=pb.PolicyUpdate(data_json="[" * 5000)))
    srv = platform.PlatformServer([], heartbeat_interval=0.2).start()
    srv.add(feed)
    st = sqlite_store.SqliteStore(tmp_path / "store.db")
    state = stream_state.StreamState(tmp_path / "stream.db")
    cfg = client.ClientConfig(target=srv.address, heartbeat_interval=0.3, heartbeat_timeout=5,
                              backoff_initial=0.05, backoff_max=0.5)
    c = client.StreamClient(cfg, st, state, crd_installer=ApiServer())
    thread = threading.Thread(target=c.run, args=(0.5,), daemon=True)
    try:
        thread.start()
        assert srv.state.wait_for(lambda s: len(s.acks) >= len(feed), 20), srv.state.acks
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        c.stop()
        srv.stop(None)
    assert srv.state.connections == 1 and c.stats.disconnects == ["idle"]
    answers = {a["sequence"]: a for a in srv.state.acks}
    assert sorted(answers) == list(range(1, len(feed) + 1))
    want = {d["spec"]["recommendationId"] for d in valid}
    assert {a["id"] for a in answers.values() if a["kind"] == "ack"} == want
    assert {r.id for r in st.list()} == want
    for a in answers.values():
        if a["kind"] == "nack":
            assert a["reason"] and a["fields"] and CATCH_ALL not in a["reason"], a
    assert state.cursor() == len(feed)
    st.close()
    state.close()


class RawPlatform:
    """A platform that sends frames as they are (no protobuf check, so bytes protobuf
    refuses go out) on every connection and records the replies it gets."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.connections = 0
        self.replies: dict[int, Reply] = {}
        self._cond = threading.Condition()
        handler = grpc.method_handlers_generic_handler("dakr.v1.RecommendationStream", {
            "Connect": grpc.stream_stream_rpc_method_handler(self._connect)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _connect(self, requests: Iterator[bytes], context: grpc.ServicerContext
                 ) -> Iterator[bytes]:
        next(requests)  # Hello
        with self._cond:
            self.connections += 1
        threading.Thread(target=self._read, args=(requests,), daemon=True).start()
        yield from self.frames
        while context.is_active():
            with self._cond:
                self._cond.wait(0.1)

    def _read(self, requests: Iterator[bytes]) -> None:
        with contextlib.suppress(grpc.RpcError):
            for raw in requests:
                m = pb.OperatorMessage.FromString(raw)
                if m.WhichOneof("body") == "replies":
                    with self._cond:
                        self.replies.update((x.sequence, x) for x in
                                            [*m.replies.acks, *m.replies.nacks])
                        self._cond.notify_all()

    def wait_for_replies(self, n: int, timeout: float) -> dict[int, Reply]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.replies) >= n, timeout)
            return dict(self.replies)


def _frame(msg: pb.PlatformMessage, broken: bytes = b"") -> bytes:
    """``msg`` on the wire, the string ``~~`` in it replaced by ``broken`` (two bytes, so
    every length prefix still holds)."""
    raw = msg.SerializeToString()
    if broken:
        assert raw.count(b"~~") == 1 and len(broken) == 2
        raw = raw.replace(b"~~", broken)
    return raw


def test_a_message_protobuf_refuses_is_nacked_and_the_stream_goes_on(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    """Strings that are not UTF-8 (protobuf refuses the whole message, and gRPC used to
    fail the whole call, so the message came back after every reconnect and nothing after
    it was ever handled): each item is nacked naming its field, a good recommendation in
    the same batch is stored, what has no readable sequence is skipped with a warning, and
    everything after is handled, on one connection."""
    ok = [with_id(valid_seeds()[i % len(valid_seeds())], f"ok-{i}") for i in (3, 7)]
    bad = b"\xff\xfe"
    frames = [
        _frame(rec_msg(1, "~~", json.dumps(SEEDS[1])), bad),
        _frame(rec_msg(2, "rec-0002", "~~"), b"\xc3("),
        _frame(pb.PlatformMessage(recommendation_batch=pb.RecommendationBatch(recommendations=[
            pb.Recommendation(sequence=3, id="ok-3", document_json=json.dumps(ok[0])),
            pb.Recommendation(sequence=4, id="r4", document_json='{"a": "~~"}')])), bad),
        _frame(pb.PlatformMessage(crd_update=pb.CrdUpdate(sequence=5, crd_json="~~")), bad),
        _frame(_policy_update(6, "~~"), bad),
        _frame(rec_msg(0, "~~", "{}"), bad),  # no sequence on the wire: nothing to nack by
        _frame(rec_msg(9, "r9", "{}"))[:-3],  # cut short: nothing readable at all
        _frame(rec_msg(7, "ok-7", json.dumps(ok[1]))),
    ]
    platform_ = RawPlatform(frames)
    st = sqlite_store.SqliteStore(tmp_path / "store.db")
    state = stream_state.StreamState(tmp_path / "stream.db")
    cfg = client.ClientConfig(target=f"127.0.0.1:{platform_.port}", heartbeat_interval=0.3,
                              heartbeat_timeout=5, backoff_initial=0.05, backoff_max=0.2)
    c = client.StreamClient(cfg, st, state)
    try:
        c.run(until_idle=0.6)
        replies = platform_.wait_for_replies(7, 5)
        stored = {r.id for r in st.list()}
        cursor = state.cursor()
    finally:
        platform_.server.stop(None)
        st.close()
        state.close()
    assert platform_.connections == 1 and c.stats.disconnects == ["idle"], c.stats.disconnects
    assert stored == {"ok-3", "ok-7"}
    assert sorted(replies) == [1, 2, 3, 4, 5, 6, 7]
    assert {s for s, x in replies.items() if isinstance(x, pb.Ack)} == {3, 7}
    fields = {s: [v.field for v in x.violations] for s, x in replies.items()
              if isinstance(x, pb.Nack)}
    assert fields == {1: ["id"], 2: ["document_json"], 4: ["document_json"], 5: ["crd_json"],
                      6: ["data_json"]}
    for s in fields:
        x = replies[s]
        assert isinstance(x, pb.Nack)
        check_nack(x)
        assert "not valid UTF-8" in x.reason, x
    assert replies[1].id == "\ufffd\ufffd"  # what could be read of it
    assert cursor == 7
    skipped = [r.getMessage() for r in caplog.records if "skipped a message" in r.getMessage()]
    assert len(skipped) == 2 and not any("\n" in m for m in skipped), skipped


# --------------------------------------------------------------------------- regressions

# yamledit.bounded.load_json once checked depth by walking libyaml's events and gave up on
# a YAML error, so JSON that libyaml refuses was built at any depth json.loads reaches: a
# string with a character YAML does not allow (U+007F, U+FFFE), a key longer than
# libyaml's 1024 characters for a simple key.
DEPTH_GAPS = {
    "del-character": (json.dumps({"k": nested(100, "\x7f", False)}, ensure_ascii=False),
                      limits_mod.DEFAULT),
    "noncharacter": (json.dumps({"k": nested(100, "\ufffe", True)}, ensure_ascii=False),
                     limits_mod.DEFAULT),
    "long-key-first": (json.dumps({"k" * 1100: 1, "b": nested(100, 1, False)}),
                       limits_mod.DEFAULT),
    "small-depth": (json.dumps({"k": nested(9, "\x7f", False)}, ensure_ascii=False), SMALL),
}


@pytest.mark.parametrize("name", sorted(DEPTH_GAPS))
def test_depth_limit_holds_for_json_libyaml_refuses(name: str) -> None:
    text, limits = DEPTH_GAPS[name]
    with rig(limits) as r:
        (x,) = deliver(r, [pb.PlatformMessage(policy_update=pb.PolicyUpdate(
            sequence=1, data_json=text))])
        assert isinstance(x, pb.Nack) and f"input limit depth={limits.depth}" in x.reason, x


# domain.validation once named a problem under a top-level key "" by the path "" (and
# under it the key vanished: {"": {"a": ...}} was reported as "a"): a violation naming no
# field.
@pytest.mark.parametrize("text", ['{"": "\\u0001"}', '{"": "\\ud800"}',
                                  '{"": "' + "x" * 1025 + '"}'])
def test_a_nack_names_a_field_for_an_empty_key(text: str) -> None:
    with rig() as r:
        (x,) = deliver(r, [rec_msg(1, "", text)])
        assert isinstance(x, pb.Nack)
        assert all(v.field for v in x.violations), x


def _policy_update(seq: int, data: Any) -> pb.PlatformMessage:
    text = data if isinstance(data, str) else json.dumps(data)
    return pb.PlatformMessage(policy_update=pb.PolicyUpdate(sequence=seq, data_json=text))


@pytest.mark.parametrize("limits", [limits_mod.DEFAULT, SMALL], ids=["default", "small"])
def test_an_acked_policy_update_leaves_data_the_engine_loads(
        limits: limits_mod.InputLimits) -> None:
    """The update is stored one level deeper (under ``platform``) than the stream reads it,
    and the engine reads the file back within the same limits: an update nested exactly at
    the depth limit was acked, and then no policy set loaded (at the next start)."""
    depth = limits.depth
    with rig(limits) as r:
        at, below = ('{"a":' * n + "1" + "}" * n for n in (depth, depth - 1))
        x, y = sorted(deliver(r, [_policy_update(1, at), _policy_update(2, below)]),
                      key=lambda reply: reply.sequence)
        assert isinstance(x, pb.Nack) and [v.field for v in x.violations] == ["data_json"]
        assert f"input limit depth={depth}" in x.reason, x
        assert isinstance(y, pb.Ack), y
        readable_by_the_engine(r)


def test_policy_updates_that_together_outgrow_the_limits_are_refused() -> None:
    """Updates merge into one file: each within the limits, together they can outgrow what
    the engine reads (bytes here). The one that would is refused and nothing changes."""
    part = ["abcdefgh"] * 4000  # about 44 KB as JSON: one fits SMALL.bytes (64 KiB), two not
    with rig(SMALL) as r:
        (x,) = deliver(r, [_policy_update(1, {"a": part})])
        assert isinstance(x, pb.Ack), x
        before = r.data()
        (y,) = deliver(r, [_policy_update(2, {"b": part})])
        assert isinstance(y, pb.Nack) and f"input limit bytes={SMALL.bytes}" in y.reason, y
        check_nack(y)
        assert r.data() == before
        readable_by_the_engine(r)
        goes_on(r)
