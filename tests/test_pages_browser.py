"""The build pages in a real headless Chromium: what a person sees, not just what the server sends.

HTTP tests prove the content is there; only a browser shows whether it is visible and fits a laptop
screen. The failed build here carries deliberately long, unbreakable text (a branch name, a test id,
a message, a log line) because that is what pushes a page wider than the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from redis import Redis

from schemas.public import Redactor
from schemas.record import BuildRecord
from schemas.record import TestCaseFailure as CaseFailure  # aliased: pytest would collect `Test*`
from schemas.settings import Settings
from store.builds import BuildStore
from store.live import LiveLogs
from store.logstore import DirLogStore
from testkit.servers import Server
from tests.helpers import ROOT
from tests.test_pages import FAILED_TEST, UI_TOKEN, add_build, build_site, request_for
from tests.test_webhooks import other_db
from web.access import Access
from web.pages import make_router

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = ROOT / "tests" / "artifacts" / "build-page.png"
LONG_TEST = "tests.integration.test_checkout_flow.CheckoutFlowWithSavedPaymentMethodsAndCoupons." + "x" * 90
LONG_MESSAGE = "AssertionError: " + "0123456789abcdef" * 12 + "\n  expected: <total>42.00</total>"


@dataclass
class Site:
    url: str
    failed: BuildRecord
    running: BuildRecord  # its tests "run": the test follows their live log by hand
    live: LiveLogs


def lengthen(record: BuildRecord) -> None:
    """Text a real failure produces and a page must wrap: long ids, messages and log lines."""
    assert record.tests is not None
    record.reason = "tests failed with exit code 1; " + "the test container wrote " + "a" * 150
    record.tests.failures = [
        CaseFailure(name=FAILED_TEST, message="AssertionError: 200 != 401"),
        CaseFailure(name=LONG_TEST, message=LONG_MESSAGE),
    ]
    record.tests.failed = 2
    record.tests.log_tail = "\n".join(["FAILED " + LONG_TEST, "E   " + "y" * 300, "2 failed, 10 passed"])
    record.step_record("checkout").detail = "merged " + "f" * 200 + " into main"


@pytest.fixture(scope="module")
def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    redis = Redis.from_url(other_db(settings, 7).require_redis_url())
    redis.flushdb()
    store = BuildStore(redis)
    log_store = DirLogStore(tmp_path_factory.mktemp("browser") / "logs")
    records = build_site(store, log_store)
    logs = records["failed"].logs
    branch = "feature/" + "very-long-branch-" * 8 + "end"
    wide = add_build(store, request_for("team/webapp", 99, branch), "teardown", 1, logs)
    failed = store.update(wide.id, lengthen)
    assert failed is not None
    running = add_build(store, request_for("team/webapp", 100, "feature/live"), "wait_setup")
    api = FastAPI()
    server = Server(api)  # its port is chosen here, so the pages can link to it before it starts
    api.include_router(make_router(store, server.url, Access(tokens=(UI_TOKEN,)), Redactor(()), log_store))
    with server:
        yield Site(server.url, failed, running, LiveLogs(redis, ttl=600))
    redis.flushdb()


def test_failed_build_in_a_browser(site: Site) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: run `make browser` to install Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(site.url + "/builds")
            # Not logged in: the login form, then back to the list.
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            page.get_by_label("token").fill(UI_TOKEN)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{site.url}/builds")
            expect(page.get_by_role("heading", name="Builds")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.get_by_role("link", name=site.failed.id, exact=True).click()
            page.wait_for_url(f"{site.url}/builds/{site.failed.id}")

            expect(page.get_by_text(LONG_TEST, exact=True)).to_be_visible()
            expect(page.get_by_text(FAILED_TEST, exact=True)).to_be_visible()
            expect(page.locator("svg.timeline")).to_be_visible()
            expect(page.locator("svg.timeline rect.bar")).to_have_count(6)
            box = page.locator("svg.timeline").bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 50

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_running_build_shows_its_test_log_growing_without_a_reload(site: Site) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: run `make browser` to install Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    build = site.running.id
    site.live.append(build, "attempt 1", 0, 12, "first line\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {UI_TOKEN}"})
            page = context.new_page()
            page.goto(f"{site.url}/builds/{build}")
            panel = page.locator("#live-log")
            expect(panel).to_have_text("first line\n", timeout=30_000)
            page.evaluate("window.podciSamePage = true")  # gone if the page reloads
            site.live.append(build, "attempt 1", 12, 25, "second line\n")
            expect(panel).to_have_text("first line\nsecond line\n", timeout=30_000)
            assert page.evaluate("window.podciSamePage === true")
        finally:
            browser.close()
