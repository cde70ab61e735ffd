"""Reading the Dockerfile (with dockerfile-parse) and the checks test_image.py runs on it.

Each ``*_problems`` function takes a parsed Dockerfile and returns what is wrong with it as
readable sentences, an empty list when nothing is: the tests assert the real Dockerfile
gives none and that each check does find the fault in a bad one. ``excluded`` answers
"does .dockerignore keep this path out of the build context", with Docker's rules: the
patterns apply in order, the last one that matches the path or one of its parent
directories wins, ``!`` re-includes, ``*`` and ``?`` stop at ``/``, ``**`` crosses it.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import extract_key_values


@dataclass
class Stage:
    """One build stage: its base (build arguments resolved), its name, its instructions."""

    image: str
    name: str | None
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


@dataclass
class Dockerfile:
    parser: DockerfileParser
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


@dataclass
class Copy:
    """A COPY instruction: ``--from`` (a stage, or None for the context), sources, dest."""

    from_stage: str | None
    sources: list[str]
    dest: str


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), build_args=dict(build_args or {}))
    images = iter(parser.parent_images)
    stages: list[Stage] = []
    for instr in parser.structure:
        kind = instr["instruction"]
        if kind == "FROM":
            words = [w for w in instr["value"].split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=next(images), name=name))
        elif kind != "COMMENT" and stages:
            stages[-1].instructions.append(instr)
    return Dockerfile(parser, stages)


def key_values(value: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of an ENV, ARG or LABEL, as written (no substitution)."""
    return list(extract_key_values(env_replace=False, args={}, envs={},
                                   instruction_value=value))


def parse_copy(value: str) -> Copy:
    words = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    return Copy(from_stage, paths[:-1], paths[-1])


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell line: its words, split at ``&&``, ``||``, ``;``, ``|``."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    command: list[str] = []
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&", "(", ")"):
            if command:
                yield command
            command = []
        else:
            command.append(token)
    if command:
        yield command


# -- the checks -----------------------------------------------------------------------------

# An exact release: major.minor.patch, optionally a variant (3.11.14-slim-bookworm).
EXACT_TAG = re.compile(r"\d+\.\d+\.\d+(?:[.-][A-Za-z0-9_.-]+)?")


def from_problems(df: Dockerfile) -> list[str]:
    """Every base image pinned to an exact version; every stage on the same one."""
    problems: list[str] = []
    names: set[str] = set()
    bases: set[str] = set()
    for stage in df.stages:
        ref = stage.image
        if ref not in names:
            bases.add(ref)
            repo, _, digest = ref.partition("@")
            last = repo.rsplit("/", 1)[-1]
            tag = last.partition(":")[2]
            if digest:
                if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                    problems.append(f"FROM {ref}: not a sha256 digest")
            elif not tag:
                problems.append(f"FROM {ref}: no tag, which means latest")
            elif tag == "latest" or not EXACT_TAG.fullmatch(tag):
                problems.append(f"FROM {ref}: the tag {tag!r} is not an exact version")
        if stage.name:
            names.add(stage.name)
    if len(bases) > 1:
        problems.append(f"the stages use different base images {sorted(bases)}: the virtual "
                        "environment links the builder's interpreter")
    return problems


def user_problems(df: Dockerfile) -> list[str]:
    """The final stage runs as a numeric uid:gid that is not root (runAsNonRoot checks it)."""
    users = df.final.values("USER")
    if not users:
        return ["the final stage has no USER: it runs as root"]
    user, _, group = users[-1].partition(":")
    problems: list[str] = []
    if not user.isdigit():
        problems.append(f"USER {users[-1]}: the user is not numeric, so Kubernetes cannot "
                        "verify runAsNonRoot")
    elif int(user) == 0:
        problems.append(f"USER {users[-1]}: root")
    if not group:
        problems.append(f"USER {users[-1]}: no numeric group")
    elif not group.isdigit() or int(group) == 0:
        problems.append(f"USER {users[-1]}: the group is not numeric or is root")
    return problems


def pip_installs(df: Dockerfile) -> Iterator[list[str]]:
    """The arguments after ``install`` of every ``pip install`` in every RUN."""
    for stage in df.stages:
        for script in stage.values("RUN"):
            for words in shell_commands(script):
                for i, word in enumerate(words[:-1]):
                    is_pip = posixpath.basename(word) in ("pip", "pip3") or (
                        word == "-m" and i + 1 < len(words) and words[i + 1] == "pip")
                    start = i + 2 if word == "-m" else i + 1
                    if is_pip and start < len(words) and words[start] == "install":
                        yield words[start + 1:]
                        break


PIP_OPTIONS_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable",
                          "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                          "-t", "--target", "--prefix", "--root", "--python-version",
                          "--platform", "--implementation", "--abi"}


def pip_problems(df: Dockerfile, root: Path) -> list[str]:
    """pip installs lock files (``-r x.lock``, pinned throughout) or the project ``--no-deps``."""
    problems: list[str] = []
    for args in pip_installs(df):
        said = "pip install " + " ".join(args)
        locks: list[str] = []
        packages: list[str] = []
        words = iter(args)
        for word in words:
            option, eq, attached = word.partition("=")
            if option in ("-e", "--editable"):
                problems.append(f"{said}: an editable install")
                next(words, None)
            elif option in ("-r", "--requirement"):
                locks.append(attached if eq else next(words, ""))
            elif option in PIP_OPTIONS_WITH_VALUE:
                if not eq:
                    next(words, None)
            elif word.startswith("-r") and len(word) > 2:
                locks.append(word[2:])
            elif not word.startswith("-"):
                packages.append(word)
        for lock in locks:
            if not lock.endswith(".lock"):
                problems.append(f"{said}: {lock} is not a lock file")
            elif not (root / lock).is_file():
                problems.append(f"{said}: {lock} is not in the repository")
            else:
                problems += [f"{said}: {p}" for p in lock_problems(root / lock)]
        if packages and packages != ["."]:
            problems.append(f"{said}: installs {' '.join(packages)} outside the lock files")
        elif packages == ["."] and "--no-deps" not in args:
            problems.append(f"{said}: the project without --no-deps resolves its "
                            "dependencies anew instead of taking the lock files'")
        elif not packages and not locks:
            problems.append(f"{said}: installs no lock file")
    return problems


PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+")


def lock_problems(path: Path) -> list[str]:
    """Every line of a lock file (and of the lock files it includes) is ``name==version``."""
    problems: list[str] = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            included = path.parent / line[3:].strip()
            if included.suffix != ".lock" or not included.is_file():
                problems.append(f"{path.name}:{n}: includes {included.name}, not a lock file")
            else:
                problems += lock_problems(included)
        elif not PIN.fullmatch(line):
            problems.append(f"{path.name}:{n}: {line!r} is not pinned as name==version")
    return problems


SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL", re.IGNORECASE)


def secret_problems(df: Dockerfile) -> list[str]:
    """No ENV, ARG or LABEL whose name says secret carries a value: images are public."""
    problems: list[str] = []
    for stage in df.stages:
        for instr in stage.instructions:
            if instr["instruction"] not in ("ENV", "ARG", "LABEL"):
                continue
            for name, value in key_values(instr["value"]):
                if SECRET_NAME.search(name) and value:
                    problems.append(f"{instr['instruction']} {name}: a secret-looking name "
                                    "with a value baked into the image")
    return problems


def entrypoint_problems(df: Dockerfile) -> list[str]:
    """ENTRYPOINT ["reconciler"] and CMD ["run"], exec form (so signals reach the operator)."""
    problems: list[str] = []
    for instruction, want in (("ENTRYPOINT", ["reconciler"]), ("CMD", ["run"])):
        values = df.final.values(instruction)
        if not values:
            problems.append(f"the final stage has no {instruction}")
            continue
        try:
            got = json.loads(values[-1])
        except json.JSONDecodeError:
            problems.append(f"{instruction} {values[-1]}: shell form, /bin/sh would be PID 1 "
                            "and the operator would never see SIGTERM")
            continue
        if got != want:
            problems.append(f"{instruction} {values[-1]}: expected {json.dumps(want)}")
    return problems


OCI_LABELS = ("title", "description", "version", "source", "licenses")


def label_problems(df: Dockerfile, expected: Mapping[str, str]) -> list[str]:
    """The final stage's OCI labels, ARGs substituted, equal ``expected`` (by short name)."""
    labels = df.parser.labels
    problems: list[str] = []
    for short in OCI_LABELS:
        key = f"org.opencontainers.image.{short}"
        if not labels.get(key):
            problems.append(f"LABEL {key} is missing")
        elif short in expected and labels[key] != expected[short]:
            problems.append(f"LABEL {key}={labels[key]!r}, expected {expected[short]!r}")
    return problems


def apt_problems(df: Dockerfile, packages: Iterable[str] = ("git", "ca-certificates")) -> list[str]:
    """The final stage installs ``packages`` from apt: no recommends, lists removed, one RUN."""
    for script in df.final.values("RUN"):
        commands = list(shell_commands(script))
        installs = [c for c in commands if c[:2] == ["apt-get", "install"]]
        if not installs:
            continue
        problems: list[str] = []
        if not any(c[:2] == ["apt-get", "update"] for c in commands):
            problems.append("apt-get install without apt-get update in the same RUN")
        for words in installs:
            if "--no-install-recommends" not in words:
                problems.append(f"{' '.join(words)}: without --no-install-recommends")
        named = {w for c in installs for w in c[2:] if not w.startswith("-")}
        problems += [f"apt-get install does not install {p}" for p in packages
                     if p not in named]
        if not any(c[:2] == ["rm", "-rf"] and "/var/lib/apt/lists/*" in c for c in commands):
            problems.append("the apt lists are not removed in the RUN that fetched them")
        return problems
    return ["the final stage installs nothing with apt-get (git, ca-certificates)"]


def copy_problems(df: Dockerfile, root: Path, ignore: str) -> list[str]:
    """No ADD; every COPY source from the context exists and none of its files is ignored."""
    patterns = dockerignore(ignore)
    problems: list[str] = []
    for stage in df.stages:
        for instr in stage.instructions:
            if instr["instruction"] == "ADD":
                problems.append(f"ADD {instr['value']}: use COPY (ADD fetches URLs and "
                                "unpacks archives)")
            if instr["instruction"] != "COPY":
                continue
            copy = parse_copy(instr["value"])
            if copy.from_stage:
                continue
            for source in copy.sources:
                rel = posixpath.normpath(source)
                path = root / rel
                if not path.exists():
                    problems.append(f"COPY {source}: not in the repository")
                    continue
                files = [path] if path.is_file() else context_files(path)
                for f in files:
                    name = f.relative_to(root).as_posix()
                    if excluded(name, patterns):
                        problems.append(f"COPY {source}: {name} is excluded by .dockerignore")
    return problems


def context_files(directory: Path) -> list[Path]:
    """The files of a directory that belong in an image: not bytecode caches."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


# -- .dockerignore --------------------------------------------------------------------------

Pattern = tuple[bool, re.Pattern[str]]


def dockerignore(text: str) -> list[Pattern]:
    """(re-include?, regex) per pattern line of a .dockerignore, in order."""
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((negate, re.compile(_translate(line))))
    return patterns


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """Whether .dockerignore's patterns keep ``path`` (relative, ``/``-separated) out."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    out = False
    for negate, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            out = not negate
    return out
