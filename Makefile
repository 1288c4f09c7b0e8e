# reasoner: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

# llama-cpp-python compiles llama.cpp (~6-10 min on 2 cores). A portable x86-64 build
# (AVX2, no AVX-512/AMX, which crash in some VMs); pip caches the wheel, so later
# installs, fresh venvs included, reuse it instead of rebuilding.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_OPENMP=OFF

.PHONY: install install-browser install-ffmpeg install-docker install-langgraph langgraph-dev run test test-fast test-docker lint format docs lock clean bench eval stub demo

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[local,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
install-browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The demo recordings are encoded by Debian's ffmpeg (Playwright's own ffmpeg download is not used).
install-ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg; }

# The engine test-docker runs on: Debian's docker.io (dockerd, and a docker client with BuildKit),
# docker-compose (compose v1) and debootstrap (the base image, where Docker Hub is out of reach).
install-docker:
	@command -v dockerd >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 \
		&& command -v debootstrap >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq docker.io docker-compose debootstrap; }

run: install
	$(BIN)/reasoner serve

# `langgraph dev` (LangGraph Studio's local server, see langgraph.json) in a venv of its own:
# langgraph-api needs jsonschema-rs<0.45 and protobuf<7, the main venv has newer ones (schemathesis,
# OpenTelemetry); every other package is held to requirements.lock. No `local` extra: it needs
# LLM_BASE_URL.
LG_VENV  := .venv-langgraph
LG_STAMP := $(LG_VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
LANGGRAPH_PORT ?= 2024

install-langgraph: $(LG_STAMP)

$(LG_STAMP): pyproject.toml requirements.lock
	@test -x $(LG_VENV)/bin/python || $(PYTHON) -m venv $(LG_VENV)
	$(LG_VENV)/bin/python -m pip install --quiet --upgrade pip
	grep -v -E '^(jsonschema[-_]rs|protobuf)==' requirements.lock > $(LG_VENV)/constraints.txt
	$(LG_VENV)/bin/python -m pip install --quiet -c $(LG_VENV)/constraints.txt -e '.[langgraph-dev]'
	@rm -f $(LG_VENV)/.installed-*
	@touch $@

# The graph on 127.0.0.1:$(LANGGRAPH_PORT) for LangGraph Studio, against LLM_BASE_URL: no browser,
# no usage analytics, no version check, no LangSmith tracing unless LANGSMITH_TRACING=true.
langgraph-dev: install-langgraph
	LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true LANGSMITH_TRACING=$${LANGSMITH_TRACING:-false} \
		$(LG_VENV)/bin/langgraph dev --no-browser --port $(LANGGRAPH_PORT) $(LANGGRAPH_ARGS)

test: install install-browser install-langgraph
	$(BIN)/python -m pytest

test-fast: install install-langgraph
	$(BIN)/python -m pytest -m "not e2e and not docker"

# The image and the compose stack on a real engine (docs/operations.md#docker). A daemon that
# answers is used; otherwise one is started (root) with its images and build cache in
# DOCKER_DATA_ROOT (/var/tmp/reasoner-docker), and stopped after, with the firewall rules it made.
test-docker: install install-docker
	$(BIN)/python -m pytest -m docker tests/docker

# Benchmarks against the scripted backend (< 10 min); tables and plots in tests/bench/results/.
bench: install install-langgraph
	$(BIN)/python -m tests.bench.bench

# Answer quality and tokens, reasoner vs one direct call. Embedded model unless LLM_BASE_URL is
# set; EVAL_ARGS passes options (see `python -m tests.bench.eval --help`).
eval: install
	$(BIN)/python -m tests.bench.eval $(EVAL_ARGS)

# The scripted OpenAI-compatible backend on its own: `make stub STUB_ARGS="--latency 1"`.
stub: install
	$(BIN)/python -m tests.stub_backend $(STUB_ARGS)

# The recordings in docs/: the page answering a question (demo.gif, demo.webm) and `reasoner ask`
# in a terminal (demo-ask.gif), both against the scripted backend (about 2 minutes).
demo: install install-browser install-ffmpeg
	$(BIN)/python -m tests.demo.record_page
	$(BIN)/python -m tests.demo.record_terminal

lint: install
	$(BIN)/ruff check graph api tests
	$(BIN)/ruff format --check graph api tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format graph api tests
	$(BIN)/ruff check --fix graph api tests

# The configuration table in docs/configuration.md, written from api/settings.py.
docs: install
	$(BIN)/python -m tests.support.settings_doc --write

# Re-pin every dependency to what is installed now.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV) $(LG_VENV) .langgraph_api .pytest_cache .mypy_cache .ruff_cache
