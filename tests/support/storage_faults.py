"""Storage faults to start and clear while a service runs on DATA_DIR: the disk fills up (a
8 MB tmpfs, ``TmpfsFullDisk``, or a store whose writes fail as a full disk makes them fail,
``SimulatedFullDisk``), or another process holds the database locked (``LockedDatabase``)."""

import errno
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

import api.storage.factory
from api.storage.sqlite import SQLiteRunStore
from api.storage.sqlite_connections import BUSY_TIMEOUT_MS

T = TypeVar("T")

LOCK_HOLD_S = BUSY_TIMEOUT_MS / 1000 + 3
"""Longer than the busy timeout, so writes blocked by the lock fail and are retried."""


def disk_usage(data_dir: Path) -> str:
    files = ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in sorted(data_dir.iterdir()))
    return f"{os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize // 1024} KB free; {files}"


class StorageFault(Protocol):
    def start(self) -> None:
        """Make writes fail from now on."""
        ...

    def holding(self) -> bool:
        """The fault is still on."""
        ...

    def clear(self) -> None:
        """End the fault (idempotent)."""
        ...


# A full disk ------------------------------------------------------------------------------------


class TmpfsFullDisk:
    """DATA_DIR is a 8 MB tmpfs; the fault is a filler file that takes all the space left."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.filler = data_dir / "filler"

    def start(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        assert os.statvfs(self.data_dir).f_bavail == 0

    def holding(self) -> bool:
        return self.filler.exists()

    def clear(self) -> None:
        self.filler.unlink(missing_ok=True)


class SimulatedFullDisk:
    """The app's store fails every write as a full disk makes SQLite fail it."""

    def __init__(self, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data_dir = data_dir
        full = self._full = threading.Event()

        class FullDiskStore(SQLiteRunStore):
            def _atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
                if full.is_set():
                    raise sqlite3.OperationalError("database or disk is full")
                return super()._atomically(work)

        monkeypatch.setattr(api.storage.factory, "SQLiteRunStore", FullDiskStore)

    def start(self) -> None:
        self._full.set()

    def holding(self) -> bool:
        return self._full.is_set()

    def clear(self) -> None:
        self._full.clear()


# A locked database ------------------------------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
db.close()
"""


class LockedDatabase:
    """Another process holds the database in ``BEGIN EXCLUSIVE`` for ``hold_s``, then commits."""

    def __init__(self, path: Path, hold_s: float) -> None:
        self.path = path
        self.hold_s = hold_s
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(self.path), str(self.hold_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def holding(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def clear(self) -> None:
        """Wait for the lock holder to commit and exit."""
        if self.process is not None:
            assert self.process.wait(timeout=self.hold_s + 10) == 0

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
