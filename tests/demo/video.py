"""Debian's Chromium recording a page to video, and ffmpeg turning the video into a GIF and a WebM."""

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import playwright
from playwright.sync_api import BrowserContext, ViewportSize, sync_playwright

from tests.support.browser import CHROMIUM, FLAGS

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def _ffmpeg_for_playwright(root: Path) -> None:
    """Playwright encodes its videos with an ffmpeg of its own, looked up under
    PLAYWRIGHT_BROWSERS_PATH; give it Debian's there instead of downloading one."""
    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(
        b["revision"] for b in json.loads(browsers.read_text())["browsers"] if b["name"] == "ffmpeg"
    )
    folder = root / f"ffmpeg-{revision}"
    folder.mkdir(parents=True)
    (folder / "ffmpeg-linux").symlink_to(FFMPEG)


@contextmanager
def recording(video_dir: Path, width: int, height: int) -> Iterator[BrowserContext]:
    """A browser context whose pages are recorded to ``video_dir``, ``width`` by ``height`` pixels
    (each video is complete once the context is closed, at the end of the ``with``)."""
    for tool in (CHROMIUM, FFMPEG):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: run `make install-browser install-ffmpeg`")
    with tempfile.TemporaryDirectory(prefix="reasoner-demo-browser-") as tmp:
        _ffmpeg_for_playwright(Path(tmp))
        # The driver reads PLAYWRIGHT_BROWSERS_PATH when it starts.
        with patch.dict(os.environ, PLAYWRIGHT_BROWSERS_PATH=tmp), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            size = ViewportSize(width=width, height=height)
            context = browser.new_context(
                viewport=size, record_video_dir=str(video_dir), record_video_size=size
            )
            try:
                yield context
            finally:
                context.close()
                browser.close()


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def write_gif(video: Path, gif: Path, *, start_s: float, fps: int, width: int) -> None:
    """The video from ``start_s`` as a GIF: ``fps`` frames a second, ``width`` pixels wide, one
    palette made for the whole clip."""
    scale = f"fps={fps},scale={width}:-1:flags=lanczos"
    palette = "split[a][b];[a]palettegen=max_colors=128:stats_mode=diff[p];[b][p]paletteuse=dither=none"
    _ffmpeg("-ss", f"{start_s:.2f}", "-i", str(video), "-vf", f"{scale},{palette}", str(gif))


def write_webm(video: Path, webm: Path, *, start_s: float) -> None:
    """The video from ``start_s`` as VP9 WebM, sized for a repository."""
    _ffmpeg(
        "-ss", f"{start_s:.2f}", "-i", str(video), "-c:v", "libvpx-vp9", "-crf", "36", "-b:v", "0",
        "-row-mt", "1", "-an", str(webm),
    )  # fmt: skip
