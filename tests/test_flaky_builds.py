"""Flaky tests on real parts: the session's Redis and worker, real git repositories, real test
processes, the pages over real HTTP. A test fails the first time (it leaves a marker outside the
workspace, at a path its pod template gives it) and passes after; a retry of the same commit makes it
known-flaky."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI

from dispatch.actions import retry
from schemas.record import BuildRecord, BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from testkit.servers import Server
from tests.helpers import wait_for
from tests.test_builds import build, request
from web.access import Access
from web.flaky import repo_path
from web.pages import make_router

pytestmark = pytest.mark.usefixtures("worker")

TOKEN = "flaky-pages-token-0123456789"
FLAKY = 'flaky[<b>"x"]'  # a name from the build's own report: escaped on the pages, never in a shell
FLAKY_NAME = f"app.Cart.{FLAKY}"
RUNNER = (
    """\
import os, sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

marker = Path(os.environ["FLAKY_MARKER"])


def flaky():
    if marker.exists():
        return True
    marker.write_text("failed once")
    return False


tests = {"app.Cart.adds": lambda: True, "app.Cart."""
    + FLAKY.replace('"', '\\"')
    + """": flaky}
cases, failed = [], 0
for name in sys.argv[1:] or list(tests):
    ok = tests[name]()
    failed += not ok
    cls, _, short = name.rpartition(".")
    body = "" if ok else '<failure message="it flaked"/>'
    cases.append(f"<testcase classname={quoteattr(cls)} name={quoteattr(short)}>{body}</testcase>")
Path("report.xml").write_text(f'<testsuite tests="{len(cases)}">' + "".join(cases) + "</testsuite>")
print(len(cases), "tests,", failed, "failed")
sys.exit(1 if failed else 0)
"""
)


def config(rerun: int) -> str:
    return f"""\
test:
  container: tests
  command: [python3, run_tests.py]
  junit: report.xml
  rerun: "python3 run_tests.py {{tests}}"
flaky: {{rerun: {rerun}}}
setup: {{ready: true}}
"""


def pod(marker: Path) -> str:
    return f"""\
containers:
  - name: tests
    image: none
    command: [sleep, infinity]
    env: [{{name: FLAKY_MARKER, value: "{marker}"}}]
"""


@pytest.fixture(scope="module")
def pages(store: BuildStore) -> Iterator[httpx.Client]:
    api = FastAPI()
    api.include_router(make_router(store, "http://podci.test", Access(tokens=(TOKEN,))))
    with Server(api) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def flaky_repo(tmp_path: Path, name: str, rerun: int) -> tuple[Repo, Path]:
    marker = tmp_path / "marker"  # outside the workspace: it outlives the build
    files = {".podci.yml": config(rerun), ".podci/pod.yaml": pod(marker), "run_tests.py": RUNNER}
    return Repo(tmp_path / name, files, from_example=False), marker


def fail_then_retry(
    app: Celery, store: BuildStore, settings: Settings, repo: Repo
) -> tuple[BuildRecord, BuildRecord]:
    first = build(app, store, settings, request(repo.path, "main", target=None))
    assert first.state is BuildState.failed, first.reason
    assert first.tests is not None and [f.name for f in first.tests.failures] == [FLAKY_NAME]
    assert first.tests.failures[0].flaky_note == ""  # nothing known yet
    again = retry(app, store, settings, first.id, by="test")
    second = wait_for(store, again.build_id, 90)
    assert second.state is BuildState.succeeded, second.reason
    assert second.source_commit == first.source_commit
    return first, second


def test_a_test_that_failed_then_passed_on_one_commit_is_listed_and_noted(
    app: Celery, store: BuildStore, settings: Settings, pages: httpx.Client, tmp_path: Path
) -> None:
    repo, marker = flaky_repo(tmp_path, "flaky-listed", rerun=0)
    first, second = fail_then_retry(app, store, settings, repo)
    url = f"/repos/{repo_path(repo.path.name)}/flaky"
    assert pages.get(url).status_code == 401  # the pages' login, the pages' rules
    listed = pages.get(url, headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    assert listed.status_code == 200
    tests = listed.json()["tests"]
    assert [(t["name"], t["note"], t["builds"]) for t in tests] == [
        (FLAKY_NAME, "flaky: 1 of the last 2 runs failed", [second.id, first.id])
    ]
    assert tests[0]["links"] == [f"../../builds/{second.id}", f"../../builds/{first.id}"]
    html = pages.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "1 of the last 2 runs failed" in html and f'href="../../builds/{first.id}"' in html
    assert "flaky[&lt;b&gt;&#34;x&#34;]" in html and "<b>" not in html

    marker.unlink()  # the next build fails it again: its page says it is known-flaky
    third = build(app, store, settings, request(repo.path, "main", target=None))
    assert third.state is BuildState.failed and third.tests is not None
    assert third.tests.failures[0].flaky_note == "flaky: 2 of the last 3 runs failed"
    page = pages.get(f"/builds/{third.id}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "failed; flaky: 2 of the last 3 runs failed" in page


def test_a_known_flaky_failure_that_passes_on_rerun_succeeds_with_a_warning(
    app: Celery, store: BuildStore, settings: Settings, pages: httpx.Client, tmp_path: Path
) -> None:
    repo, marker = flaky_repo(tmp_path, "flaky-rerun", rerun=1)
    fail_then_retry(app, store, settings, repo)  # the first failure is not known-flaky: no rerun
    marker.unlink()
    third = build(app, store, settings, request(repo.path, "main", target=None))
    assert third.state is BuildState.succeeded, third.reason
    assert third.tests is not None and third.tests.exit_code == 1
    assert third.tests.rerun is not None and third.tests.rerun.exit_code == 0
    assert third.tests.rerun.tests == [FLAKY_NAME]
    assert third.warnings == [
        f"passed only on rerun: 1 known-flaky test(s) failed, then passed run again: {FLAKY_NAME}"
    ]
    assert third.tests.failures[0].flaky_note.startswith("flaky: 2 of the last")
    page = pages.get(f"/builds/{third.id}", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "warning: passed only on rerun" in page
