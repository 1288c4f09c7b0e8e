"""``reasoner serve`` in a process of its own, against the scripted backend, so that tests can
signal it, kill it and start another on the same DATA_DIR."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from api.backend.embedded import free_port
from tests.stub_backend import MODEL_ENV, StubBackend

ROOT = Path(__file__).resolve().parents[2]


class Served:
    def __init__(self, stub: StubBackend, data_dir: Path, *, wait: bool = True, **env: object) -> None:
        """``env``: settings by name (``grace_s=…`` is SHUTDOWN_GRACE_S, ``lease_s=…`` LEASE_S).
        Without ``wait``, call ``ready()`` before using it."""
        self.port = free_port()
        self.data_dir = data_dir
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LLM_", "OPENAI_")) and k not in MODEL_ENV
        }
        names = {"grace_s": "SHUTDOWN_GRACE_S"}
        settings = {names.get(k, k.upper()): str(v) for k, v in env.items()}
        full_env = {
            **inherited,
            "LLM_BASE_URL": stub.base_url,
            **MODEL_ENV,
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "warning",
            **settings,
        }
        self.log = data_dir.parent / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        if wait:
            self.ready()

    def ready(self) -> "Served":
        """Wait until it answers /healthz."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"the service did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no cleanup."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    stop = kill


def integrity(data_dir: Path) -> str:
    """SQLite's own check of the store (runs, events, ledger and checkpoints)."""
    db = sqlite3.connect(data_dir / "reasoner.db")
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()
