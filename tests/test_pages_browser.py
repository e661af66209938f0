"""The build pages in a real headless Chromium: what a person sees, not just what the server sends.

HTTP tests prove the content is there; only a browser shows whether it is visible and fits a laptop
screen. The failed build here carries deliberately long, unbreakable text (a branch name, a test id,
a message, a log line) because that is what pushes a page wider than the window.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from redis import Redis

from schemas.public import Redactor
from schemas.record import BuildRecord, Step, utcnow
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
from workers.pipeline import Done, apply, start

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = ROOT / "tests" / "artifacts" / "build-page.png"
LONG_TEST = "tests.integration.test_checkout_flow.CheckoutFlowWithSavedPaymentMethodsAndCoupons." + "x" * 90
LONG_MESSAGE = "AssertionError: " + "0123456789abcdef" * 12 + "\n  expected: <total>42.00</total>"


# What the configuration says, as `podci up --port 18080` left it: the browser goes to 127.0.0.1.
PUBLIC_URL = "http://localhost:8080"


@dataclass
class Site:
    url: str
    store: BuildStore
    failed: BuildRecord
    running: BuildRecord  # its tests "run": the test follows their live log by hand
    live: LiveLogs
    errored: BuildRecord
    stopped: BuildRecord
    logged: BuildRecord  # failed, with its logs in the log store


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
    api.include_router(make_router(store, PUBLIC_URL, Access(tokens=(UI_TOKEN,)), Redactor(()), log_store))
    with server:
        yield Site(server.url, store, failed, running, LiveLogs(redis, ttl=600), records["errored"],
                   records["stopped"], records["failed"])  # fmt: skip
    redis.flushdb()


def test_failed_build_in_a_browser(site: Site) -> None:
    from playwright.sync_api import expect

    with browser_page(login=False, viewport={"width": 1280, "height": 800}) as page:
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
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_running_build_shows_its_test_log_growing_without_a_reload(site: Site) -> None:
    from playwright.sync_api import expect

    build = site.running.id
    site.live.append(build, "attempt 1", 0, 12, "first line\n")
    with browser_page() as page:
        page.goto(f"{site.url}/builds/{build}")
        panel = page.locator("#live-log")
        expect(panel).to_have_text("first line\n", timeout=30_000)
        page.evaluate("window.podciSamePage = true")  # gone if the page reloads
        site.live.append(build, "attempt 1", 12, 25, "second line\n")
        expect(panel).to_have_text("first line\nsecond line\n", timeout=30_000)
        assert page.evaluate("window.podciSamePage === true")


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of a screenshot, to compare two of them pixel by pixel."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.width, rgb.height, rgb.tobytes()


@contextmanager
def browser_page(*, login: bool = True, viewport: dict[str, int] | None = None) -> Iterator[Page]:
    """A page of Debian's chromium (skipped where it is not installed), signed in with the page
    token unless `login` is off, closed with its browser whatever the test does."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: run `make browser` to install Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            headers = {"Authorization": f"Bearer {UI_TOKEN}"} if login else {}
            context = browser.new_context(viewport=viewport, extra_http_headers=headers)
            yield context.new_page()
        finally:
            browser.close()


def test_links_work_by_another_host_name_than_the_configured_one(site: Site) -> None:
    """PODCI_PUBLIC_URL says localhost:8080; the reader came by 127.0.0.1 and another port. Every
    click stays where the reader is: the list, a build, a container's log named with a slash, back."""
    from playwright.sync_api import expect

    with browser_page() as page:
        page.goto(site.url + "/")
        page.wait_for_url(f"{site.url}/builds")
        page.get_by_role("link", name=site.logged.id, exact=True).click()
        page.wait_for_url(f"{site.url}/builds/{site.logged.id}")
        page.get_by_role("link", name="containers/web", exact=True).click()
        page.wait_for_url(f"{site.url}/builds/{site.logged.id}/logs/containers/web")
        expect(page.locator("body")).to_contain_text("web container listens")
        page.go_back()
        page.locator("header").get_by_role("link", name="builds").click()
        page.wait_for_url(f"{site.url}/builds")
        assert "localhost:8080" not in page.content()


def test_failing_tests_are_first_and_the_status_link_lands_on_them(site: Site) -> None:
    from playwright.sync_api import expect

    with browser_page(viewport={"width": 1280, "height": 500}) as page:
        page.goto(f"{site.url}/builds/{site.failed.id}#failing-tests")
        section = page.locator("#failing-tests")
        expect(section).to_be_visible()
        assert page.evaluate("document.querySelector('main h2').closest('section').id") == "failing-tests"
        expect(section).to_contain_text(FAILED_TEST)
        # The anchor scrolled the page: the section's top is at the window's top.
        at_top = "Math.abs(document.getElementById('failing-tests').getBoundingClientRect().top) < 2"
        page.wait_for_function(at_top, timeout=30_000)
        assert page.evaluate("window.scrollY") > 0


def test_failed_error_and_stopped_look_different_in_shape_and_text(site: Site) -> None:

    looks = """id => { const badge = document.querySelector(`tr[data-build="${id}"] .badge`);
        const style = getComputedStyle(badge);
        return [badge.textContent.trim(), style.borderStyle, style.backgroundColor, style.color]; }"""
    with browser_page() as page:
        page.goto(f"{site.url}/builds")
        seen = {r.state.value: page.evaluate(looks, r.id) for r in (site.failed, site.errored, site.stopped)}
    texts = {state: look[0] for state, look in seen.items()}
    assert texts == {"failed": "✗ failed", "error": "⚠ error", "stopped": "■ stopped"}
    # Not by colour alone: the borders differ too, and no two share all of their looks.
    assert len({look[1] for look in seen.values()}) >= 2, seen
    assert len({tuple(look[1:]) for look in seen.values()}) == 3, seen


def test_a_running_build_s_page_changes_on_screen_without_a_reload(site: Site) -> None:
    """Screenshots of the log panel before and after the build moves on: the pixels differ, the steps
    and the timeline follow, and a mark left on `window` survives (the page was not reloaded)."""
    from playwright.sync_api import expect

    build = add_build(site.store, request_for("team/webapp", 101, "feature/screens"), "wait_setup")
    site.live.append(build.id, "attempt 1", 0, 15, "setting up...\n")
    with browser_page(viewport={"width": 1280, "height": 900}) as page:
        page.goto(f"{site.url}/builds/{build.id}")
        panel = page.locator("#live-log")
        expect(panel).to_have_text("setting up...\n", timeout=30_000)
        expect(page.locator('svg.timeline rect.bar[data-phase="tests"]')).to_have_count(0)
        page.evaluate("window.podciSamePage = true")  # gone if the page reloads
        panel.scroll_into_view_if_needed()
        box = panel.bounding_box()
        assert box is not None
        clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": max(box["height"], 60)}
        before = png_pixels(page.screenshot(clip=clip))

        text = "".join(f"test_{n} ... ok\n" for n in range(12))
        site.live.append(build.id, "attempt 1", 15, 15 + len(text.encode()), text)

        def into_tests(record: BuildRecord) -> None:
            now = utcnow()
            apply(record, Step.wait_setup, Done("setup complete"), now)
            start(record, Step.run_tests, now + timedelta(milliseconds=10))

        site.store.update(build.id, into_tests)
        expect(panel).to_contain_text("test_11 ... ok", timeout=30_000)
        steps = page.locator("#steps tr", has=page.locator("code", has_text="run_tests"))
        expect(steps.locator(".badge")).to_have_text("running", timeout=30_000)
        expect(page.locator('svg.timeline rect.bar[data-phase="tests"]')).to_have_count(1, timeout=30_000)
        page.evaluate("window.scrollTo(0, 0)")
        panel.scroll_into_view_if_needed()
        box = panel.bounding_box()
        assert box is not None
        after = png_pixels(page.screenshot(clip={**clip, "x": box["x"], "y": box["y"]}))
        assert page.evaluate("window.podciSamePage === true"), "the page was reloaded"
    assert before[:2] == after[:2], (before[:2], after[:2])
    changed = sum(1 for a, b in zip(before[2], after[2], strict=True) if a != b)
    assert changed > 100, f"the log panel looks the same after the build moved on ({changed} bytes differ)"
