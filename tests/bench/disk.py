"""Disk per run: what `reasoner serve` writes to its SQLite files while 8 clients ask questions of 4
sub-questions against the zero-latency stub, counted by strace on every thread of the serving
process (bytes passed to write calls on the database, its write-ahead log and journal, and
fdatasync/fsync calls), and the bytes a finished run leaves in the file (pages in use).

    .venv/bin/python -m tests.bench.disk [--runs 80] [--clients 8] [--env NAME=VALUE ...]
"""

import argparse
import asyncio
import re
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.bench.harness import drive, service, stub

SYSCALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")
"""``pid  name(fd</path>, ...) = result``, as ``strace -f -y`` prints a finished call."""
WRITES = frozenset({"write", "pwrite64", "writev", "pwritev", "pwritev2"})
SYNCS = frozenset({"fdatasync", "fsync"})


def tally(trace: str, data_dir: str) -> dict[str, int]:
    """Bytes written to, and syncs of, files under ``data_dir``, by file suffix."""
    counts: dict[str, int] = {}
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if match is None or not match[3].startswith(data_dir):
            continue
        name, path, result = match[1], match[3], int(match[4])
        suffix = path.rsplit(".", 1)[-1]
        if name in WRITES and result > 0:
            counts[f"bytes_{suffix}"] = counts.get(f"bytes_{suffix}", 0) + result
        elif name in SYNCS:
            counts["syncs"] = counts.get("syncs", 0) + 1
    return counts


def pages_in_use(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count, free, size = (
            connection.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "freelist_count", "page_size")
        )
    return int((count - free) * size)


def measure(runs: int, clients: int, env: Mapping[str, str]) -> dict[str, Any]:
    with (
        stub(0.0) as backend,
        tempfile.TemporaryDirectory(prefix="reasoner-disk-") as data,
        service(backend, data_dir=data, **env) as (url, proc),
    ):
        asyncio.run(drive(url, "/v1/reason", clients, 2 * clients))  # warm-up
        time.sleep(1)  # the last runs' final state is stored
        kept0 = pages_in_use(Path(data) / "reasoner.db")
        threads = [f"-p{tid.name}" for tid in Path(f"/proc/{proc.pid}/task").iterdir()]
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            tracer = subprocess.Popen(
                ["strace", "-f", "-y", "-qq", "-s0", "-e", "signal=none", "-o", out.name,
                 "-e", f"trace={','.join(sorted(WRITES | SYNCS))}", *threads],
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached
            _, wall = asyncio.run(drive(url, "/v1/reason", clients, runs))
            time.sleep(1)  # the last runs' final state is stored
            tracer.terminate()
            tracer.wait(timeout=30)
            counts = tally(Path(out.name).read_text(), data)
        kept = pages_in_use(Path(data) / "reasoner.db") - kept0
    written = sum(v for k, v in counts.items() if k.startswith("bytes_"))
    return {
        "runs": runs, "clients": clients, "runs_per_s": runs / wall,
        "written_kb_per_run": written / runs / 1024,
        "syncs_per_run": counts.get("syncs", 0) / runs,
        "kept_kb_per_run": kept / runs / 1024,
        "by_file_kb_per_run": {k[6:]: v / runs / 1024 for k, v in counts.items() if k.startswith("bytes_")},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=80)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--env", action="append", default=[], help="a setting for the service, NAME=VALUE")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    result = measure(args.runs, args.clients, env)
    print(
        f"{result['written_kb_per_run']:.1f} KB written, {result['syncs_per_run']:.2f} syncs and "
        f"{result['kept_kb_per_run']:.1f} KB kept per run ({args.runs} runs, {args.clients} clients); "
        "written by file: "
        + ", ".join(f"{name} {kb:.1f} KB" for name, kb in sorted(result["by_file_kb_per_run"].items()))
    )


if __name__ == "__main__":
    main()
