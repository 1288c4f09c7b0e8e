"""The web page in a real browser: headless Chromium driven by Playwright."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.conftest import Service
from tests.stub_backend import StubBackend

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `make install-browser` (Debian package chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield context
        context.close()


def ask(page: Page, url: str, question: str) -> None:
    page.goto(url)
    page.fill("#question", question)
    page.click("#submit")


def test_question_in_live_cards_answer_and_tokens_out(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.latency_s = 1.0
    stub.options.subtasks = 3
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#plan li")).to_have_count(3)
    expect(page.locator(".card.running").first).to_be_visible()
    expect(page.locator(".card.done")).to_have_count(3, timeout=20_000)
    expect(page.locator("#critique li").first).to_be_visible()
    expect(page.locator("#answer")).to_have_text("The final answer is 42.", timeout=20_000)
    total = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    expect(page.locator("#u-total")).to_have_text(str(total))
    expect(page.locator("#usage-nodes tbody tr")).to_have_count(4)
    assert "#run=run_" in page.url

    page.reload()
    expect(page.locator("#answer")).to_have_text("The final answer is 42.", timeout=20_000)
    expect(page.locator(".card.done")).to_have_count(3)
    expect(page.locator("#u-total")).to_have_text(str(total))


def test_errors_are_shown_plainly(browser: BrowserContext, service: Service) -> None:
    page = browser.new_page()
    page.goto(f"{service.url}/#run=run_doesnotexist")
    expect(page.locator("#error")).to_contain_text("no run with id")
