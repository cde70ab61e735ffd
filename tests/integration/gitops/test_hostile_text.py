"""End to end: untrusted text never becomes markup, a second line or an escape sequence
(`reconciler apply` in GitOps mode against a real origin, with the embedded OPA engine and
a small custom policy; the pull-request body is rendered by markdown-it in GFM-like mode,
tables and autolinks on, HTML passed through, as a forge would).

The batch holds good recommendations next to hostile text in every field that can reach
the pull request, the commit, the log or the terminal. The hostile text carries an image,
a link, an autolink (`https://...`, `www.`), mentions (`@somebody`, `@org/team`), raw HTML
(`<img ... onerror>`), backticks, a pipe, a newline with a Markdown heading, a CR and an
ESC sequence. It reaches the output through:

- a malformed recommendation: its id as written (with and without control characters),
  its `spec.targetRef.name` echoed by the DNS-1123 rejection reason, an unknown field
  whose key is hostile;
- a policy deny message (`sprintf` of the manifest's annotation, which the repository
  controls) and a policy warning (`sprintf` of `--policy-data`, the platform's data);
- a container name and a resource value in a manifest of the repository, echoed by the
  planner's refusal (container not found, invalid value);
- the repository path of an applied manifest (a file named with markup characters);
- a YAML file that cannot be parsed, named with a newline and an ESC, whose path reaches
  a log line.

Cases:
- the body: no `<img`, `<a `, heading or raw HTML of the input in the rendered HTML;
  every marker of the hostile text (`evil.example`, `@somebody`, `@org/team`, `onerror`,
  `injected`) appears only inside `<code>`; `http` appears nowhere outside code but in
  our own text; every table keeps its rows and cells; the good recommendations are in the
  body and their values are on the pushed branch; the hostile file's path is shown;
- the commit message (git log of the pushed branch): subject, heading, one `- id` line
  per applied recommendation, no control character; ``commit_message`` with hostile
  values gives one line per value, escaped and bounded;
- the log records and the terminal output (summary table, stderr): no control character,
  one line per record; the hostile file path is logged escaped;
- the revert pull request's body (values from the repository and ``status.previous``):
  the same checks;
- reverting the escaping of the body (``text.md_code``/``md_cell`` made identity) makes
  the body checks fail: the checks can fail.
"""

from __future__ import annotations

import html
import logging
import re
import subprocess
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from reconciler.cli import main as cli
from reconciler.domain import text
from reconciler.gitops import writer

NOW = "2026-11-24T10:00:00Z"
HOSTILE = ("![x](https://evil.example/p.png) [l](https://evil.example/l) @somebody @org/team "
           "<img src=x onerror=alert(1)> www.evil.example ``tick` | pipe\n## injected\r\x1b[31m")
HOSTILE_LINE = HOSTILE.split("\n")[0]  # no control character: the id shown as written
MARKERS = ("evil.example", "@somebody", "@org/team", "onerror", "injected")
# A file name can hold neither a slash nor NUL: the rest of the markup it can.
HOSTILE_FILE = "![x](evil.png) @somebody <img src=x onerror=alert(1)> `t` | p.yaml"
BROKEN_FILE = "broken\n\x1b[31mred @somebody.yaml"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

POLICY = """
package dakr

import rego.v1

note := object.get(object.get(object.get(input, "target", {}), "metadata", {}),
                    "annotations", {})

deny contains {"rule": "Hostile", "msg": sprintf("annotated %v", [note.note])} if note.note

warnings contains sprintf("platform says %v", [data.config.note])

decision := {"allow": count(deny) == 0, "mode": "gitops",
             "deny": [d | some d in deny], "warnings": [w | some w in warnings]}

batch := [d | some item in input.items; d := decision with input as item]
"""


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def deployment(name: str, container: str = "server", cpu: str = "200m",
               note: str | None = None) -> str:
    annotations = f"\n  annotations:\n    note: {_yaml_str(note)}" if note else ""
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n"
            f"  namespace: default{annotations}\nspec:\n  replicas: 1\n  template:\n"
            f"    spec:\n      containers:\n      - name: {_yaml_str(container)}\n"
            f"        image: x\n        resources:\n          requests:\n"
            f"            cpu: {_yaml_str(cpu)}\n")


def _yaml_str(s: str) -> str:
    """A double-quoted YAML scalar: every character, control ones too, written escaped."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def rec(rec_id: str, name: str, cpu: str = "150m", extra: str = "") -> str:
    return (f"---\napiVersion: dakr.devzero.io/v1alpha1\nkind: WorkloadRecommendation\n"
            f"metadata: {{namespace: default}}\nspec:\n  recommendationId: {_yaml_str(rec_id)}\n"
            f"  action: Rightsizing\n  targetRef: {{kind: Deployment, name: {_yaml_str(name)}}}\n"
            f"  containers:\n  - name: server\n    resources:\n      requests: {{cpu: {cpu}}}\n"
            f"  confidence: 0.9\n{extra}")


def add_to_origin(origin: Path, tmp: Path, files: dict[str, str]) -> None:
    seed = tmp / "seed-extra"
    sh("git", "clone", "-q", str(origin), str(seed))
    for rel, content in files.items():
        path = seed / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    sh("git", "add", "-A", cwd=seed)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "extra", cwd=seed)
    sh("git", "push", "-q", "origin", "main", cwd=seed)


def _outside_code(rendered: str) -> str:
    return re.sub(r"<code>.*?</code>", "", rendered, flags=re.S)


def _run(origin: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "hostile.rego").write_text(POLICY)
    data = tmp / "platform.yaml"
    data.write_text(f"config:\n  note: {_yaml_str(HOSTILE)}\n")
    add_to_origin(origin, tmp, {
        f"apps/{HOSTILE_FILE}": deployment("oddpath"),
        "apps/annotated.yaml": deployment("annotated", note=HOSTILE),
        "apps/odd-container.yaml": deployment("oddcontainer", container=HOSTILE),
        "apps/odd-value.yaml": deployment("oddvalue", cpu=HOSTILE),
        f"apps/{BROKEN_FILE}": "kind: Deployment\nmetadata: {name: cartservice\n  [unclosed\n",
    })
    recs = tmp / "recs.yaml"
    recs.write_text("".join([
        rec("rec-good", "cartservice"),
        rec("rec-odd-path", "oddpath"),
        rec("rec-annotated", "annotated"),
        rec("rec-odd-container", "oddcontainer"),
        rec("rec-odd-value", "oddvalue"),
        rec(HOSTILE_LINE, "cartservice"),
        rec(HOSTILE, HOSTILE, extra=f"  {_yaml_str(HOSTILE.replace(chr(10), ' '))}: 1\n"),
    ]))
    rc = cli.main(["apply", "-f", str(recs), "--repo", str(origin), "--state-dir",
                   str(tmp / "state"), "--policies", str(policies), "--policy-data", str(data),
                   "--now", NOW])
    out = capsys.readouterr()
    assert rc == 0, out.err
    body = (tmp / "state" / "pull-request.md").read_text(encoding="utf-8")
    return body, out.out, out.err


def _assert_inert(body: str) -> None:
    """The checks a forge's rendering must pass; raises AssertionError when one fails."""
    rendered = MarkdownIt("gfm-like").render(body)
    outside = _outside_code(rendered)
    assert "<img" not in rendered
    assert "<a " not in rendered  # no link, autolink or linkified URL of anyone's
    assert "<h2>injected" not in rendered and "\n## injected" not in body
    for marker in MARKERS:
        assert marker not in outside, marker
    assert "http" not in outside
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):
        for row in re.findall(r"<tr>.*?</tr>", table, flags=re.S):
            assert len(re.findall(r"<t[dh][ >]", row)) == 4, row
    assert not CONTROL.search(body.replace("\n", ""))


def test_hostile_text_in_a_gitops_batch(origin: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body, out, err = _run(origin, tmp_path, capsys)
    _assert_inert(body)
    rendered = MarkdownIt("gfm-like").render(body)
    code = " ".join(re.findall(r"<code>(.*?)</code>", rendered, flags=re.S))
    for marker in MARKERS:
        assert html.escape(marker) in code, marker  # shown, as text
    # The good ones are applied, and what was refused is listed with its reason.
    for good in ("rec-good", "rec-odd-path", "rec-odd-value"):
        assert f"`{good}`" in body
    assert "Hostile: annotated" in body and "not found in Deployment/oddcontainer" in body
    assert "apps/![x](evil.png) @somebody" in body  # the hostile path, inside its span
    assert "| ```![x](https://evil.example/p.png)" in body  # the hostile id, as written
    branch = re.search(r"dakr/batch-[0-9a-f]+", body)
    assert branch is not None
    shown = sh("git", "--git-dir", str(origin), "show",
               f"{branch.group(0)}:kubernetes-manifests/cartservice.yaml")
    assert "cpu: 150m" in shown
    # The commit: one line per applied recommendation, nothing that is not ours.
    message = sh("git", "--git-dir", str(origin), "log", "-1", "--format=%B", branch.group(0))
    assert message.splitlines()[:6] == [
        "dakr: apply 3 recommendation(s)", "", "Recommendations:",
        "- rec-good", "- rec-odd-path", "- rec-odd-value"]
    assert not CONTROL.search(message.replace("\n", ""))
    # Logs and the terminal: one line per record, no control character.
    for record in caplog.records:
        line = record.getMessage()
        assert not CONTROL.search(line), line
    assert any("broken\\n\\x1b[31mred @somebody.yaml" in r.getMessage()
               for r in caplog.records)
    for stream in (out, err):
        assert not CONTROL.search(stream.replace("\n", ""))
    assert "rec-good" in out


def test_commit_message_values_stay_one_line_each() -> None:
    message = writer.commit_message("dakr: revert " + HOSTILE, "Rolls back:",
                                    [HOSTILE, "Signed-off-by: x <x@x>\nSigned-off-by: y"])
    lines = message.splitlines()
    assert len(lines) == 5 and lines[2] == "Rolls back:"
    assert lines[4].startswith("- Signed-off-by: x <x@x>\\nSigned-off-by")
    assert not CONTROL.search(message.replace("\n", ""))
    assert len(lines[0]) <= writer.SUBJECT_LIMIT


def test_the_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the escaping undone (plain backticks, as before), the same checks fail."""
    from reconciler.domain import decision, model, results

    def naive(s: str, limit: int = 0) -> str:
        return f"`{s}`"

    item = results.ItemResult(id="rec-1", phase=model.REJECTED, target="Deployment/x",
                              decision=decision.Decision(allow=False, mode="gitops", deny=(
                                  decision.Denial("Hostile", HOSTILE),)))
    _assert_inert(results.pull_request_body([item], branch="b", base="main"))
    monkeypatch.setattr(text, "md_cell", naive)
    monkeypatch.setattr(text, "md_code", naive)
    with pytest.raises(AssertionError):
        _assert_inert(results.pull_request_body([item], branch="b", base="main"))


def test_revert_pull_request_body_is_inert() -> None:
    """The revert pull request shows values read from the repository and from
    ``status.previous`` (both writable by others) inside code spans, its title too."""
    from reconciler.domain import model, planner, results
    from reconciler.gitops import revert

    plan = planner.Plan(rec_id="rec-1", kind="Deployment", namespace="default", name="x",
                        resources=(planner.ValueEdit(HOSTILE, "requests", "cpu", HOSTILE,
                                                     "100m"),))
    item = results.ItemResult(id="rec-1", phase=model.APPLIED, target="Deployment/x",
                              namespace="default")
    body = revert._body(item, plan, "main")
    _assert_inert(body)
    assert body.count("<img src=x onerror") == 2  # container and value, each in a cell
