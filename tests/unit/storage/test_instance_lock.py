"""Ownership of runs by instance lock files: a process is gone once the kernel has dropped its
lock, however it exited; nothing is inferred from a PID."""

import subprocess
import sys
from pathlib import Path

from api.storage.instance_lock import InstanceLock

HOLDER = """
import sys, time
from pathlib import Path
from api.storage.instance_lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print(lock.name, flush=True)
time.sleep(60)
"""


def test_an_instance_is_gone_once_its_process_is(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        name = holder.stdout.readline().strip()
        me = InstanceLock(tmp_path)
        me.acquire()
        assert not me.gone(name), "a live process holds its lock"
        assert not me.gone(me.name), "this process is not gone to itself"
        holder.kill()  # kill -9: no cleanup, the lock file stays behind
        holder.wait(timeout=10)
        assert (tmp_path / f"{name}.lock").exists()
        assert me.gone(name)
        assert not (tmp_path / f"{name}.lock").exists(), "the dead instance's file is cleared"
        assert not me.gone("host:1234"), "an owner of the old kind is known gone only by its lease"
        me.release()
        assert not (tmp_path / f"{me.name}.lock").exists()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
