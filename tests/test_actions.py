"""Retry, cancel and finding a build (issue 16): the pure rules in tables, then the real parts: the
session's Redis and worker for builds that run, Redis database 1 (no worker reads it) for builds that
are only recorded, the `podci` command as a user runs it, and the HTTP actions and `/podci retest`
through a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from redis import Redis

from dispatch.actions import cancel, retry, retry_request
from dispatch.app import make_app
from dispatch.submit import submit
from events.options import ParseOptions
from events.payload import Envelope
from events.signature import sign
from podci.embedded import free_port
from podci.listing import branch_or_pr, duration, select
from podci.server import create_app
from schemas.action import NotPossible, UnknownBuild, may_cancel, retry_refusal
from schemas.event import Action
from schemas.record import BuildRecord, BuildState, Step, utcnow
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.corpus import OWN_FIXTURES
from testkit.gitrepo import GitServer, Repo
from testkit.servers import Server
from tests.helpers import ROOT, leftovers, wait_for
from tests.test_webhooks import other_db
from web.actions import origin_of, same_origin

DB = 1
UI_TOKEN = "actions-ui-token-for-tests"
SECRET = "actions-webhook-secret-for-tests"
TRUSTED = "alice,bruno,712020:9b3e2f6a-07c8"
SERVER_URL = "https://bitbucket.example.com/scm/team/webapp.git"
SOURCE_SHA, TARGET_SHA = "a" * 40, "b" * 40


# --- the pure parts ----------------------------------------------------------------------------------
def request(**changes: Any) -> BuildRequest:
    fields: dict[str, Any] = {
        "job": "actions", "repo": "team/actions", "source": Revision(clone_url=SERVER_URL, ref="topic"),
        "target": Revision(clone_url=SERVER_URL, ref="main"),
    }  # fmt: skip
    return BuildRequest(**{**fields, **changes})


def record_of(req: BuildRequest, state: BuildState = BuildState.succeeded, **changes: Any) -> BuildRecord:
    record = BuildRecord(id="actions-3", job=req.job, number=3, name="actions-3", request=req, steps=[],
                         state=state, **changes)  # fmt: skip
    if state.final and state is not BuildState.awaiting_approval:
        record.finished = utcnow()
    return record


@pytest.mark.parametrize(
    ("state", "number", "words"),
    [(BuildState.queued, None, "is queued: only a finished build can be retried"),
     (BuildState.running, None, "is running: only a finished build can be retried"),
     (BuildState.awaiting_approval, None, "is waiting for approval: only a finished build"),
     (BuildState.succeeded, None, None), (BuildState.failed, None, None), (BuildState.error, None, None),
     (BuildState.stopped, None, None),
     (BuildState.failed, 41, "numbered by Jenkins (BUILD_NUMBER 41): retry it in Jenkins")],
)  # fmt: skip
def test_which_builds_may_be_retried(state: BuildState, number: int | None, words: str | None) -> None:
    refusal = retry_refusal(record_of(request(number=number), state))
    assert refusal == words if words is None else words in (refusal or "")


@pytest.mark.parametrize(
    ("state", "asked", "may"),
    [(BuildState.queued, False, True), (BuildState.running, False, True), (BuildState.running, True, False),
     (BuildState.awaiting_approval, False, True), (BuildState.succeeded, False, False),
     (BuildState.stopped, True, False)],
)  # fmt: skip
def test_which_builds_a_cancel_would_stop(state: BuildState, asked: bool, may: bool) -> None:
    assert may_cancel(record_of(request(), state, cancel_requested=asked)) is may


@pytest.mark.parametrize(
    ("resolved", "source", "target"),
    [({"source_commit": SOURCE_SHA, "target_commit": TARGET_SHA}, SOURCE_SHA, TARGET_SHA),
     ({"source_commit": SOURCE_SHA}, SOURCE_SHA, None),  # a build of a branch, or no target resolved
     ({}, "c" * 12, None)],  # it failed before checkout: the commit the webhook named, if any
)  # fmt: skip
def test_a_retry_pins_the_commits_the_build_resolved(
    resolved: dict[str, str], source: str | None, target: str | None
) -> None:
    original = request(source=Revision(clone_url=SERVER_URL, ref="topic", commit="c" * 12), delivery_id="d-1")
    again = retry_request(record_of(original, **resolved), "carol")
    assert (again.source.commit, again.target.commit if again.target else None) == (source, target)
    assert (again.source.ref, again.repo, again.job) == ("topic", "team/actions", "actions")
    assert (again.triggered_by, again.event, again.delivery_id, again.number) == (
        "carol",
        "retry",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "actor", "action", "words"),
    [("/podci retest", ("bruno",), Action.retest, "bruno asked for a retest of pull request #5"),
     ("flaky db\n  /PODCI   Retest  \n", ("bruno",), Action.retest, "(/podci retest)"),
     ("/podci retest", ("chen",), Action.ignored, "chen is not trusted (PODCI_TRUSTED_AUTHORS): only a "
      "trusted person's /podci retest starts a build"),
     ("please /podci retest", ("bruno",), Action.ignored, "does not say /podci ok-to-test on a line"),
     ("/podci ok-to-test\n/podci retest", ("bruno",), Action.approve, "approved pull request #5"),
     ("/podci ok-to-test", ("chen",), Action.ignored, "only a trusted person's /podci ok-to-test"),
     # a blank or padded name from the payload: the sentence still starts with a name
     ("/podci retest", ("  ", " chen "), Action.ignored, "chen is not trusted"),
     ("/podci retest", ("  ",), Action.ignored, "unknown is not trusted")],
)  # fmt: skip
def test_pull_request_comments(text: str, actor: tuple[str, ...], action: Action, words: str) -> None:
    envelope = Envelope("bitbucket-server", "pr:comment:added", "d-1")
    decision = envelope.comment(text, "TEAM/webapp", 5, actor, ParseOptions(trusted_authors=("bruno",)))
    assert decision.action is action and decision.reason.startswith(decision.reason.strip())
    assert words in decision.reason
    assert decision.actor == ("bruno" if action is not Action.ignored else None)


SITE = {origin_of("https://ci.example.com"), origin_of("http://127.0.0.1:8080")}


@pytest.mark.parametrize(
    ("headers", "same"),
    [({"origin": "https://ci.example.com"}, True), ({"origin": "https://CI.example.com:443"}, True),
     ({"origin": "http://127.0.0.1:8080"}, True),
     ({"origin": "https://ci.example.com:8443"}, False), ({"origin": "http://ci.example.com"}, False),
     ({"origin": "https://evil.example"}, False), ({"origin": "null"}, False),
     ({"origin": "https://evil.example", "referer": "https://ci.example.com/builds/x"}, False),
     ({"referer": "https://ci.example.com/builds/x-1"}, True), ({"referer": "https://evil.example/"}, False),
     ({}, False), ({"origin": "https://ci.example.com.evil.example"}, False), ({"origin": "ftp://x"}, False)],
)  # fmt: skip
def test_which_posts_count_as_coming_from_podci_s_own_pages(headers: dict[str, str], same: bool) -> None:
    assert same_origin(headers, {o for o in SITE if o is not None}) is same


def test_the_list_s_rows() -> None:
    pr = record_of(request(pull_request=12, repo="team/a"), BuildState.failed)
    branch = record_of(request(target=None, repo="team/b"), BuildState.running)
    branch.finished = None
    assert branch_or_pr(pr) == "#12 topic → main" and branch_or_pr(branch) == "topic"
    long_ago = branch.created + timedelta(hours=2, minutes=3)
    pr.finished = pr.created + timedelta(seconds=75)
    assert duration(pr) == "1m15s" and duration(branch, long_ago) == "2h03m"
    both = [branch, pr]
    assert select(both, None, None, 5) == both and select(both, None, None, 1) == [branch]
    assert select(both, "team/a", None, 5) == [pr] and select(both, None, "running", 5) == [branch]
    assert select(both, "team/a", "running", 5) == []


# --- recorded builds on database 1 (no worker) --------------------------------------------------------
@dataclass
class Quiet:
    settings: Settings
    store: BuildStore
    app: Celery

    def add(self, state: BuildState = BuildState.succeeded, **changes: Any) -> BuildRecord:
        """A build recorded as the receiver records it, then moved to `state` as a worker would."""
        req = request(**changes)
        made = self.store.create(req, log_root="/logs", due=time.time() + 3600, waiting=not req.trusted)
        if state in (BuildState.queued, BuildState.awaiting_approval):
            return made

        def move(record: BuildRecord) -> None:
            record.state, record.step = state, None if state.final else Step.run_tests
            record.source_commit, record.target_commit = SOURCE_SHA, TARGET_SHA
            record.finished = utcnow() if state.final else None

        moved = self.store.update(made.id, move)
        assert moved is not None
        return moved

    def ids(self) -> list[str]:
        return [r.id for r in self.store.recent(1000)]


@pytest.fixture
def quiet(settings: Settings) -> Iterator[Quiet]:
    configured = other_db(settings, DB)
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    yield Quiet(configured, BuildStore(redis, configured.retention_seconds), make_app(configured))
    redis.flushdb()


def test_two_retries_at_once_make_one_build(quiet: Quiet) -> None:
    first = quiet.add(BuildState.error)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: retry(quiet.app, quiet.store, quiet.settings, first.id, f"p{i}"), range(8))
        )
    assert len({a.build_id for a in answers}) == 1 and sum(a.changed for a in answers) == 1
    new_id = answers[0].build_id
    assert sorted(quiet.ids()) == sorted([first.id, new_id])
    old, new = quiet.store.get(first.id), quiet.store.get(new_id)
    assert old is not None and new is not None
    assert (old.retried_as, new.retry_of, new.number) == (new_id, first.id, first.number + 1)
    again = retry(quiet.app, quiet.store, quiet.settings, first.id, "later")
    assert (again.build_id, again.changed) == (new_id, False) and "retried already" in again.sentence


def test_a_running_or_unknown_build_is_not_retried_and_nothing_changes(quiet: Quiet) -> None:
    running = quiet.add(BuildState.running)
    before = quiet.store.redis.get(f"podci:build:{running.id}")
    with pytest.raises(NotPossible, match="is running: only a finished build can be retried"):
        retry(quiet.app, quiet.store, quiet.settings, running.id, "carol")
    with pytest.raises(UnknownBuild, match="there is no build 'nope-1'"):
        retry(quiet.app, quiet.store, quiet.settings, "nope-1", "carol")
    with pytest.raises(UnknownBuild, match="there is no build 'nope-1'"):
        cancel(quiet.app, quiet.store, "nope-1", "carol")
    assert quiet.ids() == [running.id]
    assert quiet.store.redis.get(f"podci:build:{running.id}") == before


def test_a_retry_of_an_unapproved_build_waits_and_of_an_approved_one_runs(quiet: Quiet) -> None:
    never = quiet.add(BuildState.stopped, trusted=False, pull_request=4)
    waits = retry(quiet.app, quiet.store, quiet.settings, never.id, "bruno")
    assert "waits for approval" in waits.sentence
    assert (rec := quiet.store.get(waits.build_id)) is not None and rec.state is BuildState.awaiting_approval
    approved = quiet.add(BuildState.failed, trusted=False, pull_request=5)
    quiet.store.update(approved.id, lambda r: setattr(r, "approved_by", "bruno"))
    runs = retry(quiet.app, quiet.store, quiet.settings, approved.id, "bruno")
    assert (rec := quiet.store.get(runs.build_id)) is not None
    assert (rec.state, rec.approved_by, rec.request.trusted) == (BuildState.queued, "bruno", False)


def test_cancel_of_a_build_waiting_for_approval_stops_it_at_once_and_twice_is_a_no_op(quiet: Quiet) -> None:
    waiting = quiet.add(BuildState.awaiting_approval, trusted=False, pull_request=6)
    first = cancel(quiet.app, quiet.store, waiting.id, "carol")
    assert first.changed
    assert (rec := quiet.store.get(waiting.id)) is not None
    assert (rec.state, rec.reason) == (BuildState.stopped, "cancelled by carol") and rec.complete
    again = cancel(quiet.app, quiet.store, waiting.id, "dave")
    assert not again.changed and "already ended (stopped): nothing to cancel" in again.sentence


# --- builds that run: the session's worker ------------------------------------------------------------
GATED = "import os, time, unittest\n\nclass Gated(unittest.TestCase):\n    def test_gate(self):\n"


@pytest.mark.usefixtures("worker")
def test_a_retry_runs_the_same_commits_as_the_job_s_next_build(
    app: Celery, store: BuildStore, settings: Settings, git_server: GitServer, tmp_path: Path
) -> None:
    repo = Repo(tmp_path / "retry")
    url = git_server.add(repo)
    repo.branch("topic", {"notes.txt": "one\n"})
    req = BuildRequest(job="actions-retry", repo="team/retry", source=Revision(clone_url=url, ref="topic"),
                       target=Revision(clone_url=url, ref="main"))  # fmt: skip
    first = wait_for(store, submit(app, store, settings, req).id)
    assert first.state is BuildState.succeeded, first.reason
    repo.commit_on("topic", {"notes.txt": "two\n"})  # the branch moves on; the retry does not

    acted = retry(app, store, settings, first.id, "carol")
    assert acted.changed and acted.build_id == f"actions-retry-{first.number + 1}"
    done = wait_for(store, acted.build_id)
    assert done.state is BuildState.succeeded, done.reason
    assert (done.retry_of, done.number, done.request.triggered_by) == (first.id, first.number + 1, "carol")
    assert (done.source_commit, done.target_commit) == (first.source_commit, first.target_commit)
    assert (old := store.get(first.id)) is not None and old.retried_as == done.id
    assert leftovers(settings.state_dir, done) == []


@pytest.mark.usefixtures("worker")
def test_cancel_stops_a_running_build_and_leaves_nothing(
    app: Celery, store: BuildStore, settings: Settings, git_server: GitServer, tmp_path: Path
) -> None:
    never = tmp_path / "never"  # the tests wait for it: the build runs until cancelled
    gated = GATED + f"        while not os.path.exists({str(never)!r}):\n            time.sleep(0.1)\n"
    repo = Repo(tmp_path / "cancel", {"tests/test_gated.py": gated})
    req = BuildRequest(job="actions-cancel", repo="team/cancel",
                       source=Revision(clone_url=git_server.add(repo), ref="main"))  # fmt: skip
    build_id = submit(app, store, settings, req).id
    wait_for(store, build_id, until="run_tests")
    with pytest.raises(NotPossible, match="only a finished build can be retried"):
        retry(app, store, settings, build_id, "carol")
    acted = cancel(app, store, build_id, "carol")
    assert acted.changed and "is stopping" in acted.sentence
    assert not cancel(app, store, build_id, "dave").changed  # asked already
    done = wait_for(store, build_id)
    assert (done.state, done.reason) == (BuildState.stopped, "cancelled by carol")
    assert leftovers(settings.state_dir, done) == []
    assert "nothing to cancel" in cancel(app, store, build_id, "dave").sentence


# --- the command --------------------------------------------------------------------------------------
def podci(*args: str, quiet: Quiet) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env.update(PODCI_REDIS_URL=quiet.settings.require_redis_url(), COLUMNS="250", USER="carol",
               PODCI_STATE_DIR=str(quiet.settings.state_dir))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "podci", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_podci_builds_lists_newest_first_with_filters_and_json(quiet: Quiet) -> None:
    a1 = quiet.add(BuildState.succeeded, repo="team/a", job="ja")
    b1 = quiet.add(BuildState.failed, repo="team/b", job="jb", pull_request=12)
    a2 = quiet.add(BuildState.running, repo="team/a", job="ja")
    listed = podci("builds", "--json", quiet=quiet)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [a2.id, b1.id, a1.id]
    only_a = json.loads(podci("builds", "--repo", "team/a", "--json", quiet=quiet).stdout)
    assert [r["id"] for r in only_a] == [a2.id, a1.id]
    failed = json.loads(podci("builds", "--state", "failed", "--json", quiet=quiet).stdout)
    assert [r["id"] for r in failed] == [b1.id]
    assert [r["id"] for r in json.loads(podci("builds", "--limit", "1", "--json", quiet=quiet).stdout)] == [
        a2.id
    ]
    table = podci("builds", quiet=quiet).stdout
    for words in ("id", "branch/PR", "duration", a1.id, b1.id, "#12 topic → main", "running", "failed"):
        assert words in table
    assert podci("builds", "--repo", "team/none", quiet=quiet).stdout.strip() == "no builds match"
    bad = podci("builds", "--state", "done", quiet=quiet)
    assert bad.returncode == 2 and "'done' is not one of" in bad.stderr


def test_podci_retry_and_cancel_say_what_happened_and_exit_2_on_failure(quiet: Quiet) -> None:
    finished, running = quiet.add(BuildState.error), quiet.add(BuildState.running)
    unknown = podci("retry", "nope-9", quiet=quiet)
    assert unknown.returncode == 2 and "there is no build 'nope-9'" in unknown.stderr
    refused = podci("retry", running.id, quiet=quiet)
    assert refused.returncode == 2 and "only a finished build can be retried" in refused.stderr
    done = podci("retry", finished.id, quiet=quiet)
    assert done.returncode == 0 and f"retries build {finished.id}" in done.stdout
    again = podci("retry", finished.id, quiet=quiet)
    assert again.returncode == 0 and "was retried already" in again.stdout
    stopping = podci("cancel", running.id, quiet=quiet)
    assert stopping.returncode == 0 and "is stopping" in stopping.stdout
    assert (rec := quiet.store.get(running.id)) is not None and rec.cancel_reason == "cancelled by carol"
    nothing = podci("cancel", finished.id, quiet=quiet)
    assert nothing.returncode == 0 and "nothing to cancel" in nothing.stdout
    assert podci("cancel", "nope-9", quiet=quiet).returncode == 2
    down = quiet.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    unreachable = podci("cancel", running.id, quiet=Quiet(down, quiet.store, quiet.app))
    assert unreachable.returncode == 2 and "does not answer" in unreachable.stderr


def test_podci_version_is_the_package_s(quiet: Quiet) -> None:
    shown = podci("--version", quiet=quiet)
    assert shown.returncode == 0 and shown.stdout.strip() == f"podci {version('podci')}"


def test_the_readme_documents_the_new_commands_and_their_options(quiet: Quiet) -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("builds", "retry", "cancel"):
        assert f"`podci {command}" in readme
        helped = podci(command, "--help", quiet=quiet).stdout
        for option in (word.strip(",") for word in helped.split() if word.startswith("--")):
            assert option == "--help" or option in readme, f"{command} {option}"
    assert "podci --version" in readme and "/podci retest" in readme


# --- over HTTP: the page's buttons and `/podci retest` -------------------------------------------------
@dataclass
class Site:
    url: str
    quiet: Quiet


@pytest.fixture
def site(quiet: Quiet) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    configured = quiet.settings.model_copy()
    configured = Settings(**{**configured.model_dump(), "ui_tokens": UI_TOKEN, "public_url": url,
                             "bitbucket_cloud_secret": SECRET, "bitbucket_server_secret": SECRET,
                             "trusted_authors": TRUSTED})  # fmt: skip
    with Server(create_app(configured, quiet.app, quiet.store.redis), port=port):
        yield Site(url, quiet)


def test_the_buttons_need_a_login_and_a_post_from_podci_s_own_pages(site: Site) -> None:
    finished, queued = site.quiet.add(BuildState.failed), site.quiet.add(BuildState.queued)
    retry_url = f"{site.url}/builds/{finished.id}/retry"
    cookie = {"podci_token": UI_TOKEN}
    anonymous = httpx.post(retry_url, headers={"Origin": site.url})
    assert anonymous.status_code == 401 and "Log in" in anonymous.text
    foreign = httpx.post(retry_url, cookies=cookie, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "nothing was done" in foreign.text
    no_origin = httpx.post(retry_url, cookies=cookie)
    assert no_origin.status_code == 403
    assert sorted(site.quiet.ids()) == sorted([finished.id, queued.id])  # nothing was started

    done = httpx.post(retry_url, cookies=cookie, headers={"Origin": site.url})
    assert done.status_code == 303, done.text
    new_id = done.json()["build_id"]
    assert done.headers["location"] == f"../{new_id}"
    assert httpx.URL(retry_url).join(done.headers["location"]).path == f"/builds/{new_id}"
    assert (rec := site.quiet.store.get(finished.id)) is not None and rec.retried_as == new_id
    pages = {
        b: httpx.get(f"{site.url}/builds/{b}", cookies=cookie).text for b in (finished.id, new_id, queued.id)
    }
    assert f'<a href="{new_id}">{new_id}</a>' in pages[finished.id]  # linked both ways, relatively
    assert f'<a href="{finished.id}">{finished.id}</a>' in pages[new_id]
    assert f'action="{finished.id}/retry"' in pages[finished.id] and "/cancel" not in pages[finished.id]
    assert f'action="{queued.id}/cancel"' in pages[queued.id] and "/retry" not in pages[queued.id]

    bearer = {"Authorization": f"Bearer {UI_TOKEN}", "Accept": "application/json"}  # a script: no Origin
    again = httpx.post(retry_url, headers=bearer)
    assert again.status_code == 303 and again.json() == {
        "build_id": new_id, "reason": f"build {finished.id} was retried already as {new_id}", "changed": False
    }  # fmt: skip
    conflict = httpx.post(f"{site.url}/builds/{queued.id}/retry", headers=bearer)
    assert conflict.status_code == 409 and "only a finished build" in conflict.json()["error"]
    missing = httpx.post(f"{site.url}/builds/nope-3/cancel", headers=bearer)
    assert missing.status_code == 404 and "there is no build 'nope-3'" in missing.json()["error"]

    referer = {"Referer": f"{site.url}/builds/{queued.id}"}
    stopping = httpx.post(f"{site.url}/builds/{queued.id}/cancel", cookies=cookie, headers=referer)
    assert stopping.status_code == 303 and stopping.headers["location"] == f"../{queued.id}"
    assert (rec := site.quiet.store.get(queued.id)) is not None
    assert rec.cancel_reason == "cancelled by a page token holder"


def finish(record: BuildRecord) -> None:
    record.state, record.step, record.finished = BuildState.error, None, utcnow()


def comment(sender: str, text: str, actor: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    """The corpus's `/podci retest` comment of `sender`, said by `actor` (a Server user name, or a
    Cloud account id), signed with the test secret."""
    name = "bitbucket-server/pr-comment-added-retest" if sender == "server" else (
        "bitbucket-cloud/pullrequest-comment-retest")  # fmt: skip
    body = json.loads((OWN_FIXTURES / f"{name}.json").read_text())
    headers = json.loads((OWN_FIXTURES / f"{name}.headers.json").read_text())
    if sender == "server":
        body["comment"]["text"], body["actor"]["name"], body["actor"]["slug"] = text, actor, actor
        headers["X-Request-Id"] = delivery
    else:
        body["comment"]["content"]["raw"], body["actor"]["account_id"] = text, actor
        body["actor"]["uuid"] = "{" + actor.replace(":", "-") + "}"
        headers["X-Request-UUID"] = delivery
    raw = json.dumps(body).encode()
    return raw, {**headers, "X-Hub-Signature": sign(raw, SECRET)}


@pytest.mark.parametrize(
    ("sender", "provider", "repo", "number", "trusted", "untrusted"),
    [("server", "bitbucket-server", "TEAM/webapp", 32, "bruno", "chen"),
     ("cloud", "bitbucket-cloud", "team/webapp", 13, "712020:9b3e2f6a-07c8", "712020:1c4d8e2b-5f90")],
)  # fmt: skip
def test_podci_retest_from_a_trusted_author_retries_the_pull_request_s_newest_build(
    site: Site, sender: str, provider: str, repo: str, number: int, trusted: str, untrusted: str
) -> None:
    hook = site.url + "/hooks/bitbucket"

    def say(text: str, actor: str, delivery: str) -> httpx.Response:
        raw, headers = comment(sender, text, actor, delivery)
        return httpx.post(hook, content=raw, headers=headers)

    none = say("/podci retest", trusted, "d-0")
    assert none.json()["action"] == "ignored"
    assert none.json()["reason"].endswith(f", but pull request #{number} has no build to retest")
    pr = {"provider": provider, "repo": repo, "pull_request": number}
    older = site.quiet.add(BuildState.succeeded, **pr)
    running = site.quiet.add(BuildState.running, **pr)
    busy = say("/podci retest", trusted, "d-1")
    assert busy.json()["action"] == "ignored"
    assert (
        f"(/podci retest), but its build {running.id} is running: nothing to retest" in busy.json()["reason"]
    )
    site.quiet.store.update(running.id, finish)

    refused = say("flaky\n/podci retest", untrusted, "d-2")
    assert refused.status_code == 200 and refused.json()["action"] == "ignored"
    assert "is not trusted (PODCI_TRUSTED_AUTHORS)" in refused.json()["reason"]
    assert sorted(site.quiet.ids()) == sorted([older.id, running.id])  # nothing started

    started = say("flaky\n/podci retest", trusted, "d-3")
    assert started.status_code == 202, started.text
    assert started.json()["action"] == "retest" and f"retries build {running.id}" in started.json()["reason"]
    new = site.quiet.store.get(started.json()["build_id"])
    assert new is not None and (new.retry_of, new.request.pull_request) == (running.id, number)
    assert new.request.triggered_by == trusted and new.state is BuildState.queued
    redelivered = say("flaky\n/podci retest", trusted, "d-3")
    assert redelivered.json()["action"] == "duplicate"
    assert len(site.quiet.ids()) == 3
