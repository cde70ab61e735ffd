"""Fuzzing the recommendation reader (``adapters.files``) and validator (``domain.validation``).

Cases covered (hypothesis; profiles in tests/fuzz/conftest.py):
- arbitrary text, text built from YAML/JSON syntax fragments (anchors, aliases, tags,
  flow brackets, document markers, odd scalars such as ``0b_`` or ``2001-13-45``), and
  arbitrary bytes read from a file through ``files.parse_documents`` /
  ``files.load_documents`` with their default limits: the only exceptions are the
  project's own (``errors.ReconcilerError``), and every document read is validated;
- near-valid documents: the samples of examples/recommendations.yaml (plus a node group,
  an HPA and a live migration seed) mutated field by field: wrong types, huge, negative,
  zero, odd and malformed quantities, unicode (surrogates included), control
  characters, nesting up to a few hundred levels, missing keys, extra keys, keys that are
  not strings, numbers far beyond any field's range, self-referencing containers;
  validated directly and after a JSON and a YAML round trip through ``parse_documents``
  (which gives back exactly the document written, and the same verdict);
- the validator's properties: ``parse`` raises only ``errors.ValidationError`` with every
  error naming a field; a valid result stays within the documented bounds (quantities
  above zero, CPU at most 1024, memory at most 16Ti, requests at most limits, replicas,
  HPA bounds, node counts, confidence, savings), its ``to_dict`` is strict JSON and
  parses back to the same model; ``parse_many`` refuses items one by one;
- regression cases for what the fuzzer found, all fixed: in ``validation``, deep nesting
  (a RecursionError building the message), numbers too large for ``float`` or ``str``
  (OverflowError / ValueError), self-holding containers (an endless walk; a shared value
  is still fine); in ``files.parse_documents``, YAML scalars PyYAML's constructors cannot
  build (``0b_``, ``2001-13-45``, ``!!int x``, ``!!bool x``, ``!!timestamp x``, an
  integer of 5,000 digits) and lone surrogates escaping as ValueError, KeyError,
  AttributeError or UnicodeEncodeError instead of a ConfigError naming the input.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from reconciler.adapters import files
from reconciler.domain import errors, model, validation

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES: list[dict[str, Any]] = [
    d for d in files.parse_documents((ROOT / "examples" / "recommendations.yaml").read_text())
    if isinstance(d, dict)
]
EXTRA_SEEDS: list[dict[str, Any]] = [
    {"apiVersion": model.API_VERSION, "kind": model.NODE_GROUP,
     "metadata": {"name": "pool-a-consolidate"},
     "spec": {"recommendationId": "ng-0001", "nodeGroup": "pool-a", "action": "consolidate",
              "currentNodeCount": 5, "targetNodeCount": 3,
              "nodesToRemove": ["node-1", "node-2"], "priority": 10,
              "projectedSavings": {"monthly": 120.5, "currency": "EUR"}}},
    {"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
     "metadata": {"namespace": "shop"},
     "spec": {"recommendationId": "rec-hpa", "action": "ReplicaScaling",
              "targetRef": {"kind": "StatefulSet", "name": "db", "apiVersion": "apps/v1"},
              "hpa": {"minReplicas": 2, "maxReplicas": 6}, "confidence": 1}},
    {"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
     "metadata": {"name": "lm", "namespace": "default"},
     "spec": {"recommendationId": "rec-lm", "action": "LiveMigration",
              "targetRef": {"kind": "DaemonSet", "name": "agent"},
              "containers": [{"name": "a", "resources": {
                  "requests": {"cpu": "0.5", "memory": "1.5Gi", "ephemeral-storage": "1e9"},
                  "limits": {"cpu": 2, "memory": "2G"}}}]},
     "status": {"phase": "Approved"}},
]
SEEDS = SAMPLES + EXTRA_SEEDS

# --------------------------------------------------------------------------- strategies

_SUFFIXES = ["", "m", "u", "n", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi",
             "Ei", "e3", "E-3", "e+30", "e31", "e-40", "e999", "KI", "mi", "i", "b", " ",
             "\t", "\u00a0", "m ", "Mi\n"]
quantity_text = st.builds(
    lambda sign, whole, frac, suffix, pad: f"{pad}{sign}{whole}{frac}{suffix}",
    st.sampled_from(["", "", "-", "+", "--", "−"]),
    st.one_of(st.from_regex(r"[0-9]{1,3}", fullmatch=True),
              st.from_regex(r"[0-9]{1,80}", fullmatch=True), st.just("")),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{0,12}", fullmatch=True), st.just(".")),
    st.sampled_from(_SUFFIXES),
    st.sampled_from(["", "", "", " ", "0", "٣"]),
)
quantity_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e-9, 1e-10, 5e-324, 1024, 1025, 1024.0000000001, 16 * 2**40,
                     16 * 2**40 + 1, 10**63, 10**64, 10**300, 2**63, -(2**63)]),
)
quantities = st.one_of(quantity_text, quantity_number)
# Numbers far beyond any field's range: beyond float (OverflowError) and up to the
# interpreter's 4300-digit limit for int -> str (past it, JSON and YAML readers refuse them
# and even repr() fails: test_numbers_past_the_int_str_limit covers those, outside hypothesis,
# which reprs what it draws).
huge_ints = st.builds(lambda sign, digits: sign * 10**digits, st.sampled_from([1, -1]),
                      st.sampled_from([309, 400, 4299]))
unicode_text = st.text(max_size=40)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                     max_size=3)
control_text = st.text(st.characters(max_codepoint=0x9F), min_size=1, max_size=10)
odd_strings = st.one_of(
    unicode_text, surrogates, control_text, st.text(max_size=3).map(lambda s: s * 400),
    st.sampled_from(["", " ", "Rightsizing ", "rightsizing", "Deployment\n", "a" * 254,
                     "default\x00", "🚀", "kube-system", "dakr.devzero.io/v1", "NaN", "null",
                     "ÄÖÜ", "e\u0301", "\u202e", "\ufeff", "-a", "a-", "a..b", "A"]),
)
scalars = st.one_of(st.none(), st.booleans(), quantities, odd_strings, huge_ints)
# JSON-like trees: lists and string/number/bool/None-keyed mappings.
keys = st.one_of(odd_strings, st.integers(), st.booleans(), st.none(), st.floats())
trees = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(keys, kids, max_size=4)), max_leaves=12)


def nested(depth: int, leaf: Any, as_dict: bool) -> Any:
    v = leaf
    for _ in range(depth):
        v = {"a": v} if as_dict else [v]
    return v


deep_values = st.builds(nested, st.integers(10, 400), st.one_of(scalars, st.just("x\x01")),
                        st.booleans())


def _paths(doc: Any, most: int = 8) -> Iterator[tuple[Any, ...]]:
    """Paths to the values of a JSON-like tree (the root excluded), at most ``most`` deep and
    each container once (earlier mutations may have nested or looped it)."""
    seen: set[int] = set()
    todo: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while todo:
        prefix, v = todo.pop()
        if not isinstance(v, (dict, list)) or id(v) in seen or len(prefix) >= most:
            continue
        seen.add(id(v))
        for k, x in (v.items() if isinstance(v, dict) else enumerate(v)):
            yield (*prefix, k)
            todo.append(((*prefix, k), x))


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    return _at(doc, path[:-1])


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """A sample document with one to five mutations."""
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        paths = list(_paths(doc))
        op = draw(st.sampled_from(
            ["replace", "replace", "quantity", "delete", "add", "deep", "wrap", "cycle"]))
        if not paths or op == "add":
            mappings = [p for p in paths if isinstance(_at(doc, p), dict)]
            target = _at(doc, draw(st.sampled_from(mappings))) if mappings \
                and draw(st.booleans()) else doc
            if isinstance(target, dict):
                target[draw(keys)] = draw(trees)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        key = path[-1]
        if op == "replace":
            parent[key] = draw(trees)
        elif op == "quantity":
            parent[key] = draw(quantities)
        elif op == "delete":
            del parent[key]
        elif op == "deep":
            parent[key] = draw(deep_values)
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
        elif op == "cycle" and isinstance(parent[key], (dict, list)):
            inner = parent[key]
            if isinstance(inner, dict):
                inner["self"] = inner
            else:
                inner.append(inner)
    return doc


_YAML_BITS = [
    "apiVersion: dakr.devzero.io/v1alpha1\n", "kind: WorkloadRecommendation\n",
    "kind: NodeGroupRecommendation\n", "kind: List\n", "items:\n", "spec:\n", "metadata:\n",
    "  recommendationId: r-1\n", "  action: Rightsizing\n", "  containers:\n", "  - name: a\n",
    "    resources: {requests: {cpu: 1}}\n", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! !x\n",
    "&a ", "*a", "&b [x, *a]", "<<: *a\n", "<<: [*a, *b]\n", "!!str ", "!!int ", "!!float ",
    "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ",
    "!local ", "? ", ": ", "- ", "[", "]", "{", "}", ",", "'", '"', "|\n", ">-\n", "#c\n",
    "\t", " ", "  ", "\n", "\r\n", "\ufeff", "\x00", "\x85", "\u2028", "0b_", "0x_", "0o7",
    "0755", "1_000", "1:30", "2001-13-45", "2001-12-14t21:59:43.10-05:00", ".inf", ".nan",
    "~", "null", "yes", "on", "1e999", "123456789012345678901234567890", '"\\ud800"',
    "'it''s'", '"\\x41"', "é", "🚀",
]
yaml_texts = st.lists(st.sampled_from(_YAML_BITS), max_size=40).map("".join)

# --------------------------------------------------------------------------- properties


def _read(text: str) -> list[Any] | None:
    """``parse_documents`` with its defaults; None when it refused the text, as it may."""
    try:
        return files.parse_documents(text)
    except errors.ReconcilerError as e:
        assert str(e)
        return None


def _strict_json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, sort_keys=True)


def _bounds(rec: model.Recommendation) -> None:
    if isinstance(rec, model.WorkloadRecommendation):
        assert rec.action in model.WORKLOAD_ACTIONS
        assert rec.targetRef.kind in model.TARGET_KINDS
        assert validation.DNS1123_LABEL.match(rec.namespace)
        names = [c.name for c in rec.containers]
        assert len(names) == len(set(names))
        for c in rec.containers:
            assert validation.DNS1123_LABEL.match(c.name)
            for section in (c.requests, c.limits):
                for res, q in section.items():
                    assert res in validation.RESOURCE_NAMES
                    assert q.value > 0
                    top = validation.MAX_CPU if res == "cpu" else validation.MAX_MEMORY
                    assert q.value <= top
                    assert (q.value / Fraction(1, 10**9)).denominator == 1  # nano precision
            for res, q in c.requests.items():
                if res in c.limits:
                    assert q.value <= c.limits[res].value
        if rec.replicas is not None:
            assert 0 <= rec.replicas <= validation.MAX_REPLICAS
        if rec.hpa is not None:
            lo, hi = rec.hpa.minReplicas, rec.hpa.maxReplicas
            assert lo is not None or hi is not None
            for v in (lo, hi):
                assert v is None or 1 <= v <= validation.MAX_REPLICAS
            assert lo is None or hi is None or lo <= hi
        assert rec.confidence is None or 0 <= rec.confidence <= 1
    else:
        assert rec.action in model.NODE_GROUP_ACTIONS
        assert 0 <= rec.targetNodeCount <= validation.MAX_NODES
        cur = rec.currentNodeCount
        assert cur is None or 0 <= cur <= validation.MAX_NODES
        if cur is not None and rec.action == "consolidate":
            assert rec.targetNodeCount < cur
        assert len(set(rec.nodesToRemove)) == len(rec.nodesToRemove)
        assert rec.priority is None or -1000 <= rec.priority <= 1000
    assert validation.DNS1123_SUBDOMAIN.match(rec.id) and len(rec.id) <= 253
    assert rec.status.phase in model.PHASES
    if rec.projectedSavings is not None:
        assert math.isfinite(rec.projectedSavings.monthly)
        assert abs(rec.projectedSavings.monthly) <= 1e9
        assert len(rec.projectedSavings.currency) == 3


def check_document(doc: Any) -> model.Recommendation | None:
    """Validate one document and check every promise ``validation`` makes about it."""
    try:
        rec = validation.parse(doc)
    except errors.ValidationError as e:
        assert e.errors, "a ValidationError names at least one field"
        for fe in e.errors:
            assert isinstance(fe, errors.FieldError) and fe.field and fe.reason
        rec = None
    validation.raw_id(doc)
    (item,) = validation.parse_many([doc])
    assert item.ok == (rec is not None)
    if rec is None:
        return None
    _bounds(rec)
    out = rec.to_dict()
    text = _strict_json(out)  # the store and the stream keep it as strict JSON
    again = validation.parse(json.loads(text))
    assert again == rec
    assert _strict_json(again.to_dict()) == text
    return rec


def _same(a: Any, b: Any) -> bool:
    """Equality that takes NaN as equal to itself (a float read back from text)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _unpacked(doc: Any) -> list[Any]:
    """What ``parse_documents`` promises to make of one document."""
    if doc is None:
        return []
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
            and isinstance(doc.get("items"), list):
        return doc["items"]
    return [doc]


def _verdict(doc: Any) -> tuple[bool, tuple[str, ...]]:
    (item,) = validation.parse_many([doc])
    return item.ok, tuple(sorted(e.field for e in item.errors))


def _acyclic(doc: Any) -> bool:
    seen: set[int] = set()
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, (dict, list)):
            if id(v) in seen:
                return False
            seen.add(id(v))
            stack.extend(v.values() if isinstance(v, dict) else v)
    return True


# --------------------------------------------------------------------------- the tests


@given(st.text(max_size=400))
@example("")
@example("[" * 10_000)
@example("{" * 2_000 + "}" * 2_000)
def test_any_text(text: str) -> None:
    docs = _read(text)
    for doc in docs or []:
        check_document(doc)


@given(yaml_texts)
@example("a: &a [*a]\n")
@example("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c, *c]\n")
@example("%YAML 1.1\n--- !!python/object:os.system x\n")
@example("kind: List\nitems: [1, null, {kind: List, items: [2]}]\n")
def test_yaml_fragments(text: str) -> None:
    docs = _read(text)
    for doc in docs or []:
        check_document(doc)


_BYTES_DIR = tempfile.TemporaryDirectory(prefix="dakr-fuzz-")


@given(st.binary(max_size=300))
@example(b"\xef\xbb\xbf{}")
@example(b"\xff\xfe")
@example("a: é\n".encode("latin-1"))
def test_any_bytes_from_a_file(data: bytes) -> None:
    path = pathlib.Path(_BYTES_DIR.name) / "recs.yaml"
    path.write_bytes(data)
    try:
        docs = files.load_documents(path)
    except errors.ReconcilerError as e:
        assert str(path) in str(e)
        return
    for doc in docs:
        check_document(doc)


@given(mutated_documents())
@example(dict(SEEDS[0], spec=dict(SEEDS[0]["spec"], projectedSavings={"monthly": 10**400})))
@example(dict(SEEDS[0], spec=dict(SEEDS[0]["spec"], replicas=10**4299)))
@example(dict(SEEDS[0], spec=dict(SEEDS[0]["spec"], action=-(10**4299))))
def test_mutated_documents(doc: Any) -> None:
    check_document(doc)


def _self_holding() -> dict[str, Any]:
    doc = copy.deepcopy(SEEDS[0])
    doc["spec"]["containers"].append(doc["spec"]["containers"])
    return doc


# Found by the fuzzer; outside @example because hypothesis itself cannot print values
# nested this deep when it reports an example.
DEEP = {
    "deep-action": lambda: dict(SEEDS[0], spec=dict(SEEDS[0]["spec"],
                                                    action=nested(2000, "x", False))),
    "deep-phase": lambda: dict(SEEDS[0], status={"phase": nested(2000, "x", True)}),
    "deep-control-characters": lambda: dict(SEEDS[0], spec=dict(
        SEEDS[0]["spec"], extra=nested(3000, "\x01", True))),
    "self-holding-list": _self_holding,
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_and_recursive_documents(name: str) -> None:
    """Refused with one error naming where: no RecursionError, no endless walk."""
    with pytest.raises(errors.ValidationError) as e:
        validation.parse(DEEP[name]())
    assert len(e.value.errors) == 1 and e.value.errors[0].field.startswith(
        ("spec.", "status."))
    check_document(DEEP[name]())


def test_a_shared_value_is_not_a_cycle() -> None:
    """``&res`` for both requests and limits (a shared, acyclic value) is fine."""
    doc = copy.deepcopy(SEEDS[0])
    res = {"cpu": "100m", "memory": "64Mi"}
    doc["spec"]["containers"][0]["resources"] = {"requests": res, "limits": res}
    assert check_document(doc) is not None


@pytest.mark.parametrize("field", ["replicas", "confidence", "action", "source", "extra"])
def test_numbers_past_the_int_str_limit(field: str) -> None:
    """Only a Python caller can hand these over (JSON and YAML refuse to read them)."""
    doc = copy.deepcopy(SEEDS[0])
    doc["spec"][field] = 10**5000
    with pytest.raises(errors.ValidationError) as e:
        validation.parse(doc)
    assert {fe.field for fe in e.value.errors} == {f"spec.{field}"}
    doc = copy.deepcopy(SEEDS[0])
    doc["spec"]["containers"][0]["resources"]["requests"]["cpu"] = -(10**5000)
    with pytest.raises(errors.ValidationError) as e:
        validation.parse(doc)
    assert [fe.field for fe in e.value.errors] == ["spec.containers[0].resources.requests.cpu"]


@given(mutated_documents(), st.booleans(), st.booleans())
def test_mutated_documents_through_the_reader(doc: Any, as_json: bool, pretty: bool) -> None:
    """A document written as JSON or YAML reads back as itself and gets the same verdict."""
    if not _acyclic(doc):
        return  # neither format can write it
    if as_json:
        try:
            text = json.dumps(doc, ensure_ascii=pretty, indent=2 if pretty else None)
        except (ValueError, RecursionError):
            return  # not writable as JSON (a key of a type JSON has no key for)
        written = json.loads(text)
    else:
        try:
            text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=pretty,
                                  default_flow_style=None if pretty else False)
        except (yaml.YAMLError, RecursionError):
            return
        written = doc
    docs = _read(text)
    if docs is None:
        return  # refused within the limits (nesting, sizes): allowed
    assert _same(docs, _unpacked(written)), (docs, written)
    for got in docs:
        check_document(got)
    if len(docs) == 1 and docs[0] is not written:
        assert _verdict(docs[0]) == _verdict(written)


# --------------------------------------------------------------------------- found crashes

# Found by the fuzzer: PyYAML's constructors let these escape as ValueError, KeyError,
# AttributeError or IndexError; ``bounded.load_yaml`` makes each a ConfigError naming the input.
READER_CRASHES = {
    "binary-int-without-digits": "a: 0b_\n",
    "hex-int-without-digits": "a: 0x_\n",
    "impossible-date": "a: 2001-13-45\n",
    "impossible-time": "a: 2001-01-01 25:00:00\n",
    "explicit-int-tag": "a: !!int x\n",
    "explicit-int-tag-on-nothing": "a: !!int\n",
    "explicit-float-tag": "a: !!float x\n",
    "explicit-bool-tag": "a: !!bool x\n",
    "explicit-timestamp-tag": "a: !!timestamp x\n",
    "int-of-5000-digits": "a: " + "1" * 5000 + "\n",
}


@pytest.mark.parametrize("name", sorted(READER_CRASHES))
def test_reader_refuses_values_yaml_cannot_build(name: str) -> None:
    with pytest.raises(errors.ConfigError, match=r"recs\.yaml"):
        files.parse_documents(READER_CRASHES[name], "recs.yaml")


def test_reader_refuses_a_lone_surrogate() -> None:
    with pytest.raises(errors.ConfigError, match="lone surrogate"):
        files.parse_documents("a: '\ud800'\nb: [", "recs.yaml")
