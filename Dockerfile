# syntax=docker/dockerfile:1
# reasoner: the API image. It also carries llama-cpp-python and the SmolLM2-135M GGUF, so the
# same image serves as the `llm` service in docker-compose.yml.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# A portable x86-64 build of llama.cpp (see the Makefile).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_OPENMP=OFF"
COPY pyproject.toml requirements.lock README.md ./
COPY graph ./graph
COPY api ./api
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir -c requirements.lock ".[local]"

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 reasoner \
    && mkdir -p /data \
    && chown reasoner:reasoner /data
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
USER reasoner
WORKDIR /home/reasoner
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]
CMD ["reasoner", "serve"]
