"""Policy data pushed by the platform (the stream's PolicyUpdate), kept apart from the team's.

The platform may send parameters for policies. They are stored under their own root,
``data.platform``, never merged over ``data.config`` (the team's ``policies/data.yaml``):
nothing the platform sends can loosen a guardrail the team set. The default library reads
nothing under ``data.platform``; a team that wants the platform's parameters refers to
them in its own Rego, explicitly.

Updates are deep-merged in arrival order (an object merges key by key, anything else
replaces) into one JSON file in the operator's state directory, written atomically and
acked only after it is on disk, so a restart keeps them. The embedded engine loads the file
as an optional data file (and reloads when it changes); the sidecar gets it through OPA's
Data API (``PUT /v1/data/platform``) whenever an engine is built. An update that would make
the file more than the engine reads (its input limits) is refused: acked, it would leave
the engine without a policy set at its next load.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.adapters.opa import engine as opa
from reconciler.domain import errors, mappings
from reconciler.domain import limits as limits_mod

ROOT = "platform"
MAX_BYTES = 1 << 20  # one update, as JSON: policy parameters, not a data set


def load(path: Path, limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> dict[str, Any]:
    """The platform's parameters (the content under ``data.platform``); {} without a file."""
    try:
        doc = opa.load_data_file(path, limits)
    except FileNotFoundError:
        return {}
    except errors.InputLimitError:
        raise  # it names the file, the limit and the setting that raises it
    except (OSError, ValueError, errors.ConfigError) as e:
        raise errors.PermanentError(f"platform policy data {path} is unreadable: {e}") from e
    inner = doc.get(ROOT) if isinstance(doc, dict) else None
    return dict(inner) if isinstance(inner, dict) else {}


def update(path: Path, data: Mapping[str, Any],
           limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> dict[str, Any]:
    """Merge one update into the file (atomically: a crash leaves the old or the new
    file, never half of one) and return the merged parameters.

    ``limits`` must be the ones the policy engine reads the file with (``wiring``): the
    file as it would be written is checked against them first, and refused with an
    InputLimitError, since an update the engine cannot load would leave no policy set at
    its next load. The file is one level deeper than the update (under ``platform``) and
    grows with every update that adds keys."""
    try:
        size = len(json.dumps(data))
    except (TypeError, ValueError) as e:
        raise errors.PermanentError(f"policy data is not JSON: {e}") from e
    if size > MAX_BYTES:
        raise errors.PermanentError(
            f"policy data update is {size} bytes; at most {MAX_BYTES} are accepted")
    merged = mappings.deep_merge(load(path, limits), data)
    text = json.dumps({ROOT: merged}, sort_keys=True)
    opa.parse_data(text, path, limits)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".platform-data-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return merged
