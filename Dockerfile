# reasoner: the API image. It also carries llama-cpp-python and the SmolLM2-135M GGUF, so the
# same image serves as the `llm` service in docker-compose.yml.
#
# BASE defaults to Debian's official image (pulled from Docker Hub); any Debian bookworm image
# tagged with that name works, for example one made with debootstrap where the Hub is out of
# reach. Behind a TLS-intercepting proxy, put its CA certificates (*.crt) in
# deploy/ca-certificates/ (ignored by git): the build stage trusts them; the final image does not
# carry them. BuildKit (DOCKER_BUILDKIT=1) keeps pip's cache between builds, so a rebuild does
# not compile llama.cpp again.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv build-essential cmake ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
# A portable x86-64 build of llama.cpp (see the Makefile).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_OPENMP=OFF"
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY graph ./graph
COPY api ./api
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install -c requirements.lock ".[local]"

FROM ${BASE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 reasoner \
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
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]
CMD ["reasoner", "serve"]
