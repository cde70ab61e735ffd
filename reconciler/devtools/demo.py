"""The demo: the whole flow on the bundled example, with nothing but local files.

Seeds a Git repository with the Online Boutique manifests behind a bare ``origin``, runs the
example recommendations through the embedded OPA engine and the GitOps writer, and leaves
everything where a user can look at it. Reusing ``--workdir`` reuses the origin and the
store, which is how a second run proves it makes no second commit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import wiring
from reconciler.adapters import files, git
from reconciler.config import settings
from reconciler.devtools import platform
from reconciler.domain import errors, validation
from reconciler.flow import batch as flow
from reconciler.runtime import jobs
from reconciler.stream import client
from reconciler.stream import state as stream_state

MANIFEST_DIR = "kubernetes-manifests"


def seed_origin(workdir: Path, manifests: Path) -> Path:
    """A bare origin whose ``main`` holds the manifests; left alone if it already exists."""
    origin = workdir / "origin.git"
    if (origin / "HEAD").exists():
        return origin
    if not manifests.is_dir():
        raise errors.ConfigError(f"manifest directory {manifests} does not exist")
    seed = workdir / "seed"
    shutil.rmtree(seed, ignore_errors=True)
    shutil.copytree(manifests, seed / MANIFEST_DIR)
    git.seed_bare(origin, seed, "Online Boutique manifests",
                  author=(git.AUTHOR_NAME, "demo@localhost"))
    shutil.rmtree(seed)
    return origin


def receive_over_stream(docs: list[Any], cfg: settings.Settings,
                        stream_state_path: Path) -> tuple[list[Any], str]:
    """Serve ``docs`` from the reference platform on loopback and ingest them over gRPC.

    What the batch then works on is what the stream delivered: the stored recommendations
    (acked only once durably stored) plus, for the record, the documents the client nacked
    (they fail validation again in the batch and are reported with their fields).
    """
    feed = platform.build_feed(docs)
    server = platform.PlatformServer(feed).start()
    st = wiring.open_store(cfg.store.uri, cfg.kube)
    state = stream_state.StreamState(stream_state_path)
    try:
        conn = client.ClientConfig(target=f"127.0.0.1:{server.port}", cluster_id="demo",
                                   backoff_initial=0.2, backoff_max=2.0)
        stats = client.StreamClient(conn, st, state).run(until_idle=1.0)
        acked = set(server.state.acked_ids())
        nacked = {n["id"] for n in server.state.nacks()}
        received: list[Any] = []
        for d in docs:
            rid = validation.raw_id(d)
            if rid in nacked:
                received.append(d)
                continue
            kind = d.get("kind") if isinstance(d, dict) else None
            rec = st.get(str(kind), rid) if rid in acked else None
            if rec is not None:
                received.append(rec.to_document())
    finally:
        state.close()
        st.close()
        server.stop(grace=0.5)
    summary = (f"received over gRPC from the reference platform on 127.0.0.1:{server.port}: "
               f"{stats.stored} stored and acked, {stats.duplicates} duplicates, "
               f"{stats.nacked} nacked")
    return received, summary


@dataclass
class Demo:
    """What one demo run did, for the command to print."""

    workdir: Path
    origin: Path
    pull_request_body: Path
    received: int        # recommendations the batch worked on
    via: str             # how they arrived (the stream's summary), or empty for a file
    batch: flow.Batch


def run(workdir: Path | None, manifests: Path, recommendations: Path, source: str,
        policy: settings.PolicySettings, now: str = "") -> Demo:
    """Seed the repository (once per workdir), take the recommendations in (over the
    reference platform's stream, or from the file), and run one GitOps batch."""
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="dakr-demo-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    origin = seed_origin(workdir, manifests)
    cfg = settings.Settings(
        policy=policy,
        git=settings.GitSettings(repo=str(origin), base="main", clone_dir=workdir / "clone"),
        store=settings.StoreSettings(uri=f"sqlite:{workdir / 'state' / 'reconciler.db'}"),
        forge=settings.ForgeSettings(kind="local", state_dir=workdir),
        state_dir=workdir / "state", now=now,
    )
    docs = files.load_documents(recommendations)
    via = ""
    if source == "stream":
        # Each demo run serves a new platform stream: its cursor starts at zero, so a
        # rerun redelivers everything, which the store recognises as duplicates.
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            docs, via = receive_over_stream(docs, cfg, Path(tmp) / "stream.db")
    with wiring.open_parts(cfg) as parts:
        batch = jobs.gitops_batch(parts, cfg, docs)
    return Demo(workdir=workdir, origin=origin, pull_request_body=workdir / "pull-request.md",
                received=len(docs), via=via, batch=batch)


def diff_stat(origin: Path, branch: str) -> str:
    """What the demo's branch changes, as ``git diff --stat`` prints it."""
    return subprocess.run(
        ["git", "--git-dir", str(origin), "diff", "--stat", "main", branch],
        capture_output=True, text=True, check=False).stdout.rstrip()
