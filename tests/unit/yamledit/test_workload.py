"""Byte-exact YAML edits of Kubernetes workload manifests (reconciler.yamledit.workload).

Cases covered:
- golden files in tests/golden/yamledit (NAME.in.yaml + NAME.changes.json -> NAME.out.yaml):
  byte-for-byte output; every changed diff line holds a new value (or opens an inserted key,
  or is the old line of a replaced value); ValueChange.line points at the new value; the
  output parses to the requested values (checked independently with yaml.safe_load_all);
  re-applying the same changes is a no-op. Cases: block replace, double/single quotes,
  flow mappings, inserted limits / memory / resources, `resources: {}` / null / `~`,
  replicas change and insert, multi-document with license header and `---`/`...`, CRLF,
  BOM without final newline, 4- and 2-space indentation, indented and unindented sequences,
  two containers with one changed, no-op, a merge key near the target, and the real
  microservices-demo manifests (incl. initContainers and the kustomize base);
- every golden case again with all line endings converted to LF and to CRLF;
- the pure-Python SafeLoader fallback gives the same bytes as the C loader;
- every container of every workload in the real demo manifests (plain and kustomize base)
  can be edited (replace + insert + replicas), touching only changed lines, idempotently;
- scan_workloads: the 12 Deployments of the real kubernetes-manifests dir, extra kinds,
  JSON/quoted kinds, document indices that agree with PyYAML on tricky streams, and the
  textual pre-filter skipping (not composing) unrelated broken documents;
- errors: target not found, container not found, ambiguous target naming both places,
  namespace disambiguation, one workload changed twice, replicas on a DaemonSet;
- anchors/aliases/merge keys on the edit path are refused, never half-edited;
- hostile values (newline, '#', ': ', empty, placeholders, words) and hostile resource names
  and replica counts raise PermanentError before anything is touched;
- CronJob pod templates and flow-style container lists;
- numerically equal quantities (1 vs 1000m, 1Gi vs 1024Mi) are no-ops; block scalars refused;
- the post-edit verification refuses a (simulated) wrong rendering.
"""

from __future__ import annotations

import difflib
import json
import pathlib
import re
from decimal import Decimal
from typing import Any

import pytest
import yaml

from reconciler.domain import errors
from reconciler.yamledit import splice, workload

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "yamledit"
DEMO = pathlib.Path("/work/shared/data/microservices-demo")
CASES = sorted(p.name[: -len(".in.yaml")] for p in GOLDEN.glob("*.in.yaml"))
KEY_ONLY = re.compile(r"^\s*(?:-\s+)?(?:resources|requests|limits):\s*(?:#.*)?$")


def _read(path: pathlib.Path) -> str:
    return path.read_bytes().decode("utf-8")  # keeps CRLF and BOM exactly


def _changes(name: str) -> list[workload.WorkloadChange]:
    raw = json.loads(_read(GOLDEN / f"{name}.changes.json"))
    return [
        workload.WorkloadChange(
            kind=c["kind"],
            name=c["name"],
            namespace=c.get("namespace"),
            containers=tuple(
                workload.ContainerChange(cc["name"], cc.get("requests", {}), cc.get("limits", {}))
                for cc in c.get("containers", [])
            ),
            replicas=c.get("replicas"),
        )
        for c in raw
    ]


_UNITS: dict[str, Decimal] = {"": Decimal(1), "m": Decimal("0.001"), "k": Decimal(1000)}
_UNITS |= {"M": Decimal(10**6), "G": Decimal(10**9)}
_UNITS |= {"Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30)}


def _qty(value: object) -> Decimal:
    """A small, separate quantity parser so the test does not trust the module's own."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert m, value
    return Decimal(m.group(1)) * _UNITS[m.group(2) or ""]


def _find_doc(docs: list[Any], change: workload.WorkloadChange) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if isinstance(d, dict)
        and d.get("kind") == change.kind
        and d["metadata"]["name"] == change.name
        and change.namespace in (None, d["metadata"].get("namespace", "default"))
    ]
    assert len(found) == 1
    return found[0]


def _only_insertions(old: str, new: str) -> bool:
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return all(tag in ("equal", "insert") for tag, *_ in ops)


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    source = _read(GOLDEN / f"{name}.in.yaml")
    expected = _read(GOLDEN / f"{name}.out.yaml")
    changes = _changes(name)
    result = workload.edit_many(source, changes)

    assert result.text == expected

    # The diff holds only changed values and inserted keys.
    new_values = {c.new for c in result.changes}
    old_values = {c.old for c in result.changes if c.old is not None}
    diff = list(difflib.ndiff(source.splitlines(), result.text.splitlines()))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    removed = [line[2:] for line in diff if line.startswith("- ")]
    for line in added:
        assert any(v in line for v in new_values) or KEY_ONLY.match(line), line
    for line in removed:
        converted = re.sub(r":\s+(?:\{\}|~)(\s*(?:#.*)?)$", r":\1", line)
        grown = any(_only_insertions(line, a) for a in added)  # e.g. `{}` -> `{k: v}`
        assert any(v in line for v in old_values) or converted in added or grown, line
    assert len(added) >= len(removed)
    if not result.changes:
        assert result.text == source

    # Every reported line shows its new value.
    new_lines = result.text.splitlines()
    for c in result.changes:
        assert c.new in new_lines[c.line - 1], c
        assert c.old is None or c.old != c.new

    # Semantics, checked independently: the output parses to the requested values.
    docs = list(yaml.safe_load_all(result.text.lstrip("\ufeff")))
    assert len(docs) == len(list(yaml.safe_load_all(source.lstrip("\ufeff"))))
    for change in changes:
        doc = _find_doc(docs, change)
        if change.replicas is not None:
            assert doc["spec"]["replicas"] == change.replicas
        pod = doc["spec"]["template"]["spec"]
        for cc in change.containers:
            items = pod.get("containers", []) + pod.get("initContainers", [])
            (container,) = [c for c in items if c["name"] == cc.name]
            for section, values in (("requests", cc.requests), ("limits", cc.limits)):
                for res, qty in values.items():
                    assert _qty(container["resources"][section][res]) == _qty(qty)

    # Idempotent: the same changes against the output change nothing.
    again = workload.edit_many(result.text, changes)
    assert again.text == result.text
    assert again.changes == ()


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("name", CASES)
def test_golden_with_other_line_endings(name: str, eol: str) -> None:
    def convert(text: str) -> str:
        return text.replace("\r\n", "\n").replace("\n", eol)

    source = convert(_read(GOLDEN / f"{name}.in.yaml"))
    result = workload.edit_many(source, _changes(name))
    assert result.text == convert(_read(GOLDEN / f"{name}.out.yaml"))


def test_golden_set_covers_the_brief() -> None:
    required = {
        "block_replace", "quoted", "flow_mapping", "insert_limits", "insert_memory",
        "insert_resources", "replicas", "multidoc_license", "crlf", "indent4",
        "seq_unindented", "two_containers", "noop", "real_cartservice", "real_frontend",
        "real_loadgenerator", "real_kustomize_checkoutservice",
    }  # fmt: skip
    assert required <= set(CASES)
    assert b"\r\n" in (GOLDEN / "crlf.in.yaml").read_bytes()
    assert (GOLDEN / "crlf.out.yaml").read_bytes().count(b"\n") == (
        GOLDEN / "crlf.out.yaml"
    ).read_bytes().count(b"\r\n")


def test_pure_python_loader_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice, "LOADER", yaml.SafeLoader)
    for name in ("real_cartservice", "crlf", "bom_no_eol", "flow_mapping"):
        source = _read(GOLDEN / f"{name}.in.yaml")
        assert workload.edit_many(source, _changes(name)).text == _read(GOLDEN / f"{name}.out.yaml")


# --------------------------------------------------------------------------- scan_workloads


def test_scan_finds_every_deployment_of_the_demo() -> None:
    manifests = sorted((DEMO / "kubernetes-manifests").glob("*.yaml"))
    found: list[tuple[str, splice.WorkloadRef]] = []
    expected: set[tuple[str, str]] = set()
    for path in manifests:
        text = _read(path)
        for ref in workload.scan_workloads(text):
            found.append((path.name, ref))
            lines = text.splitlines()
            assert lines[ref.line - 1].startswith("apiVersion:")
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                expected.add((path.name, doc["metadata"]["name"]))
    assert len(found) == 12
    assert {(f, r.name) for f, r in found} == expected
    assert all(r.kind == "Deployment" and r.namespace is None for _, r in found)
    cart = [r for f, r in found if f == "cartservice.yaml"]
    assert [r.doc_index for r in cart] == [0, 3]


STREAMS = {
    "preamble-comments": "# c\n# d\n---\nkind: Deployment\nmetadata: {name: a}\n",
    "explicit-empty-docs": "---\n---\nkind: Deployment\nmetadata: {name: a}\n---\n",
    "doc-end-markers": "kind: Service\n...\n# x\n---\nkind: Deployment\nmetadata: {name: a}\n...\n",
    "directive": "%YAML 1.1\n---\nkind: Deployment\nmetadata:\n  name: a\n",
    "block-scalar-with-dashes": (
        "kind: ConfigMap\ndata:\n  x: |\n    ---\n    kind: Deployment\n"
        "---\nkind: Deployment\nmetadata: {name: b, namespace: n}\n"
    ),
    "json": '{"kind": "Deployment", "metadata": {"name": "j"}}\n---\n"kind": "Deployment"\n'
    "metadata: {name: k}\n",
    "inline-after-marker": "--- {kind: Deployment, metadata: {name: a}}\n--- # c\nkind: x\n",
}


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_scan_document_indices_agree_with_pyyaml(stream: str) -> None:
    text = STREAMS[stream]
    expected = [
        (i, d["metadata"]["name"], d["metadata"].get("namespace"))
        for i, d in enumerate(yaml.safe_load_all(text))
        if isinstance(d, dict) and d.get("kind") == "Deployment"
    ]
    got = [(r.doc_index, r.name, r.namespace) for r in workload.scan_workloads(text)]
    assert got == expected
    assert got  # every stream defines at least one


def test_scan_extra_kinds_and_prefilter() -> None:
    broken_config = "kind: ConfigMap\ndata: {a: [unclosed\n"
    text = (
        "kind: StatefulSet\nmetadata: {name: db, namespace: data}\n---\n"
        + broken_config
        + "---\nkind: Service\nmetadata: {name: svc}\n"
    )
    refs = workload.scan_workloads(text, kinds=("StatefulSet", "Service"))
    assert [(r.kind, r.name, r.namespace, r.doc_index) for r in refs] == [
        ("StatefulSet", "db", "data", 0),
        ("Service", "svc", None, 2),
    ]
    assert workload.scan_workloads(text, kinds=()) == []
    # The broken document is never composed unless its kind is asked for.
    with pytest.raises(errors.PermanentError, match="invalid YAML in document 1"):
        workload.scan_workloads(text, kinds=("ConfigMap",))


# --------------------------------------------------------------------------- errors

TWO_APIS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  template:
    spec:
      containers:
      - name: app
        resources: {requests: {cpu: 100m}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: default
spec:
  template:
    spec:
      containers:
      - name: app
"""


def _cpu(name: str, cpu: str, container: str = "app", ns: str | None = None) -> Any:
    return workload.WorkloadChange(
        "Deployment", name, ns, (workload.ContainerChange(container, {"cpu": cpu}, {}),)
    )


def test_ambiguous_target_names_both_places() -> None:
    with pytest.raises(splice.AmbiguousTargetError) as info:
        workload.edit_workload(TWO_APIS, _cpu("api", "200m"))
    assert isinstance(info.value, errors.PermanentError)
    assert info.value.places == ((0, 1), (1, 12))
    assert "document 0 (line 1)" in str(info.value)
    assert "document 1 (line 12)" in str(info.value)
    # A namespace that only one document has is not ambiguous.
    result = workload.edit_workload(
        TWO_APIS, _cpu("api", "200m", ns="default"), default_namespace="other"
    )
    assert [c.line for c in result.changes] == [24]  # after the inserted resources/requests


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (_cpu("nope", "1"), "Deployment \\*/nope is not defined"),
        (_cpu("api", "1", ns="prod"), "Deployment prod/api is not defined"),
        (_cpu("api", "1", container="ghost", ns="default"), "container 'ghost' not found"),
    ],
)
def test_not_found(change: workload.WorkloadChange, pattern: str) -> None:
    with pytest.raises(errors.NotFoundError, match=pattern):
        workload.edit_workload(TWO_APIS, change, default_namespace="x")


def test_same_workload_twice_is_refused() -> None:
    text = _read(GOLDEN / "two_containers.in.yaml")
    with pytest.raises(errors.PermanentError, match="changed twice"):
        workload.edit_many(text, [_cpu("pair", "1"), _cpu("pair", "2", container="sidecar")])


def test_replicas_on_a_daemonset_is_refused() -> None:
    text = _read(GOLDEN / "insert_memory.in.yaml")
    change = workload.WorkloadChange("DaemonSet", "node-agent", None, replicas=2)
    with pytest.raises(errors.FieldError, match="no replicas"):
        workload.edit_workload(text, change)


# --------------------------------------------------------------------------- anchors

ANCHORED = {
    "container-is-an-alias": """\
kind: Deployment
metadata: {name: w}
spec:
  template:
    spec:
      initContainers:
      - &base
        name: app
        resources: {requests: {cpu: 100m}}
      containers:
      - *base
""",
    "resources-shared": """\
kind: Deployment
metadata: {name: w}
spec:
  template:
    spec:
      containers:
      - name: app
        resources: &r
          requests:
            cpu: 100m
      - name: other
        resources: *r
""",
    "value-shared": """\
kind: Deployment
metadata: {name: w}
spec:
  template:
    spec:
      containers:
      - name: other
        resources: {requests: {cpu: &c 100m}}
      - name: app
        resources: {requests: {cpu: *c}}
""",
    "resources-from-merge-key": """\
kind: Deployment
metadata: {name: w}
x-res: &res
  resources:
    requests:
      cpu: 100m
spec:
  template:
    spec:
      containers:
      - <<: *res
        name: app
""",
}


@pytest.mark.parametrize("case", sorted(ANCHORED))
def test_anchors_on_the_path_are_refused(case: str) -> None:
    with pytest.raises(errors.PermanentError, match=r"anchor|merge key"):
        workload.edit_workload(ANCHORED[case], _cpu("w", "200m"))


def test_unaliased_anchor_is_edited_in_place() -> None:
    text = (
        POD_PREFIX.format(name="w")
        + "      - name: app\n"
        + ("        resources: {requests: {cpu: &c 100m}}\n")
    )
    result = workload.edit_workload(text, _cpu("w", "200m"))
    assert result.text == text.replace("&c 100m", "&c 200m")


# --------------------------------------------------------------------------- values

POD_PREFIX = """\
kind: Deployment
metadata: {{name: {name}}}
spec:
  template:
    spec:
      containers:
"""

HOSTILE = [
    "100m\nmalicious: true",
    "1 # comment",
    "a: b",
    "",
    "100 m",
    "${CPU}",
    "true",
    "null",
    "1e",
    "--1",
    "1" * 65,
    "100m\r",
    '"100m"',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_quantities_are_refused(value: str) -> None:
    text = _read(GOLDEN / "block_replace.in.yaml")
    change = workload.WorkloadChange(
        "Deployment", "api", None, (workload.ContainerChange("api", {}, {"memory": value}),)
    )
    with pytest.raises(errors.PermanentError):
        workload.edit_workload(text, change)


@pytest.mark.parametrize("resource", ["cpu: 1", "cpu\n", "#cpu", "", "-cpu", "a b"])
def test_hostile_resource_names_are_refused(resource: str) -> None:
    change = workload.WorkloadChange(
        "Deployment", "api", None, (workload.ContainerChange("api", {resource: "1"}, {}),)
    )
    with pytest.raises(errors.PermanentError):
        workload.edit_workload(_read(GOLDEN / "block_replace.in.yaml"), change)


@pytest.mark.parametrize("replicas", [-1, True, "3", 1.5])
def test_hostile_replicas_are_refused(replicas: Any) -> None:
    change = workload.WorkloadChange("Deployment", "api", None, replicas=replicas)
    with pytest.raises(errors.PermanentError):
        workload.edit_workload(_read(GOLDEN / "block_replace.in.yaml"), change)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("1", "1000m", False),
        ('"0.5"', "500m", False),
        ("1Gi", "1024Mi", False),
        ("128974848", "123Mi", False),
        ("100m", "100m", False),
        ("1", "1001m", True),
        ("1Gi", "1G", True),
        ("'250m'", "0.3", True),
    ],
)
def test_quantity_equality(old: str, new: str, changed: bool) -> None:
    text = (
        POD_PREFIX.format(name="q")
        + "      - name: app\n"
        + (f"        resources:\n          limits:\n            memory: {old}\n")
    )
    change = workload.WorkloadChange(
        "Deployment", "q", None, (workload.ContainerChange("app", {}, {"memory": new}),)
    )
    result = workload.edit_workload(text, change)
    assert (result.text != text) is changed
    assert len(result.changes) == int(changed)


def test_block_scalar_value_is_refused() -> None:
    text = (
        POD_PREFIX.format(name="b")
        + "      - name: app\n"
        + ("        resources:\n          requests:\n            cpu: |\n              100m\n")
    )
    with pytest.raises(errors.PermanentError, match="block scalar"):
        workload.edit_workload(text, _cpu("b", "200m"))


def test_verification_refuses_a_wrong_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    real = splice._render_block

    def shifted(*args: Any) -> Any:
        text, leaves = real(*args)
        return " " + text, [(o + 1, lf) for o, lf in leaves]  # one column off

    monkeypatch.setattr(splice, "_render_block", shifted)
    with pytest.raises(errors.PermanentError, match="internal check failed"):
        workload.edit_many(_read(GOLDEN / "insert_limits.in.yaml"), _changes("insert_limits"))


DEMO_FILES = sorted((DEMO / "kubernetes-manifests").glob("*.yaml")) + sorted(
    (DEMO / "kustomize" / "base").glob("*.yaml")
)


@pytest.mark.parametrize("path", DEMO_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_demo_workload_can_be_edited(path: pathlib.Path) -> None:
    text = _read(path)
    for ref in workload.scan_workloads(text):
        doc = list(yaml.safe_load_all(text))[ref.doc_index]
        pod = doc["spec"]["template"]["spec"]
        names = [c["name"] for c in pod.get("containers", []) + pod.get("initContainers", [])]
        change = workload.WorkloadChange(
            ref.kind,
            ref.name,
            ref.namespace,
            tuple(
                workload.ContainerChange(
                    n, {"cpu": "123m", "nvidia.com/gpu": "1"}, {"memory": "77Mi"}
                )
                for n in names
            ),
            replicas=7,
        )
        result = workload.edit_workload(text, change)
        # Untouched lines stay byte-for-byte; every changed line carries a new value.
        diff = difflib.ndiff(text.splitlines(), result.text.splitlines())
        for line in diff:
            if line.startswith("+ "):
                assert re.search(
                    r"123m|nvidia.com/gpu: 1|77Mi|replicas: 7", line
                ) or KEY_ONLY.match(line[2:]), line
        again = workload.edit_workload(result.text, change)
        assert again.text == result.text and again.changes == ()


def test_cronjob_pods_and_flow_sequence_containers() -> None:
    text = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: example/job}]
"""
    change = workload.WorkloadChange(
        "CronJob", "nightly", None, (workload.ContainerChange("job", {"cpu": "1"}, {}),)
    )
    result = workload.edit_workload(text, change)
    assert result.text == text.replace(
        "image: example/job}", "image: example/job, resources: {requests: {cpu: 1}}}"
    )
    (only,) = result.changes
    assert only.path == "spec.jobTemplate.spec.template.spec.containers[job].resources.requests.cpu"
    assert (only.old, only.new, only.line) == (None, "1", 11)
    assert workload.scan_workloads(text) == []
    assert [r.name for r in workload.scan_workloads(text, kinds=["CronJob"])] == ["nightly"]
