"""Record the web page answering the demo question from start to finish: docs/demo.gif and
docs/demo.webm. ``python -m tests.demo.record_page`` (``make demo``)."""

import logging
import re
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.demo.scene import ANSWER, DOCS, QUESTION, served_demo
from tests.demo.video import recording, write_gif, write_webm

WIDTH, HEIGHT = 1000, 760
GIF_WIDTH, GIF_FPS = 800, 10

SCROLL_TO = """(selector) => {
  const top = selector ? document.querySelector(selector).offsetTop - 12 : document.body.scrollHeight;
  window.scrollTo({ top, behavior: "smooth" });
}"""

log = logging.getLogger("demo")


def pause(page: Page, seconds: float) -> None:
    page.wait_for_timeout(seconds * 1000)


def ask(page: Page) -> None:
    """Type the question, ask it, and follow the run until its answer and tokens are shown."""
    pause(page, 0.8)
    page.locator("#question").press_sequentially(QUESTION, delay=25)
    pause(page, 0.6)
    page.click("#submit")
    expect(page.locator("#critique li").first).to_be_visible(timeout=30_000)
    page.evaluate(SCROLL_TO, "#plan-section")
    expect(page.locator("#answer-section")).to_be_visible(timeout=30_000)
    page.evaluate(SCROLL_TO, "#critique-section")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Done in"), timeout=30_000)
    expect(page.locator("#answer")).to_have_text(ANSWER)
    pause(page, 1.0)
    page.evaluate(SCROLL_TO, None)
    pause(page, 3.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="reasoner-demo-video-") as tmp:
        videos = Path(tmp)
        with served_demo() as served, recording(videos, WIDTH, HEIGHT) as context:
            page = context.new_page()
            opened = time.monotonic()
            page.goto(served.url)
            start_s = time.monotonic() - opened  # the blank page before the first paint is left out
            log.info("recording the page at %s", served.url)
            ask(page)
        (video,) = videos.glob("*.webm")
        write_gif(video, DOCS / "demo.gif", start_s=start_s, fps=GIF_FPS, width=GIF_WIDTH)
        write_webm(video, DOCS / "demo.webm", start_s=start_s)
    log.info("wrote %s and %s", DOCS / "demo.gif", DOCS / "demo.webm")


if __name__ == "__main__":
    main()
