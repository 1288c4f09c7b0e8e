"""A command's output as a terminal shows it, with the time each piece arrived (what an asciicast
holds)."""

import codecs
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

Output = list[tuple[float, str]]
"""Each piece of text with its time, in seconds from the start of the command."""


def capture(command: list[str], env: dict[str, str], columns: int, rows: int) -> Output:
    """Run ``command`` on a pseudo-terminal of ``columns`` by ``rows`` and record what it writes
    (stdout and stderr) until it exits; raise if it fails."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    output: Output = []
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
            output.append((time.monotonic() - started, decoder.decode(data)))
    finally:
        os.close(main)
        code = process.wait(timeout=30)
    if code != 0:
        text = "".join(piece for _, piece in output)
        raise RuntimeError(f"{command[:3]} exited with {code}:\n{text[-2000:]}")
    return output
