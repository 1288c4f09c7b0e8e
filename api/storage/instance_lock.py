"""Ownership of runs in the embedded store: every process that opens it is an instance with a
random id, holding a lock file in DATA_DIR for as long as it lives. The kernel drops the lock
when the process exits, however it exits: no PID is trusted."""

import contextlib
import fcntl
import os
import re
import uuid
from pathlib import Path

INSTANCE_NAME = re.compile(r"[0-9a-f]{32}")


class InstanceLock:
    """This process's lock file in ``directory``, held until it exits or closes the store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = uuid.uuid4().hex
        self._fd: int | None = None

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(self.name), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(self.name))
            os.close(self._fd)
            self._fd = None

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.lock"

    def gone(self, owner: str | None) -> bool:
        """Whether the instance ``owner`` has exited: its lock is free (or was never there).
        An owner that is no instance name (a database of an earlier version) is only known gone
        once its lease is."""
        if owner is None or not INSTANCE_NAME.fullmatch(owner):
            return False
        try:
            fd = os.open(self._path(owner), os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # also drops the lock, if it was taken
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(owner))
        return True
