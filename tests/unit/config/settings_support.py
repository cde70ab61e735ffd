"""One way for the settings tests to read a command line and an environment the way the
entry points do: `run` takes its defaults from the DAKR_* variables, then its flags;
`apply` takes the flags of the given group (`flags.add_batch` for GitOps, `add_direct`
for direct mode)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from reconciler.cli import flags, run
from reconciler.config import env, settings


def parse(command: str, argv: list[str], environ: dict[str, str],
          add: Callable[[argparse.ArgumentParser], object] = flags.add_batch
          ) -> settings.Settings:
    p = argparse.ArgumentParser()
    if command == "run":
        run.add_run_flags(p)
        p.set_defaults(**env.run_defaults(environ))
    else:
        add(p)
    return flags.settings_of(p.parse_args(argv), environ)
