"""The build pages over real HTTP (uvicorn), reading records from a real Redis.

Records are written straight into a Redis database no worker reads, and moved through the real
pipeline functions (`start`/`apply`), so the pages see records shaped exactly like a worker's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
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
from workers.reporters.status import build_url

FAILED_TEST = "tests.test_login.LoginTest.test_wrong_password"
FAILED_MESSAGE = "AssertionError: expected <status>401</status> & got 200"
REASON = "tests failed with exit code 1"
UI_TOKEN = "page-token-for-tests"
LOGIN = {"Authorization": f"Bearer {UI_TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **LOGIN}
JSON = {"Accept": "application/json", **LOGIN}
REDACTOR = Redactor(())
# Where the configuration says the pages are: not where the tests reach them. No link may lead there.
PUBLIC_URL = "http://podci-public.invalid:8080"
ERROR_REASON = "FailedScheduling: 0/3 nodes have <enough> memory & " + "more words " * 20
FAILURE_TEXT = 'Traceback (most recent call last):\n  File "tests/test_login.py", line 9\nAssertionError'


@dataclass
class Site:
    url: str
    store: BuildStore
    failed: BuildRecord  # finished, tests failed, with logs
    kept: BuildRecord  # tests failed, teardown not run yet: its pod is still there
    passed: BuildRecord  # another repository, succeeded
    queued: BuildRecord
    errored: BuildRecord  # podci gave up at checkout: no pod, no service, nothing reported
    stopped: BuildRecord  # superseded while its checkout ran
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
                failures=[CaseFailure(name=FAILED_TEST, message=FAILED_MESSAGE, text=FAILURE_TEXT)],
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


def end_at_checkout(store: BuildStore, request: BuildRequest, state: BuildState, reason: str) -> BuildRecord:
    """A build that ends at its first step, torn down after, as the pipeline ends it."""
    record = store.create(request, log_root="/var/log/podci", due=time.time() + 3600)
    t0 = utcnow() - timedelta(minutes=1)

    def change(record: BuildRecord) -> None:
        start(record, STEPS[0], t0)
        apply(record, STEPS[0], Stop(state, reason), t0 + timedelta(seconds=2))
        start(record, STEPS[-1], t0 + timedelta(seconds=3))
        apply(record, STEPS[-1], Done("nothing to delete"), t0 + timedelta(seconds=4))

    changed = store.update(record.id, change)
    assert changed is not None and changed.finished is not None
    return changed


TEST_LOG = "\n".join(
    [f"progress line {n}" for n in range(200)]
    + ["FAIL: test_wrong_password (" + FAILED_TEST + ")", "Traceback (most recent call last):",
       "AssertionError: 200 != 401 <in the full log>"]
    + [f"after line {n}" for n in range(200)]
)  # fmt: skip


def build_site(store: BuildStore, log_store: DirLogStore) -> dict[str, BuildRecord]:
    """Six builds: a finished failed one, a failed one still tearing down, a passed one, a queued one,
    one podci gave up on and one superseded. The failed ones' logs are in the log store, as a worker
    puts them (a container's log named with a slash, as the local backend names them); `gone` is
    listed but not kept."""
    scratch = log_store.root.parent / "scratch"
    (scratch / "containers").mkdir(parents=True, exist_ok=True)
    (scratch / "tests.log").write_text("full test output\n" + TEST_LOG + "\nFAILED " + FAILED_TEST + "\n")
    (scratch / "app.log").write_text("app container says hello\n")
    (scratch / "redis.log").write_text("Ready to accept connections\n")
    (scratch / "containers" / "web.log").write_text("web container listens\n")
    files = {name: scratch / f"{name}.log" for name in ("tests", "app", "redis", "containers/web")}
    logs = {name: f"{name}.log" for name in ("tests", "app", "redis", "gone", "containers/web")}
    records = {
        "failed": add_build(store, request_for("team/webapp", 12, "feature/login"), "teardown", 1, logs),
        "kept": add_build(store, request_for("team/webapp", 13, "bugfix/session"), "run_tests", 1, logs),
        "passed": add_build(store, request_for("team/other", 4, "topic", job="other-pr"), "teardown"),
        "queued": add_build(store, request_for("team/webapp", 14, "feature/queue"), None),
        "errored": end_at_checkout(store, request_for("team/webapp", 15, "feature/error"), BuildState.error,
                                   ERROR_REASON),
        "stopped": end_at_checkout(store, request_for("team/webapp", 16, "feature/stop"), BuildState.stopped,
                                   "superseded by a newer commit"),
    }  # fmt: skip
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
    api.include_router(make_router(store, PUBLIC_URL, Access(tokens=(UI_TOKEN,)), REDACTOR, log_store))
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
        assert f'href="./builds/{record.id}"' in reply.text
    assert "feature/login → main" in reply.text
    assert '<span class="badge succeeded" title="the tests passed">' in reply.text
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
    for name in ("tests", "app", "redis", "gone", "containers/web"):
        assert f'href="{site.failed.id}/logs/{name}"' in text
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


def links_of(html: str) -> list[str]:
    """Every address a page sends the browser to: links, form targets, scripts' data."""
    return re.findall(r'(?:href|action|src|data-live)="([^"]*)"', html)


def log_link(page: str, name: str) -> str:
    found = [link for link in links_of(page) if link.endswith("/logs/" + name)]
    assert found and len(set(found)) == 1, (name, found)
    return found[0]


@pytest.mark.parametrize(
    ("name", "content"),
    [("tests", "full test output"), ("app", "app container says hello"), ("containers/web", "web container")],
)
def test_log_links_on_the_page_open_the_logs(site: Site, name: str, content: str) -> None:
    """A container's log is named with a slash (`containers/web`): its link, as the page has it, opens it."""
    page_url = f"{site.url}/builds/{site.failed.id}"
    reply = get(urljoin(page_url, log_link(get(page_url).text, name)))
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


# --- links are relative -----------------------------------------------------------------------------
def pages_of(site: Site) -> list[str]:
    ids = [r.id for r in (site.failed, site.kept, site.passed, site.queued, site.errored, site.stopped)]
    return ["/builds", "/builds?state=failed", "/login", "/builds/no-such-1", *[f"/builds/{i}" for i in ids]]


def test_no_link_names_a_host_so_every_one_works_by_any_host_name(site: Site) -> None:
    """The pages are reached here as 127.0.0.1:PORT while PODCI_PUBLIC_URL names another host: every
    link, form and script address is relative, and each one followed from its page answers."""
    for path in pages_of(site):
        page_url = site.url + path
        html = get(page_url).text
        assert "podci-public.invalid" not in html, path
        for link in links_of(html):
            if link.startswith("https://bitbucket.org/"):
                continue
            assert not urlsplit(link).scheme and not link.startswith(("/", "\\\\")), (path, link)
            target = urljoin(page_url, link)
            if link.startswith("#") or target.endswith(("/retry", "/cancel", "/logs/gone", "/login")):
                continue  # a fragment, a POST, the listed log that was never kept, the form's target
            assert get(target, JSON if link.endswith("/live") else HTML).status_code == 200, (path, link)


def test_the_site_root_leads_to_the_list(site: Site) -> None:
    """`GET /` answers with a relative redirect (a host in it would be the configured one)."""
    reply = httpx.get(site.url + "/", headers=HTML)
    assert reply.status_code in (303, 307)
    assert reply.headers["location"] == "builds"
    assert httpx.get(site.url + "/", headers=HTML, follow_redirects=True).url == site.url + "/builds"


def test_login_leads_back_relatively(site: Site) -> None:
    page = httpx.get(f"{site.url}/builds/{site.failed.id}")
    assert page.status_code == 401
    assert f'name="next" value="builds/{site.failed.id}"' in page.text
    reply = httpx.post(site.url + "/login", data={"token": UI_TOKEN, "next": f"builds/{site.failed.id}"})
    assert reply.status_code == 303 and reply.headers["location"] == f"./builds/{site.failed.id}"
    evil = httpx.post(site.url + "/login", data={"token": UI_TOKEN, "next": "//evil.example/x"})
    assert evil.headers["location"] == "./builds"


# --- what a finished build says ---------------------------------------------------------------------
def test_a_build_podci_gave_up_on_says_nothing_is_yet_to_come(site: Site) -> None:
    text = get(f"{site.url}/builds/{site.errored.id}").text
    assert "none yet" not in text
    assert re.search(r"<dt>pod</dt><dd><span class=\"muted\">not created</span>", text)
    assert re.search(r"<dt>service</dt><dd><span class=\"muted\">not created</span>", text)
    # What reporting did, never the build's outcome: nothing was posted for this build.
    assert '<dd class="reported">nothing posted</dd>' in text
    assert 'id="failing-tests"' not in text


def test_reporting_shows_what_was_posted(site: Site) -> None:
    def posted(record: BuildRecord) -> None:
        record.reported = {"bitbucket-server": "FAILED"}

    site.store.update(site.errored.id, posted)
    try:
        text = get(f"{site.url}/builds/{site.errored.id}").text
    finally:
        site.store.update(site.errored.id, lambda r: setattr(r, "reported", {}))
    assert '<dd class="reported">bitbucket-server: FAILED</dd>' in text


def test_a_finished_build_has_no_current_pod(site: Site) -> None:
    finished, running = (
        get(f"{site.url}/builds/{site.failed.id}").text,
        get(f"{site.url}/builds/{site.kept.id}").text,
    )
    assert ">current<" not in finished and "ended with the build (failed)" in finished
    assert ">current<" in running


# --- the builds list --------------------------------------------------------------------------------
def row_of(html: str, build_id: str) -> str:
    match = re.search(rf'<tr class="[^"]*" data-build="{re.escape(build_id)}">(.*?)</tr>', html, re.S)
    assert match is not None, build_id
    return match.group(0)


def test_list_tells_failed_error_and_stopped_apart_and_gives_the_reason(site: Site) -> None:
    html = get(site.url + "/builds").text
    rows = {r: row_of(html, getattr(site, r).id) for r in ("failed", "errored", "stopped")}
    assert 'class="state-failed"' in rows["failed"] and "✗" in rows["failed"]
    assert 'class="state-error"' in rows["errored"] and "⚠" in rows["errored"]
    assert 'class="state-stopped"' in rows["stopped"] and "■" in rows["stopped"]
    assert REASON in rows["failed"] and "superseded by a newer commit" in rows["stopped"]
    # The reason is clipped in the cell, whole in its title, and escaped in both.
    assert "FailedScheduling: 0/3 nodes have &lt;enough&gt; memory &amp; more words" in rows["errored"]
    assert "…</td>" in rows["errored"] and "<enough>" not in rows["errored"]


# --- failing tests first ----------------------------------------------------------------------------
def test_failing_tests_come_first_with_their_text_and_log_lines(site: Site) -> None:
    text = get(f"{site.url}/builds/{site.failed.id}").text
    section = text.index('<section class="failing" id="failing-tests">')
    assert section < text.index('<dl class="facts">') and section < text.index("<h2>Timeline</h2>")
    assert text.index("<h2>Failing tests</h2>") == text.index("<h2>")
    failing = text[section : text.index("</section>", section)]
    assert '<li id="test-1">' in failing  # where the test's annotation on the pull request links
    assert FAILED_TEST in failing and "expected &lt;status&gt;401&lt;/status&gt;" in failing
    assert 'File "tests/test_login.py", line 9' in failing.replace("&#34;", '"')  # the failure's text
    # The lines around it, found in the full log from the log store (not in the record's tail).
    assert "AssertionError: 200 != 401 &lt;in the full log&gt;" in failing
    assert "progress line 198" in failing and "progress line 150" not in failing


def test_the_status_link_of_a_failed_build_points_at_its_failing_tests(site: Site) -> None:
    assert build_url(site.failed, PUBLIC_URL) == f"{PUBLIC_URL}/builds/{site.failed.id}#failing-tests"
    assert build_url(site.passed, PUBLIC_URL) == f"{PUBLIC_URL}/builds/{site.passed.id}"


# --- retry and cancel -------------------------------------------------------------------------------
def forms_of(html: str) -> dict[str, str]:
    """The action forms of a page, by their button's label."""
    forms = {}
    for form in re.findall(r'<form class="action".*?</form>', html, re.S):
        label = re.search(r"<button[^>]*>(\w+)</button>", form)
        assert label is not None, form
        forms[label.group(1)] = form
    return forms


@pytest.mark.parametrize(("build", "label"), [("failed", "Retry"), ("kept", "Cancel"), ("queued", "Cancel")])
def test_a_signed_in_reader_gets_retry_or_cancel(site: Site, build: str, label: str) -> None:
    record = getattr(site, build)
    page_url = f"{site.url}/builds/{record.id}"
    forms = forms_of(get(page_url).text)
    assert list(forms) == [label]
    assert 'method="post"' in forms[label]
    action = re.search(r'action="([^"]*)"', forms[label]).group(1)  # type: ignore[union-attr]
    assert urljoin(page_url, action) == f"{page_url}/{label.lower()}"
    assert 'name="csrf"' not in forms[label]  # no token until the action routes give one


def test_a_public_reader_gets_no_buttons(site: Site, settings: Settings) -> None:
    api = FastAPI()
    server = Server(api)
    api.include_router(make_router(site.store, PUBLIC_URL, Access(public=("team/*",)), REDACTOR))
    with server:
        reply = httpx.get(f"{server.url}/builds/{site.failed.id}")
    assert reply.status_code == 200 and '<form class="action"' not in reply.text


def test_the_csrf_hook_puts_its_token_in_every_action_form(site: Site) -> None:
    def token(request: Request) -> str:
        return f"t<&>{request.url.path}"

    api = FastAPI()
    server = Server(api)
    api.include_router(make_router(site.store, PUBLIC_URL, Access(tokens=(UI_TOKEN,)), REDACTOR,
                                   csrf_token=token))  # fmt: skip
    with server:
        html = httpx.get(f"{server.url}/builds/{site.failed.id}", headers=HTML).text
    assert f'<input type="hidden" name="csrf" value="t&lt;&amp;&gt;/builds/{site.failed.id}">' in html


# --- links to Bitbucket -----------------------------------------------------------------------------
def test_a_server_build_links_to_its_pull_request_commit_and_branches(site: Site) -> None:
    api = FastAPI()
    server = Server(api)
    api.include_router(make_router(site.store, PUBLIC_URL, Access(tokens=(UI_TOKEN,)), REDACTOR,
                                   bitbucket_server_url="https://git.example.com"))  # fmt: skip
    with server:
        html = httpx.get(f"{server.url}/builds/{site.failed.id}", headers=HTML).text
    home = "https://git.example.com/projects/team/repos/webapp"
    assert f'<a href="{home}/pull-requests/12">pull request #12</a>' in html
    assert f'<a href="{home}/browse?at=refs/heads/feature/login">feature/login</a>' in html
    assert f'<a href="{home}/browse?at=refs/heads/main">main</a>' in html
    # Without the server's address, no link is made up.
    assert "git.example.com" not in get(f"{site.url}/builds/{site.failed.id}").text
