"""Edits of Kustomize overlays: strategic-merge patches and kustomization files.

In a Kustomize repository the value that takes effect may live in an overlay's patch (a
partial workload document) or in an entry of the kustomization's ``replicas:`` list, and
an overlay without a patch for a workload needs a new patch file listed under
``patches:``. These edits keep the promises of every edit here (splices into the original
text, the file's own style for inserted keys, a re-parse that must show exactly the
intended change) and add what a patch may lack: a container it does not list yet, or the
pod template path itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.domain import errors
from reconciler.yamledit import splice, values, workload

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _seq_indent_of(root: Node) -> int | None:
    """How far this file indents a block sequence below its key (0 = `- ` under the key)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, MappingNode) and not node.flow_style:
            for k, v in node.value:
                if (
                    isinstance(v, SequenceNode)
                    and not v.flow_style
                    and v.value
                    and v.start_mark.line > k.start_mark.line
                ):
                    return max(0, int(v.start_mark.column) - int(k.start_mark.column))
                stack.append(v)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return None


def _render_items(items: Sequence[Mapping[str, Any]], dash: int, eol: str, width: int,
                  seq_indent: int) -> str:
    out: list[str] = []
    for item in items:
        first = next(iter(item))
        head = {first: item[first]}
        rest = {k: v for k, v in item.items() if k != first}
        text = splice.render_block(head, dash + 2, width, seq_indent, eol)
        out.append(" " * dash + "- " + text[dash + 2 :])
        if rest:
            out.append(splice.render_block(rest, dash + 2, width, seq_indent, eol))
    return "".join(out)


def _check_data(new_body: str, index: int, expected: Any, what: str) -> None:
    segs = splice.split_documents(new_body)
    try:
        actual = splice.doc_data(new_body, segs[index])
        same = actual == expected
    except (yaml.YAMLError, IndexError, RecursionError) as e:
        # RecursionError: comparing data nested deeper than the stack.
        raise errors.PermanentError(f"internal check failed for {what}: {e}") from e
    if not same:
        raise errors.PermanentError(
            f"internal check failed for {what}: the edited text does not parse to the "
            "intended data; refusing to write"
        )


def _doc_data(body: str, seg: splice.Segment, what: str) -> Any:
    """The data of a document that composed: a value YAML cannot build from its nodes (an
    unhashable key such as ``? [a]``) only shows now, and is refused like invalid YAML."""
    try:
        return splice.doc_data(body, seg)
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"invalid YAML in {what}: {e}") from e


def _eol_of(body: str) -> str:
    return "\r\n" if "\r\n" in body else "\n"


def _container_item(cc: workload.ContainerChange, *, as_read: bool = False) -> dict[str, Any]:
    """A ``containers`` item setting ``cc``; ``as_read``: with the quantities as YAML reads
    them back from the plain tokens ``render_block`` writes (``1`` and ``0.5`` are numbers,
    not the strings asked for), which is what the check of the written text must expect."""
    item: dict[str, Any] = {"name": cc.name}
    res = {sec: {k: splice.load_data(q) for k, q in v.items()} if as_read else dict(v)
           for sec, v in (("requests", cc.requests), ("limits", cc.limits)) if v}
    if res:
        item["resources"] = res
    return item


def _find_lines(block: str, first_line: int, wanted: Sequence[tuple[str, str]]) -> list[int]:
    """Lines (1-based, in the new text) of ``key: value`` pairs written in this order (a value
    that would read as another type is written in double quotes: ``path: "true"``)."""
    lines = block.split("\n")
    out: list[int] = []
    i = 0
    for key, token in wanted:
        targets = {f"{key}: {token}", f'{key}: "{token}"'}
        targets |= {"- " + t for t in targets}
        while i < len(lines):
            if lines[i].rstrip("\r").lstrip(" \t") in targets:
                break
            i += 1
        out.append(first_line + min(i, len(lines) - 1))
        i += 1
    return out


def edit_patch(text: str, change: workload.WorkloadChange) -> splice.EditResult:
    """Apply ``change`` to a Kustomize strategic-merge patch (a partial workload document).

    Containers the patch already lists are edited like any manifest; a container it does
    not list yet is appended to its ``containers`` list (``- name: X`` plus the resources),
    and a patch without a pod template (one that only sets replicas, say) gains the
    ``spec.template.spec.containers`` path. The patch document is matched by kind and name
    only: a patch carries no namespace of its own in most overlays.
    """
    workload.validate(change)
    for cc in change.containers:
        if not _DNS_LABEL.fullmatch(cc.name):
            raise errors.FieldError(f"{change.kind}/{change.name}.containers", cc.name)
    bom, body = splice.strip_bom(text)
    segs = splice.split_documents(body)
    pattern = splice.kind_filter([change.kind])
    candidates: list[tuple[splice.Doc, tuple[str, str, str | None]]] = []
    for index, seg in enumerate(segs):
        if pattern.search(body, seg.start, seg.end) and change.name in body[seg.start : seg.end]:
            doc = splice.compose(body, index, seg)
            ident = splice.identity(doc.root)
            if ident is not None:
                candidates.append((doc, ident))
    anyns = workload.WorkloadChange(change.kind, change.name, None, change.containers,
                                    change.replicas)
    match = workload.find_target(candidates, anyns, "default")
    if not isinstance(match.root, MappingNode):
        raise errors.PermanentError("the patch document is not a mapping")
    pod_path = workload.pod_spec_path(change.kind)

    listed: set[str] = set()
    pod = _walk(match.root, pod_path)
    if pod is not None:
        for list_key in ("containers", "initContainers"):
            pair = splice.get(pod, list_key)
            if pair is not None and isinstance(pair[1], SequenceNode):
                listed |= {str(splice.scalar_value(splice.get(i, "name"))) for i in pair[1].value}
    existing = tuple(cc for cc in change.containers if cc.name in listed)
    # A change that sets nothing for a container the patch does not list adds nothing (not
    # a bare ``- name: X`` that no reported change would account for).
    missing = [cc for cc in change.containers
               if cc.name not in listed and (cc.requests or cc.limits)]
    has_spec = splice.get(match.root, "spec") is not None

    first = workload.edit_many(
        text,
        [workload.WorkloadChange(change.kind, change.name, None, existing,
                                 change.replicas if has_spec else None)],
    )
    if not missing and (has_spec or change.replicas is None):
        return first

    # Second pass, on the edited text: add what the patch does not hold yet.
    _, body2 = splice.strip_bom(first.text)
    segs2 = splice.split_documents(body2)
    doc = splice.compose(body2, match.index, segs2[match.index])
    p = splice.Planner(body2, doc, [], [])
    width = p.indent_width((doc.root,))
    seq_indent = _seq_indent_of(doc.root) or 0
    eol = _eol_of(body2)
    items = [_container_item(cc) for cc in missing]

    node: Node = doc.root
    depth = 0
    for key in pod_path:
        pair = splice.get(node, key)
        if pair is None:
            break
        if not isinstance(pair[1], MappingNode) or not pair[1].value or pair[1].flow_style:
            raise errors.PermanentError(
                f"{'.'.join(pod_path[: depth + 1])} in the patch (line {doc.line(pair[1])}) is "
                "not a non-empty block mapping; refusing to guess its layout"
            )
        node = pair[1]
        depth += 1
    assert isinstance(node, MappingNode)
    cpair = splice.get(node, "containers") if depth == len(pod_path) else None
    if cpair is not None:
        cseq = cpair[1]
        if not isinstance(cseq, SequenceNode) or cseq.flow_style or not cseq.value:
            raise errors.PermanentError(
                f"the containers list of the patch (line {doc.line(cseq)}) is not a block "
                "sequence; refusing to guess its layout"
            )
        pos = p.line_after_content(cseq)
        block = _render_items(items, int(cseq.start_mark.column), eol, width, seq_indent)
    else:
        tail: dict[str, Any] = {"containers": items} if items else {}
        for key in reversed(pod_path[depth:]):
            tail = {key: tail} if tail else {}
        if change.replicas is not None and not has_spec:
            tail = {"spec": {"replicas": change.replicas, **tail.get("spec", {})}}
        pos = p.line_after_content(node)
        block = splice.render_block(tail, int(node.value[0][0].start_mark.column), width,
                                    seq_indent, eol)
    if pos == len(body2) and not body2.endswith("\n"):
        block = eol + block[: -len(eol)]
    new_body = body2[:pos] + block + body2[pos:]

    expected = _doc_data(body2, segs2[match.index], f"the patch for {change.kind}/{change.name}")
    if change.replicas is not None and not has_spec:
        expected["spec"] = {"replicas": change.replicas}
    if items:
        data = expected
        for key in pod_path:
            data = data.setdefault(key, {})
        data.setdefault("containers", []).extend(
            _container_item(cc, as_read=True) for cc in missing)
    _check_data(new_body, match.index, expected, f"the patch for {change.kind}/{change.name}")

    at_line = body2.count("\n", 0, pos) + 1 + (1 if block.startswith(eol) else 0)
    n_new = block.count("\n")
    shifted = [
        splice.ValueChange(c.path, c.old, c.new, c.line + n_new if c.line >= at_line else c.line)
        for c in first.changes
    ]
    written: list[tuple[str, str, str]] = []  # (path, key, token) in rendering order
    if change.replicas is not None and not has_spec:
        written.append(("spec.replicas", "replicas", str(change.replicas)))
    base = ".".join(pod_path)
    for cc in missing:
        for sec, quantities in (("requests", cc.requests), ("limits", cc.limits)):
            for res, qty in quantities.items():
                written.append((f"{base}.containers[{cc.name}].resources.{sec}.{res}", res, qty))
    # ``at_line`` is the block's first line of content: past the line end it starts with
    # when it went at the end of a file without a final newline.
    content = block[len(eol):] if block.startswith(eol) else block
    lines = _find_lines(content, at_line, [(k, t) for _, k, t in written])
    added = [splice.ValueChange(path, None, tok, ln)
             for (path, _, tok), ln in zip(written, lines, strict=True)]
    return splice.EditResult(bom + new_body, tuple(sorted(shifted + added, key=lambda c: c.line)))


def _walk(node: Node, path: Sequence[str]) -> MappingNode | None:
    for key in path:
        pair = splice.get(node, key)
        if pair is None or not isinstance(pair[1], MappingNode):
            return None
        node = pair[1]
    return node if isinstance(node, MappingNode) else None


def new_patch(api_version: str, change: workload.WorkloadChange, *, eol: str = "\n",
              header: str = "") -> str:
    """The text of a new strategic-merge patch that sets only what ``change`` sets."""
    workload.validate(change)
    if not splice.API_VERSION.fullmatch(api_version) or not _KIND_NAME.fullmatch(change.kind):
        raise errors.FieldError("patch", f"unexpected apiVersion/kind {api_version}/{change.kind}")
    if not _DNS_LABEL.fullmatch(change.name.replace(".", "-")):
        raise errors.FieldError("patch", f"unexpected name {change.name!r}")
    for cc in change.containers:
        if not _DNS_LABEL.fullmatch(cc.name):
            raise errors.FieldError("patch.containers", cc.name)

    def build(as_read: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if change.replicas is not None:
            spec["replicas"] = change.replicas
        if change.containers:
            data: dict[str, Any] = spec
            for key in workload.pod_spec_path(change.kind)[1:]:
                data = data.setdefault(key, {})
            data["containers"] = [_container_item(cc, as_read=as_read)
                                  for cc in change.containers]
        return {"apiVersion": api_version, "kind": change.kind,
                "metadata": {"name": change.name}, "spec": spec}

    text = "".join(f"# {line}{eol}" for line in header.splitlines())
    text += splice.render_block(build(False), 0, 2, 0, eol)
    if splice.load_one(text) != build(True):
        raise errors.PermanentError("internal check failed for a new patch; refusing to write")
    return text


def _root_seq(p: splice.Planner, root: MappingNode, key: str) -> tuple[Node, Node] | None:
    return p.lookup(root, key, splice.Where("", (), (root,)))


def add_kustomize_patches(text: str, entries: Sequence[Mapping[str, Any]]) -> splice.EditResult:
    """Append ``patches:`` entries (``{path, target?}``) to a kustomization.yaml.

    An entry whose path is already listed is skipped, so a rerun adds nothing. The list is
    extended in place in its own indentation; a missing ``patches:`` key is added at the
    end of the file.
    """
    bom, body = splice.strip_bom(text)
    segs, p, root = splice.plan_single_document(body, "a kustomization", "kustomization")
    doc = p.doc
    data = _doc_data(body, segs[0], "the kustomization")
    current = data.get("patches") or []
    if not isinstance(current, list):
        raise errors.PermanentError("patches in the kustomization is not a list")
    listed = {e.get("path") for e in current if isinstance(e, dict)}
    todo: list[dict[str, Any]] = []
    for e in entries:
        path = e.get("path")
        if not isinstance(path, str) or not splice.REL_PATH.fullmatch(path):
            raise errors.FieldError("patches.path", f"not a relative file path: {path!r}")
        if path not in listed:
            listed.add(path)
            todo.append(dict(e))
    if not todo:
        return splice.EditResult(text, ())
    eol = _eol_of(body)
    width = p.indent_width((root,))
    seq_indent = _seq_indent_of(root) or 0
    pair = _root_seq(p, root, "patches")
    cut: tuple[int, int] | None = None
    if pair is not None and isinstance(pair[1], SequenceNode) and pair[1].value:
        seq = pair[1]
        if seq.flow_style:
            raise errors.PermanentError("a flow-style patches list is not edited")
        pos = p.line_after_content(seq)
        block = _render_items(todo, int(seq.start_mark.column), eol, width, seq_indent)
    elif pair is not None:
        key, value = pair
        is_empty = (isinstance(value, ScalarNode) and value.tag == splice.NULL_TAG) or (
            isinstance(value, SequenceNode) and not value.value
        )
        start, end = doc.start(value), doc.end(value)
        if not is_empty or not splice.REST_OF_LINE_EMPTY.match(body, end):
            raise errors.PermanentError("the patches key of the kustomization is not a list")
        cut_at = start
        while cut_at > 0 and body[cut_at - 1] in " \t":
            cut_at -= 1
        cut = (cut_at, end) if cut_at < end else None
        pos = p.after_line(end)
        col = int(key.start_mark.column)
        block = _render_items(todo, col + seq_indent, eol, width, seq_indent)
    else:
        if root.flow_style or not root.value:  # `{}` has no first key to align with
            raise errors.PermanentError(
                "the kustomization is a flow-style or empty mapping; refusing to guess its "
                "layout")
        pos = p.line_after_content(root)
        col = int(root.value[0][0].start_mark.column)
        block = f"{' ' * col}patches:{eol}" + _render_items(todo, col + seq_indent, eol,
                                                             width, seq_indent)
    if pos == len(body) and not body.endswith("\n"):
        block = eol + block[: -len(eol)]
    new_body = body[:pos] + block + body[pos:]
    if cut is not None:
        new_body = new_body[: cut[0]] + new_body[cut[1] :]
    data["patches"] = current + todo
    _check_data(new_body, 0, data, "the kustomization")
    first = new_body.count("\n", 0, pos - (cut[1] - cut[0] if cut else 0)) + 1
    first += 1 if block.startswith(eol) else 0
    wanted = [("path", e["path"]) for e in todo]
    lines = _find_lines(block.lstrip("\r\n"), first, wanted)
    return splice.EditResult(
        bom + new_body,
        tuple(splice.ValueChange(f"patches[{e['path']}]", None, e["path"], ln)
              for e, ln in zip(todo, lines, strict=True)),
    )


def kustomize_replicas(text: str) -> dict[str, int]:
    """The ``replicas:`` field of a kustomization: {name: count}."""
    _, body = splice.strip_bom(text)
    data = values.read_values(body)
    out: dict[str, int] = {}
    entries = data.get("replicas") if isinstance(data, dict) else None
    # Only a list of entries counts: ``replicas: 3`` is no list to iterate (a TypeError),
    # and ``count: true`` no count.
    for e in entries if isinstance(entries, list) else []:
        count = e.get("count") if isinstance(e, dict) else None
        if isinstance(count, int) and not isinstance(count, bool):
            out[str(e.get("name"))] = count
    return out


def edit_kustomize_replicas(text: str, counts: Mapping[str, int]) -> splice.EditResult:
    """Change ``count`` of existing entries of a kustomization's ``replicas:`` list."""
    bom, body = splice.strip_bom(text)
    for name, count in counts.items():
        splice.value_token(f"replicas[{name}]", count)
    if not counts:
        return splice.EditResult(text, ())
    segs, p, root = splice.plan_single_document(body, "a kustomization", "kustomization")
    top = splice.Where("", (), (root,))
    pair = p.lookup(root, "replicas", top)
    if pair is None or not isinstance(pair[1], SequenceNode):
        raise errors.NotFoundError("the kustomization has no replicas list")
    seq_where = top.child("replicas", "replicas", pair[1])
    todo = dict(counts)
    for i, item in enumerate(pair[1].value):
        entry = splice.scalar_value(splice.get(item, "name"))
        if entry is not None and entry in todo:
            item_where = seq_where.child(i, f"[{entry}]", item)
            cpair = p.lookup(p.require_mapping(item, item_where, "replicas entry"), "count",
                             item_where)
            if cpair is None:
                raise errors.PermanentError(f"replicas entry {entry} has no count")
            p.replace(cpair[1], item_where.child("count", "count", item), str(todo.pop(entry)),
                      numeric=True)
    if todo:
        raise errors.NotFoundError(
            f"the kustomization's replicas list has no entry for {', '.join(sorted(todo))}")
    return splice.apply_and_verify(text, bom, body, segs, p.splices, {0: (p.doc, p.leaves)})

