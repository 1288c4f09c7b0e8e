"""A command's output as a terminal shows it, with the time each piece arrived: an asciicast
(version 2: a header line, then one ``[seconds, "o", text]`` line per piece)."""

import codecs
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cast:
    """What a terminal ``columns`` wide showed, piece by piece."""

    columns: int
    rows: int
    output: list[tuple[float, str]] = field(default_factory=list)

    def write(self, path: Path) -> None:
        header = {"version": 2, "width": self.columns, "height": self.rows}
        lines = [json.dumps(header), *(json.dumps([round(t, 3), "o", text]) for t, text in self.output)]
        path.write_text("\n".join(lines) + "\n")


def capture(command: list[str], env: dict[str, str], columns: int, rows: int) -> Cast:
    """Run ``command`` on a pseudo-terminal of ``columns`` by ``rows`` and record what it writes
    (stdout and stderr) until it exits; raise if it fails."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    cast = Cast(columns, rows)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(main, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not data:
                break
            cast.output.append((time.monotonic() - started, decoder.decode(data)))
    finally:
        os.close(main)
        code = process.wait(timeout=30)
    if code != 0:
        text = "".join(piece for _, piece in cast.output)
        raise RuntimeError(f"{command[:3]} exited with {code}:\n{text[-2000:]}")
    return cast
