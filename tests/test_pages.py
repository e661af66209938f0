"""The build pages over real HTTP (uvicorn), reading records from a real Redis.

Records are written straight into a Redis database no worker reads, and moved through the real
pipeline functions (`start`/`apply`), so the pages see records shaped exactly like a worker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis import Redis

from schemas.public import Redactor
from schemas.record import BuildRecord, BuildState, PodAttempt, utcnow
from schemas.record import TestCaseFailure as CaseFailure  # aliased: pytest would collect `Test*`
from schemas.record import TestResult as Outcome
from schemas.repo_config import RepoConfig
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from store.logstore import DirLogStore
from testkit.servers import Server
from tests.test_webhooks import other_db
from web.access import Access
from web.pages import make_router
from workers.pipeline import STEPS, Done, RanTests, Stop, apply, start

FAILED_TEST = "tests.test_login.LoginTest.test_wrong_password"
FAILED_MESSAGE = "AssertionError: expected <status>401</status> & got 200"
REASON = "tests failed with exit code 1"
UI_TOKEN = "page-token-for-tests"
LOGIN = {"Authorization": f"Bearer {UI_TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **LOGIN}
JSON = {"Accept": "application/json", **LOGIN}
REDACTOR = Redactor(())


@dataclass
class Site:
    url: str
    store: BuildStore
    failed: BuildRecord  # finished, tests failed, with logs
    kept: BuildRecord  # tests failed, teardown not run yet: its pod is still there
    passed: BuildRecord  # another repository, succeeded
    queued: BuildRecord
    log_dir: Path


def request_for(repo: str, pr: int, source: str, job: str = "webapp-pr") -> BuildRequest:
    return BuildRequest(
        job=job,
        repo=repo,
        source=Revision(clone_url="/srv/git/webapp.git", ref=source),
        target=Revision(clone_url="/srv/git/webapp.git", ref="main"),
        pull_request=pr,
        provider="bitbucket-server",
        event="pr:opened",
        triggered_by="alice",
    )


def run_steps(record: BuildRecord, until: str, test_exit: int, t0: datetime, logs: dict[str, str]) -> None:
    """Move `record` through the real pipeline up to and including `until`, a second or so per step."""
    clock = t0
    for step in STEPS:
        start(record, step, clock)
        clock += timedelta(seconds=1.5 if step != "run_tests" else 6)
        if step == "create_service":
            record.service = f"{record.name}-svc"
        if step == "create_pod":
            record.attempts = 2
            record.pods = [
                PodAttempt(
                    attempt=1, pod=f"{record.name}-1", started=clock, ended="node drained: pod evicted"
                ),
                PodAttempt(attempt=2, pod=f"{record.name}-2", started=clock),
            ]
            record.config = RepoConfig.model_validate({"test": {"container": "app", "command": "pytest"}})
        if step == "run_tests" and test_exit:
            result = Outcome(
                exit_code=test_exit,
                log_path=logs["tests"],
                log_tail="collected 12 items\n...F........\nFAILED " + FAILED_TEST,
                total=12,
                failed=1,
                skipped=0,
                failures=[CaseFailure(name=FAILED_TEST, message=FAILED_MESSAGE)],
            )
            apply(record, step, Stop(BuildState.failed, REASON, RanTests(result)), clock)
        else:
            apply(record, step, Done(f"{step} done"), clock)
        if step == until:
            return


def add_build(
    store: BuildStore,
    request: BuildRequest,
    until: str | None,
    test_exit: int = 0,
    logs: dict[str, str] | None = None,
) -> BuildRecord:
    record = store.create(request, log_root="/var/log/podci", due=time.time() + 3600)
    t0 = utcnow() - timedelta(minutes=2)

    def change(record: BuildRecord) -> None:
        record.created = t0
        record.logs = logs or {}
        if until is not None:
            run_steps(record, until, test_exit, t0 + timedelta(seconds=3), record.logs)

    changed = store.update(record.id, change)
    assert changed is not None
    return changed


def build_site(store: BuildStore, log_store: DirLogStore) -> dict[str, BuildRecord]:
    """Four builds: a finished failed one, a failed one still tearing down, a passed one, a queued one.
    The failed ones' logs are in the log store, as a worker puts them; `gone` is listed but not kept."""
    scratch = log_store.root.parent / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "tests.log").write_text("full test output\nFAILED " + FAILED_TEST + "\n")
    (scratch / "app.log").write_text("app container says hello\n")
    (scratch / "redis.log").write_text("Ready to accept connections\n")
    files = {name: scratch / f"{name}.log" for name in ("tests", "app", "redis")}
    logs = {name: f"{name}.log" for name in ("tests", "app", "redis", "gone")}
    records = {
        "failed": add_build(store, request_for("team/webapp", 12, "feature/login"), "teardown", 1, logs),
        "kept": add_build(store, request_for("team/webapp", 13, "bugfix/session"), "run_tests", 1, logs),
        "passed": add_build(store, request_for("team/other", 4, "topic", job="other-pr"), "teardown"),
        "queued": add_build(store, request_for("team/webapp", 14, "feature/queue"), None),
    }
    for key in ("failed", "kept"):
        log_store.put(records[key].name, files)
    (log_store.root / records["failed"].name / "secret.txt").write_text("not a log of the build\n")
    return records


@pytest.fixture(scope="module")
def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    redis = Redis.from_url(other_db(settings, 6).require_redis_url())
    redis.flushdb()
    store = BuildStore(redis)
    log_store = DirLogStore(tmp_path_factory.mktemp("pages") / "logs")
    records = build_site(store, log_store)
    api = FastAPI()
    server = Server(api)  # its port is chosen here, so the pages can link to it before it starts
    api.include_router(make_router(store, server.url, Access(tokens=(UI_TOKEN,)), REDACTOR, log_store))
    with server:
        yield Site(server.url, store, log_dir=log_store.root, **records)
    redis.flushdb()


def get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, headers=headers or HTML)


def test_records_are_shaped_like_a_worker_s(site: Site) -> None:
    assert site.failed.state is BuildState.failed and site.failed.finished is not None
    assert site.kept.state is BuildState.failed and site.kept.finished is None
    assert site.passed.state is BuildState.succeeded
    assert site.queued.state is BuildState.queued


def test_list_shows_every_build_with_links(site: Site) -> None:
    reply = get(site.url + "/builds")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    for record in (site.failed, site.kept, site.passed, site.queued):
        assert f'href="{site.url}/builds/{record.id}"' in reply.text
    assert "feature/login → main" in reply.text
    assert '<span class="badge succeeded">succeeded</span>' in reply.text
    assert "#12" in reply.text


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("?repo=team/other", {"passed"}, {"failed", "kept", "queued"}),
        ("?state=failed", {"failed", "kept"}, {"passed", "queued"}),
        ("?repo=team/webapp&state=queued", {"queued"}, {"failed", "kept", "passed"}),
        ("?repo=nobody/nothing", set(), {"failed", "kept", "passed", "queued"}),
    ],
)
def test_list_filters(site: Site, query: str, shown: set[str], hidden: set[str]) -> None:
    text = get(site.url + "/builds" + query).text
    for name in shown:
        assert f'/builds/{getattr(site, name).id}"' in text
    for name in hidden:
        assert f'/builds/{getattr(site, name).id}"' not in text
    if not shown:
        assert "No builds match these filters." in text


def test_an_unknown_state_filter_is_refused_with_the_valid_ones(site: Site) -> None:
    reply = get(site.url + "/builds?state=<b>done</b>")
    assert reply.status_code == 400
    assert "&lt;b&gt;done&lt;/b&gt;" in reply.text and "<b>done" not in reply.text
    assert "awaiting_approval, queued, running, succeeded, failed, error, stopped" in reply.text


def test_list_as_json(site: Site) -> None:
    reply = get(site.url + "/builds?state=failed", JSON)
    assert reply.headers["content-type"] == "application/json"
    records = [BuildRecord.model_validate(item) for item in reply.json()]
    assert {r.id for r in records} == {site.failed.id, site.kept.id}
    assert next(r for r in records if r.id == site.failed.id) == REDACTOR.record(site.failed)


def test_build_as_json(site: Site) -> None:
    reply = get(f"{site.url}/builds/{site.passed.id}", JSON)
    assert reply.status_code == 200
    assert BuildRecord.model_validate(reply.json()) == REDACTOR.record(site.passed)


def test_failed_build_page(site: Site) -> None:
    reply = get(f"{site.url}/builds/{site.failed.id}")
    assert reply.status_code == 200
    text = reply.text
    assert f"Build {site.failed.id}" in text
    assert f'<p class="reason">{REASON}</p>' in text
    assert FAILED_TEST in text
    # The message is shown escaped: it is text from the tests, not markup.
    assert "AssertionError: expected &lt;status&gt;401&lt;/status&gt; &amp; got 200" in text
    assert "12 tests, 1 failed, 0 skipped" in text
    assert "exit code 1" in text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in text
    assert 'data-phase="tests"' in text
    assert "tests: 6.0 s (failed)" in text
    for name in ("tests", "app", "redis", "gone"):
        assert f'href="{site.url}/builds/{site.failed.id}/logs/{name}"' in text
    assert "collected 12 items" in text  # the log tail
    assert f"<code>{site.failed.name}-2</code>" in text  # the current pod
    assert f"<code>{site.failed.name}-svc</code>" in text  # the service
    assert "node drained: pod evicted" in text  # why the first attempt ended
    assert "kubectl exec" not in text  # torn down: nothing left to exec into


def test_a_failed_build_still_holding_its_pod_shows_how_to_get_in(site: Site) -> None:
    text = get(f"{site.url}/builds/{site.kept.id}").text
    assert f"kubectl exec -it {site.kept.name}-2 -c app -- sh" in text


@pytest.mark.parametrize(("minutes", "shown"), [(10, True), (-1, False)])
def test_a_finished_failed_build_whose_pod_is_kept_shows_how_to_get_in(site: Site, minutes: int,
                                                                      shown: bool) -> None:  # fmt: skip
    def keep(record: BuildRecord) -> None:
        record.pod_kept_until = utcnow() + timedelta(minutes=minutes)

    site.store.update(site.failed.id, keep)
    try:
        text = get(f"{site.url}/builds/{site.failed.id}").text
    finally:
        site.store.update(site.failed.id, lambda r: setattr(r, "pod_kept_until", None))
    assert (f"kubectl exec -it {site.failed.name}-2" in text) is shown


def test_a_queued_build_page_says_what_has_not_happened(site: Site) -> None:
    text = get(f"{site.url}/builds/{site.queued.id}").text
    assert "The tests have not run yet." in text
    assert 'data-phase="queued"' in text
    assert 'data-phase="checkout"' not in text


def test_unknown_build_is_a_404_sentence(site: Site) -> None:
    reply = get(site.url + "/builds/no-such-build-1")
    assert reply.status_code == 404
    assert "There is no build named &#39;no-such-build-1&#39;" in reply.text
    reply = get(site.url + "/builds/no-such-build-1", JSON)
    assert reply.status_code == 404
    assert reply.json() == {"error": "There is no build named 'no-such-build-1'; it may have expired."}


def test_log_route_serves_registered_files_as_text(site: Site) -> None:
    page = get(f"{site.url}/builds/{site.failed.id}").text
    for name, content in (("tests", "full test output"), ("app", "app container says hello")):
        assert f"/builds/{site.failed.id}/logs/{name}" in page
        reply = get(f"{site.url}/builds/{site.failed.id}/logs/{name}")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert content in reply.text


@pytest.mark.parametrize(
    "name",
    [
        "gone",  # registered, but the file is missing
        "secret.txt",  # beside the logs, but not registered
        "secret",
        "..%2Fsecret.txt",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "%2e%2e",
        "tests.log",
    ],
)
def test_log_route_refuses_anything_not_registered(site: Site, name: str) -> None:
    reply = get(f"{site.url}/builds/{site.failed.id}/logs/{name}")
    assert reply.status_code == 404
    assert "root:" not in reply.text and "not a log of the build" not in reply.text


def test_log_route_refuses_a_registered_path_given_as_the_name(site: Site) -> None:
    path = str(site.log_dir / site.failed.name / "tests.log")
    reply = httpx.get(f"{site.url}/builds/{site.failed.id}/logs/" + path.replace("/", "%2F"), headers=LOGIN)
    assert reply.status_code == 404
    assert "full test output" not in reply.text


def test_logs_of_an_unknown_build_are_404(site: Site) -> None:
    assert get(site.url + "/builds/no-such-build-1/logs/tests").status_code == 404
