"""Kustomize builds: ``kustomize build DIR`` or ``kubectl kustomize DIR``, run as a process.

The GitOps writer edits an overlay's files as text; only a build shows what the cluster
will get from them (name transformers, components, patches in Kustomize's order). There is
no Kustomize library for Python, so this adapter runs the binary: without a shell, with a
timeout, and with its failures translated into ``reconciler.domain.errors`` types. Which
binary is a setting (``GitSettings.kustomize``); where none is found, builds are off and
the caller goes without them (``find`` returns None).

Builds use ``--load-restrictor LoadRestrictionsNone``: overlays that take manifests from
outside their directory (``../guestbook/app.yaml``, as Argo CD's own examples do) build
only with it, and Argo CD installations that deploy them set it in
``kustomize.buildOptions``. The check compares two builds of the same tree, so it judges
the edit, not the repository's loading rules.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePath

from reconciler.domain import errors

AUTO = "auto"  # the setting's default: `kustomize` on PATH, else `kubectl`
OFF = ("", "off", "none", "false")
DEFAULT_TIMEOUT = 60.0
_STDERR_LIMIT = 2000  # of a failed build's message: enough to name the file at fault


@dataclass(frozen=True)
class Kustomize:
    """One Kustomize binary: ``argv`` runs a build when given the directory."""

    argv: tuple[str, ...]  # ("/usr/bin/kustomize", "build") or ("/usr/bin/kubectl", "kustomize")
    timeout: float = DEFAULT_TIMEOUT

    def build(self, directory: Path) -> str:
        """The build's output (a YAML stream) for the kustomization in ``directory``.

        Raises errors.TemporaryError when the build runs past the timeout (a slow remote
        base may answer next time), errors.ConfigError when the binary cannot be started,
        errors.PermanentError when Kustomize refuses the directory (with its message).
        """
        cmd = [*self.argv, str(directory), "--load-restrictor", "LoadRestrictionsNone"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout,
                                  check=False, shell=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise errors.TemporaryError(
                f"kustomize build of {directory} did not finish within {self.timeout:g}s"
            ) from e
        except OSError as e:
            raise errors.ConfigError(f"cannot run {self.argv[0]}: {e}") from e
        except UnicodeDecodeError as e:
            raise errors.PermanentError(
                f"kustomize build of {directory} wrote output that is not UTF-8") from e
        if proc.returncode != 0:
            message = " ".join(proc.stderr.split())[-_STDERR_LIMIT:] or f"exit {proc.returncode}"
            raise errors.PermanentError(f"kustomize build of {directory} failed: {message}")
        return proc.stdout


def find(binary: str = AUTO, *, timeout: float = DEFAULT_TIMEOUT) -> Kustomize | None:
    """The Kustomize the setting names, or None when builds are off.

    ``binary``: ``auto`` (``kustomize`` on PATH, else ``kubectl``, which has Kustomize built
    in), a name looked up on PATH or a path; ``off`` (or empty) turns builds off. A binary
    that is not there also means off: the caller logs it and goes without builds.
    """
    choice = binary.strip()
    if choice.lower() in OFF:
        return None
    if timeout <= 0:
        raise errors.ConfigError(f"the kustomize build timeout must be > 0 (got {timeout})")
    names = ["kustomize", "kubectl"] if choice.lower() == AUTO else [choice]
    for name in names:
        path = shutil.which(name)
        if path is None:
            continue
        sub = "kustomize" if PurePath(path).name.startswith("kubectl") else "build"
        return Kustomize((path, sub), timeout)
    return None
