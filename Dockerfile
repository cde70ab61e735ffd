# The dakr reconciler image, the one the Helm chart in manifests/ runs
# (ghcr.io/devzero-inc/dakr-reconciler). Build it with `make image`, which runs
#   docker build --build-arg VERSION=<pyproject version> -t dakr-reconciler:<version> .
#
# Two stages on the same pinned Python. The builder makes a virtual environment from the
# lock files only: requirements.lock (the runtime dependencies, every one pinned), the
# embedded OPA engine from requirements-opa.lock, and the project itself as a wheel (not
# editable, no dependencies of its own). The runtime stage adds git for GitOps mode, the
# virtual environment, the policy library, and runs as a non-root numeric user.
#
# tests/integration/image/test_image.py checks this file and replays the builder's steps
# in a fresh virtual environment; keep the builder's steps plain RUN shell commands.

FROM python:3.11.14-slim-bookworm AS builder

ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ENV PATH="/opt/venv/bin:${PATH}"
WORKDIR /src

RUN python -m venv /opt/venv

# Dependencies first, so that a change to the code alone reuses this layer. The bytecode
# is compiled once, at the end (--no-compile here).
COPY requirements.lock requirements-opa.lock ./
# The OPA engine's metadata asks for Python 3.14; its ctypes wrapper runs on 3.11.
RUN pip install --no-cache-dir --no-compile -r requirements.lock \
    && pip install --no-cache-dir --no-compile --ignore-requires-python --no-deps \
       -r requirements-opa.lock

COPY requirements-build.lock pyproject.toml README.md ./
COPY reconciler/ reconciler/
# The project as a wheel, without dependencies (they all came from the lock files above),
# built by the pinned setuptools of requirements-build.lock (no build isolation, which
# would fetch the newest one). setuptools is not needed at run time: it goes. The bytecode
# is compiled here, with hashes that do not depend on file times, because the root
# filesystem is read-only at run time (PYTHONDONTWRITEBYTECODE below).
RUN pip install --no-cache-dir --no-compile -r requirements-build.lock \
    && pip install --no-cache-dir --no-compile --no-build-isolation --no-deps . \
    && pip uninstall --yes setuptools \
    && python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv


FROM python:3.11.14-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dakr-reconciler" \
      org.opencontainers.image.description="Kubernetes write operator: policy-gated cost recommendations applied as GitOps pull requests or direct API changes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/devzero-inc/dakr-reconciler" \
      org.opencontainers.image.licenses="Apache-2.0"

# git: GitOps mode clones, commits and pushes (HTTPS; ca-certificates for the forges).
# The user gets a passwd entry so that git and Python can look it up; its home is where
# the chart mounts a writable emptyDir.
# DL3008 asks for apt version pins: Debian replaces a package's version in bookworm's
# archive with each security update, so an exact pin would break the build at the next git
# fix; the base image tag pins the distribution release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 dakr \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/dakr \
       --no-create-home --shell /usr/sbin/nologin dakr \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/dakr

COPY --from=builder /opt/venv /opt/venv
COPY policies/ /opt/dakr/policies/

# DAKR_POLICY_DIR is the default --policies of `reconciler run` (the embedded engine's
# policy set); the chart points it at its policy ConfigMap when it mounts one.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAKR_POLICY_DIR=/opt/dakr/policies \
    HOME=/var/lib/dakr

WORKDIR /var/lib/dakr
USER 65532:65532

ENTRYPOINT ["reconciler"]
CMD ["run"]
