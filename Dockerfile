# One image for every holmes process kind; the command picks it (holmes api / worker / simulate).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# torch from PyPI bundles CUDA, so the same image runs a worker on a GPU host (docker compose with a GPU
# reservation) or on CPU.
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY holmes holmes
COPY ingest ingest
COPY features features
COPY models models
COPY ensemble ensemble
COPY api api
COPY simulator simulator
RUN pip install . && useradd --create-home holmes
USER holmes
ENV HOLMES_STATE_DIR=/home/holmes/state
ENTRYPOINT ["holmes"]
