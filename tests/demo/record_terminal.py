"""Record ``reasoner ask`` answering the demo question in a terminal, with its token table:
docs/demo-ask.gif. The command runs on a pseudo-terminal against the scripted backend; its
timed output is replayed in a plain HTML terminal that Chromium records.
``python -m tests.demo.record_terminal`` (``make demo``)."""

import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

from tests.demo.scene import DOCS, QUESTION, scripted_backend, service_env
from tests.demo.terminal import Output, capture
from tests.demo.video import recording, write_gif

COLUMNS, ROWS = 100, 32
WIDTH, HEIGHT = 900, 740
LONGEST_PAUSE_S = 1.0
"""Longer waits (the command starting up) are shortened to this in the replay."""
PLAYER = Path(__file__).with_name("terminal.html")

log = logging.getLogger("demo")


def replay_times(output: Output) -> Output:
    """The output with every pause longer than ``LONGEST_PAUSE_S`` cut to it."""
    replayed: Output = []
    now = previous = 0.0
    for at, text in output:
        now += min(at - previous, LONGEST_PAUSE_S)
        previous = at
        replayed.append((round(now, 3), text))
    return replayed


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = ["reasoner", "ask", QUESTION]
    with scripted_backend() as stub, tempfile.TemporaryDirectory(prefix="reasoner-demo-") as tmp:
        log.info("running %s against the scripted backend", shlex.join(command))
        env = service_env(stub, Path(tmp) / "data")
        output = capture([sys.executable, "-m", "api.cli", *command[1:]], env, COLUMNS, ROWS)
        with recording(Path(tmp), WIDTH, HEIGHT) as context:
            page = context.new_page()
            opened = time.monotonic()
            page.goto(PLAYER.as_uri())
            start_s = time.monotonic() - opened
            show = {
                "title": "reasoner ask · scripted backend",
                "command": shlex.join(command),
                "output": replay_times(output),
                "typeMs": 18,
                "holdMs": 3000,
            }
            page.evaluate("(show) => play(show)", show)
        (video,) = Path(tmp).glob("*.webm")
        write_gif(video, DOCS / "demo-ask.gif", start_s=start_s, fps=10, width=WIDTH)
    log.info("wrote %s", DOCS / "demo-ask.gif")


if __name__ == "__main__":
    main()
