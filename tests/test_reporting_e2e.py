"""Statuses where people look: webhooks in, through a real worker, statuses out to stand-ins that check
every request against the API notes (see `testkit.bitbucket.StandIn`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from dispatch.app import make_app
from podci.embedded import free_port
from podci.server import create_app
from schemas.record import BuildRecord, BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.bitbucket import StandIn
from testkit.corpus import OWN_FIXTURES
from testkit.gitrepo import GitServer, Repo
from testkit.servers import Recorder, Server
from tests.conftest import FAST
from tests.helpers import Worker, wait_for, wait_until
from tests.test_pages import UI_TOKEN
from tests.test_webhooks import (
    JENKINS_TOKEN,
    SLOW_TESTS,
    TRUSTED_AUTHORS,
    WEBHOOK_SECRET,
    other_db,
    post,
    server_pr,
)

CLOUD_TOKEN, SERVER_TOKEN = "cloud-token-for-e2e", "server-token-for-e2e"


@dataclass
class Stack:
    api: str
    store: BuildStore
    cloud: StandIn
    server: StandIn
    repo: Repo
    tmp: Path
    url: str  # where the repository is served (a webhook names only URLs, never paths)
    callback_port: int


@pytest.fixture(scope="module")
def stack(
    settings: Settings,
    worker_env: dict[str, str],
    git_server: GitServer,
    callback_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Receiver, worker and stand-ins on a Redis database of their own."""
    tmp = tmp_path_factory.mktemp("reporting")
    cloud = StandIn("cloud", "/unset", f"Bearer {CLOUD_TOKEN}")
    server = StandIn("server", "/unset", f"Bearer {SERVER_TOKEN}")
    port = free_port()
    configured = other_db(settings, 8, public_url=f"http://127.0.0.1:{port}", state_dir=tmp / "state",
                          bitbucket_cloud_secret=WEBHOOK_SECRET, bitbucket_server_secret=WEBHOOK_SECRET,
                          jenkins_token=JENKINS_TOKEN, ui_tokens=UI_TOKEN,
                          trusted_authors=TRUSTED_AUTHORS)  # fmt: skip
    env = {
        **worker_env,
        **FAST,
        "PODCI_REDIS_URL": configured.require_redis_url(),
        "PODCI_STATE_DIR": str(tmp / "state"),
        "PODCI_PUBLIC_URL": configured.public_url,
        "PODCI_REPORT_BACKOFF_MAX": "1",
        "PODCI_BITBUCKET_CLOUD_API_URL": cloud.url,
        "PODCI_BITBUCKET_CLOUD_TOKEN": CLOUD_TOKEN,
        "PODCI_BITBUCKET_SERVER_URL": server.url,
        "PODCI_BITBUCKET_SERVER_TOKEN": SERVER_TOKEN,
    }
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    worker = Worker(env, tmp / "worker.log")
    worker.start()
    try:
        with Server(create_app(configured, make_app(configured), redis), port=port) as api:
            repo = Repo(tmp / "team")
            url = git_server.add(repo, "e2e-team")
            yield Stack(api.url, BuildStore(redis), cloud, server, repo, tmp, url, callback_port)
    finally:
        worker.stop()
        cloud.close()
        server.close()
        redis.flushdb()


def reported(store: BuildStore, build_id: str, reporter: str, state: str) -> BuildRecord:
    def done() -> BuildRecord | None:
        record = store.get(build_id)
        return record if record is not None and record.reported.get(reporter) == state else None

    return wait_until(done, timeout=60)


def cloud_pr(stack: Stack, branch: str, sha: str) -> dict[str, Any]:
    body = json.loads((OWN_FIXTURES / "bitbucket-cloud/pullrequest-created.json").read_bytes())
    pr = body["pullrequest"]
    for side, commit in (("source", sha), ("destination", stack.repo.head("main"))):
        pr[side]["repository"]["links"]["html"]["href"] = stack.url.removesuffix(".git")
        pr[side]["commit"]["hash"] = commit
    pr["source"]["branch"]["name"], pr["destination"]["branch"]["name"] = branch, "main"
    return body


def check_posts(stand_in: StandIn, build: BuildRecord, api: str, final: str) -> None:
    states = [seen.body["state"] for seen in stand_in.seen if seen.problems == []]
    assert states == ["INPROGRESS", final], [(s.body, s.problems) for s in stand_in.seen]
    bodies = [seen.body for seen in stand_in.seen]
    # a failed build's final status opens its page at the failing tests
    assert all(body["url"].removesuffix("#failing-tests") == f"{api}/builds/{build.id}" for body in bodies)
    assert len({body["key"] for body in bodies}) == 1
    assert httpx.get(bodies[-1]["url"]).status_code == 401  # the status links to a page behind a login
    page = httpx.get(bodies[-1]["url"], headers={"Authorization": f"Bearer {UI_TOKEN}"})
    assert page.status_code == 200 and build.id in page.text


def test_bitbucket_cloud_pull_request_posts_inprogress_then_success_once(stack: Stack) -> None:
    sha = stack.repo.branch("cloud-topic", {"notes.txt": "cloud\n"})
    stack.cloud.path = f"/2.0/repositories/team/webapp/commit/{sha}/statuses/build"
    headers = {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "e2e-cloud"}
    reply = post(stack.api, cloud_pr(stack, "cloud-topic", sha), headers, secret=WEBHOOK_SECRET)
    assert reply.status_code == 202, reply.text
    build = reported(stack.store, reply.json()["build_id"], "bitbucket-cloud", "SUCCESSFUL")
    assert build.state is BuildState.succeeded
    check_posts(stack.cloud, build, stack.api, "SUCCESSFUL")
    assert len(stack.cloud.seen[0].body["key"]) <= 40


def test_a_fork_s_pull_request_shows_waiting_for_approval_until_a_trusted_person_approves(
    stack: Stack,
) -> None:
    stack.cloud.seen.clear()
    sha = stack.repo.branch("fork-topic", {"notes.txt": "from a fork\n"})
    stack.cloud.path = f"/2.0/repositories/team/webapp/commit/{sha}/statuses/build"
    body = cloud_pr(stack, "fork-topic", sha)
    body["pullrequest"]["source"]["repository"]["full_name"] = "chen-wei/webapp"  # a stranger's fork
    body["pullrequest"]["author"] = {"account_id": "712020:1c4d8e2b-5f90", "display_name": "Chen Wei"}
    opened = post(stack.api, body, {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "e2e-fork"},
                  secret=WEBHOOK_SECRET)  # fmt: skip
    assert opened.status_code == 202, opened.text
    build_id = opened.json()["build_id"]
    waiting = reported(stack.store, build_id, "bitbucket-cloud", "INPROGRESS (waiting for approval)")
    assert waiting.state is BuildState.awaiting_approval and waiting.step_record("checkout").started is None
    first = stack.cloud.seen[0].body
    assert first["state"] == "INPROGRESS" and first["description"].startswith("waiting for approval")

    approval = json.loads((OWN_FIXTURES / "bitbucket-cloud/pullrequest-comment-ok-to-test.json").read_bytes())
    approval["pullrequest"] = body["pullrequest"]
    reply = post(stack.api, approval, {"X-Event-Key": "pullrequest:comment_created",
                                       "X-Request-UUID": "e2e-approval"}, secret=WEBHOOK_SECRET)  # fmt: skip
    assert reply.json()["action"] == "approve", reply.text
    build = reported(stack.store, build_id, "bitbucket-cloud", "SUCCESSFUL")
    assert build.approved_by == "712020:9b3e2f6a-07c8"
    states = [seen.body["state"] for seen in stack.cloud.seen if seen.problems == []]
    assert states == ["INPROGRESS", "INPROGRESS", "SUCCESSFUL"]


def test_bitbucket_server_failed_build_posts_inprogress_then_failed_once(stack: Stack) -> None:
    stack.server.seen.clear()
    failing = (
        "import unittest\n\nclass T(unittest.TestCase):\n    def test_no(self):\n        self.fail('nope')\n"
    )
    sha = stack.repo.branch("server-topic", {"tests/test_no.py": failing})
    stack.server.path = f"/rest/api/latest/projects/TEAM/repos/webapp/commits/{sha}/builds"
    reply = post(stack.api, server_pr("pr:opened", 31, stack.repo, "server-topic", sha, stack.url),
                 {"X-Event-Key": "pr:opened", "X-Request-Id": "e2e-server"},
                 secret=WEBHOOK_SECRET)  # fmt: skip
    assert reply.status_code == 202, reply.text
    build = reported(stack.store, reply.json()["build_id"], "bitbucket-server", "FAILED")
    assert build.state is BuildState.failed
    check_posts(stack.server, build, stack.api, "FAILED")


def test_jenkins_callback_gets_the_final_record_once(stack: Stack) -> None:
    with Recorder(port=stack.callback_port) as jenkins:
        body = {"job": "e2e-jenkins", "build_number": 3, "clone_url": stack.url,
                "source_branch": "main", "callback_url": jenkins.url + "/done"}  # fmt: skip
        reply = post(stack.api, body, {"X-Podci-Token": JENKINS_TOKEN}, path="/hooks/jenkins")
        assert reply.status_code == 202, reply.text
        reported(stack.store, "e2e-jenkins-3", "jenkins-callback", "succeeded")
        assert len(jenkins.received) == 1
    assert json.loads(jenkins.received[0][2])["state"] == "succeeded"


def test_an_outage_during_the_final_report_is_retried_and_changes_nothing(stack: Stack) -> None:
    stack.cloud.seen.clear()
    sha = stack.repo.branch("outage", {"tests/test_slow.py": SLOW_TESTS.replace("sleep(3)", "sleep(1)")})
    stack.cloud.path = f"/2.0/repositories/team/webapp/commit/{sha}/statuses/build"
    headers = {"X-Event-Key": "pullrequest:updated", "X-Request-UUID": "e2e-outage"}
    reply = post(stack.api, cloud_pr(stack, "outage", sha), headers, secret=WEBHOOK_SECRET)
    build_id = reply.json()["build_id"]
    reported(stack.store, build_id, "bitbucket-cloud", "INPROGRESS")
    stack.cloud.status, stack.cloud.reply = 503, '{"error": "down for maintenance"}'
    finished = wait_for(stack.store, build_id)
    assert finished.state is BuildState.succeeded
    wait_until(lambda: len(stack.cloud.seen) >= 3)  # INPROGRESS, then at least two refused finals
    stack.cloud.status = None
    build = reported(stack.store, build_id, "bitbucket-cloud", "SUCCESSFUL")
    assert build.state is BuildState.succeeded and build.finished == finished.finished
    states = [seen.body["state"] for seen in stack.cloud.seen]
    assert states[0] == "INPROGRESS" and states[-1] == "SUCCESSFUL" and states.count("SUCCESSFUL") >= 3
    accepted = [s for s in stack.cloud.seen[1:] if s.body["state"] == "SUCCESSFUL"]
    assert accepted  # the last one went through once the outage ended


def test_a_report_lock_left_by_a_killed_worker_is_waited_out_not_a_minute_more(settings: Settings) -> None:
    # A worker SIGKILLed while posting leaves its (build, reporter) lock until it expires. Re-sending the
    # final report meanwhile only finds it busy, and the next look used to be a minute later (a final
    # status posted two minutes late, in the fault runs): look again when the lock goes instead.
    from types import SimpleNamespace

    from schemas.request import BuildRequest, Revision
    from store.builds import REPORT_DUE
    from store.keys import report_lock
    from workers.notify import resend_reports
    from workers.process import ProcessResources

    isolated = other_db(settings, 14)
    proc = ProcessResources(isolated)
    proc.store.redis.flushdb()
    try:
        request = BuildRequest(job="locked", repo="team/webapp", callback_url="http://127.0.0.1:9/callback",
                               source=Revision(clone_url="/nonexistent", ref="main"))  # fmt: skip
        record = proc.store.create(request, log_root="/nonexistent", due=0)

        def complete(r: BuildRecord) -> None:
            r.state, r.finished, r.step = BuildState.succeeded, r.created, None

        proc.store.update(record.id, complete, due=0)  # completed; its report due at once
        proc.store.redis.set(report_lock(record.id, "jenkins-callback"), "a dead worker's", px=5000)
        sent: list[object] = []
        app = SimpleNamespace(send_task=lambda *args, **kwargs: sent.append(args))
        assert resend_reports(app, proc, grace=3) == 0 and sent == []  # it would only find the lock
        due = proc.store.redis.zscore(REPORT_DUE, record.id)
        assert due is not None and due < time.time() + 10  # when the lock expires (5 s), not in 60 s
        proc.store.redis.delete(report_lock(record.id, "jenkins-callback"))
        proc.store.redis.zadd(REPORT_DUE, {record.id: 0})
        assert resend_reports(app, proc, grace=3) == 1  # lock gone: the report goes again
    finally:
        proc.store.redis.flushdb()


# --- Code Insights: a report and an annotation per failed test, replaced by a rebuild -----------------

JUNIT_POD = "containers:\n  - name: tests\n    image: none\n    command: [sleep, infinity]\n"
FIRST_RUN = """<testsuite tests="3">
<testcase classname="tests.test_counter.Counter" name="test_adds">
<failure message="2 != 3">Traceback (most recent call last):
  File "/workspace/tests/test_counter.py", line 12, in test_adds
    self.assertEqual(add(1, 1), 3)
AssertionError: 2 != 3</failure></testcase>
<testcase classname="tests.test_counter.Counter" name="test_resets" file="tests/test_counter.py" line="20">
<failure message="counter is 1 after reset"/></testcase>
<testcase classname="tests.test_counter.Counter" name="test_ok"/></testsuite>"""
SECOND_RUN = """<testsuite tests="3"><testcase classname="tests.test_counter.Counter" name="test_adds"/>
<testcase classname="tests.test_counter.Counter" name="test_resets" file="tests/test_counter.py" line="20">
<failure message="counter is 1 after reset"/></testcase>
<testcase classname="tests.test_counter.Counter" name="test_ok"/></testsuite>"""


def junit_files(flag: Path) -> dict[str, str]:
    """Two failing tests, then (once `flag` exists: a retry of the same commit) one."""
    command = f"if [ -f {flag} ]; then cp second.xml report.xml; else cp first.xml report.xml; fi; exit 1"
    config = (
        f'test:\n  container: tests\n  command: "{command}"\n  junit: report.xml\nsetup:\n  ready: true\n'
    )
    return {".podci.yml": config, ".podci/pod.yaml": JUNIT_POD, "first.xml": FIRST_RUN,
            "second.xml": SECOND_RUN}  # fmt: skip


def the_report(stand_in: StandIn, sha: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [(commit, key)] = [where for where in stand_in.insights.reports if where[0] == sha]
    report = stand_in.insights.report(commit, key)
    assert report is not None
    return report, stand_in.insights.notes(commit, key)


def counts(report: dict[str, Any]) -> dict[str, Any]:
    return {d["title"]: d["value"] for d in report["data"] if d["type"] == "NUMBER"}


def test_a_failing_build_leaves_a_report_with_an_annotation_per_failed_test_and_a_retry_replaces_it(
    stack: Stack,
) -> None:
    flag = stack.tmp / "second-run"
    sha = stack.repo.branch("insights", junit_files(flag))
    stack.cloud.path = f"/2.0/repositories/team/webapp/commit/{sha}/statuses/build"
    headers = {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "e2e-insights"}
    reply = post(stack.api, cloud_pr(stack, "insights", sha), headers, secret=WEBHOOK_SECRET)
    assert reply.status_code == 202, reply.text
    first = reported(stack.store, reply.json()["build_id"], "bitbucket-cloud-insights", "report FAILED 2/3")
    report, notes = the_report(stack.cloud, sha)
    assert report["result"] == "FAILED" and counts(report) == {"Tests": 3, "Failed": 2, "Skipped": 0,
                                                               "Pod attempts": 1}  # fmt: skip
    assert sorted((n["path"], n.get("line")) for n in notes) == [
        ("tests/test_counter.py", 12),  # from the traceback
        ("tests/test_counter.py", 20),  # from the JUnit attributes
    ]
    anchors = {n["link"].removeprefix(f"{stack.api}/builds/{first.id}#") for n in notes}
    assert anchors == {"test-1", "test-2"}  # the page at each test
    page = httpx.get(f"{stack.api}/builds/{first.id}", headers={"Authorization": f"Bearer {UI_TOKEN}"})
    assert all(f'id="{anchor}"' in page.text for anchor in anchors)

    flag.write_text("the retry sees one failure\n")
    retried = httpx.post(
        f"{stack.api}/builds/{first.id}/retry", headers={"Authorization": f"Bearer {UI_TOKEN}"}
    )
    assert retried.status_code == 303, retried.text
    reported(stack.store, retried.json()["build_id"], "bitbucket-cloud-insights", "report FAILED 1/3")
    report, notes = the_report(stack.cloud, sha)  # the same commit and job: the same report, replaced
    assert counts(report)["Failed"] == 1
    assert [n["summary"] for n in notes] == [
        "tests.test_counter.Counter.test_resets failed: counter is 1 after reset"
    ]
    assert all(call.problems == [] for call in stack.cloud.insights.seen)


def test_bitbucket_server_gets_the_report_and_a_status_for_required_builds(stack: Stack) -> None:
    sha = stack.repo.branch("server-insights", junit_files(stack.tmp / "never"))
    stack.server.path = f"/rest/api/latest/projects/TEAM/repos/webapp/commits/{sha}/builds"
    stack.server.seen.clear()
    body = server_pr("pr:opened", 32, stack.repo, "server-insights", sha, stack.url)
    reply = post(stack.api, body, {"X-Event-Key": "pr:opened", "X-Request-Id": "e2e-server-insights"},
                 secret=WEBHOOK_SECRET)  # fmt: skip
    assert reply.status_code == 202, reply.text
    reported(stack.store, reply.json()["build_id"], "bitbucket-server-insights", "report FAIL 2/3")
    report, notes = the_report(stack.server, sha)
    assert report["result"] == "FAIL" and counts(report)["Failed"] == 2
    assert sorted(n["line"] for n in notes) == [12, 20] and all(n["type"] == "BUG" for n in notes)
    reported(stack.store, reply.json()["build_id"], "bitbucket-server", "FAILED")
    statuses = [s.body for s in stack.server.seen if s.problems == []]
    assert {(s["ref"], s["parent"]) for s in statuses} == {
        ("refs/heads/server-insights", "podci-TEAM/webapp")
    }
