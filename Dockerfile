# One image for every holmes process kind; the command picks it (holmes api / worker / simulate / broker).
# Configuration comes only from HOLMES_* environment variables at run time; no secret is baked in.
#
#   docker build -t holmes:latest .                                           # CPU torch (the default)
#   docker build -t holmes:gpu --build-arg TORCH_INDEX_URL=https://pypi.org/simple .   # CUDA torch (GPU worker)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch is pinned as in pyproject.toml and the Makefile (2.13.0). The default index is PyTorch's CPU-only one
# (the "+cpu" build, as the Makefile installs on development machines): PyPI's Linux wheel would pull GBs of
# CUDA libraries into every container. A GPU image takes the CUDA build instead: PyPI's default Linux x86_64
# wheel, or https://download.pytorch.org/whl/cuXXX matching the host's driver.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# An unprivileged user with a fixed uid, so volume ownership and tmpfs options are predictable.
RUN groupadd --system --gid 10001 holmes \
    && useradd --system --uid 10001 --gid holmes --create-home --home-dir /home/holmes holmes

WORKDIR /app
COPY pyproject.toml README.md ./
COPY holmes holmes
COPY ingest ingest
COPY features features
COPY models models
COPY ensemble ensemble
COPY api api
COPY simulator simulator
# The source stays root-owned and read-only to the service user; torch must still be the pinned one afterwards.
RUN pip install . \
    && python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_VERSION}' else 1)"

USER 10001:10001
# State (SQLite when no database URL is given, uploaded model artifacts, the worker's stats) lives here; the
# folder exists in the image so that a named volume mounted on it is owned by the service user.
RUN mkdir -p /home/holmes/state
ENV HOLMES_STATE_DIR=/home/holmes/state HOLMES_DATA_DIR=/data
EXPOSE 8000
# Health checks are per role (docker-compose.yml): the API answers /readyz, the worker keeps a ready file and a
# fresh stats file. They need only the Python in this image (no curl).
ENTRYPOINT ["holmes"]
CMD ["--help"]
