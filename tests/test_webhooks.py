"""Webhooks through real HTTP (uvicorn) into a real Redis, and builds out through the real worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from dispatch.app import make_app
from events.signature import sign
from podci.server import create_app
from schemas.record import BuildRecord, BuildState, utcnow
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.corpus import DEFAULT_OPTIONS, OWN_FIXTURES, Case, load
from testkit.gitrepo import GitServer, Repo
from testkit.servers import Recorder, Server
from tests.helpers import leftovers, wait_for, wait_until

pytestmark = pytest.mark.usefixtures("worker")

JENKINS_TOKEN = "jenkins-token-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"
# Alice writes the pull requests here, Bruno approves forks' (a Server user name, the corpus's Cloud
# account ids).
TRUSTED_AUTHORS = "alice,712020:5e8a7c1d-44b2,712020:9b3e2f6a-07c8"
SLOW_TESTS = "import time, unittest\n\nclass Slow(unittest.TestCase):\n    def test_slow(self):\n"
SLOW_TESTS += "        time.sleep(3)\n"


def configure(settings: Settings, **updates: Any) -> Settings:
    """A validated copy (secrets become SecretStr), unlike `model_copy`."""
    return Settings(**{**settings.model_dump(), **updates})


def other_db(settings: Settings, db: int, **updates: Any) -> Settings:
    """A Redis database no worker listens on: builds are recorded and queued, never run."""
    assert settings.redis_url is not None
    return configure(settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + f"/{db}", **updates)


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    """The receiver in front of the session's worker, with a Jenkins token and Bitbucket secrets."""
    configured = configure(
        settings,
        jenkins_token=JENKINS_TOKEN,
        bitbucket_cloud_secret=WEBHOOK_SECRET,
        bitbucket_server_secret=WEBHOOK_SECRET,
        trusted_authors=TRUSTED_AUTHORS,
    )
    with Server(create_app(configured)) as server:
        yield server.url


def server_pr(
    event: str, pr: int, repo: Repo, branch: str, commit: str, url: str, target: str = "main"
) -> dict[str, Any]:
    """A Bitbucket Server pull request event about a test repository served at `url`."""

    def ref(name: str, sha: str) -> dict[str, Any]:
        links = {"clone": [{"name": "http", "href": url}]}
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": sha,
                "repository": {"slug": "webapp", "project": {"key": "TEAM"}, "links": links}}  # fmt: skip

    target_sha = repo.head(target)
    author = {"user": {"name": "alice"}}
    pull_request = {
        "id": pr,
        "fromRef": ref(branch, commit),
        "toRef": ref(target, target_sha),
        "author": author,
    }
    return {"eventKey": event, "actor": {"name": "alice"}, "pullRequest": pull_request}


def post(
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
    path: str = "/hooks/bitbucket",
    secret: str | None = None,
) -> httpx.Response:
    """POST a webhook; with `secret`, signed as Bitbucket signs it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = {"X-Hub-Signature": sign(raw, secret)} if secret else {}
    return httpx.post(
        url + path, content=raw, headers={"Content-Type": "application/json", **signature, **(headers or {})}
    )


def test_healthz(api: str) -> None:
    assert httpx.get(api + "/healthz").json() == {"status": "ok", "redis": "ok"}
    assert "/hooks/bitbucket" in httpx.get(api + "/openapi.json").json()["paths"]


def test_a_new_head_commit_stops_the_older_build(
    api: str, store: BuildStore, settings: Settings, git_server: GitServer, tmp_path
) -> None:
    repo = Repo(tmp_path / "pr", {"tests/test_slow.py": SLOW_TESTS})
    url = git_server.add(repo)
    first_sha = repo.branch("topic", {"notes.txt": "one\n"})
    first = post(api, server_pr("pr:opened", 7, repo, "topic", first_sha, url),
                 {"X-Event-Key": "pr:opened", "X-Request-Id": "d-1"}, secret=WEBHOOK_SECRET)  # fmt: skip
    assert first.status_code == 202, first.text
    first_id = first.json()["build_id"]
    wait_for(store, first_id, until="run_tests")

    second_sha = repo.commit_on("topic", {"notes.txt": "two\n"})
    second = post(api, server_pr("pr:from_ref_updated", 7, repo, "topic", second_sha, url),
                  {"X-Event-Key": "pr:from_ref_updated", "X-Request-Id": "d-2"},
                  secret=WEBHOOK_SECRET)  # fmt: skip
    assert second.status_code == 202, second.text
    assert second.json()["superseded"] == [first_id]

    stopped = wait_for(store, first_id)
    assert stopped.state is BuildState.stopped
    assert stopped.reason == f"superseded by build {second.json()['build_id']}"
    assert leftovers(settings.state_dir, stopped) == []  # its pod, volume and ports are gone
    running = store.get(second.json()["build_id"])
    assert running is not None and not running.cancel_requested
    assert wait_for(store, running.id).state is BuildState.succeeded


def test_merged_pull_request_stops_its_builds(
    api: str, store: BuildStore, settings: Settings, git_server: GitServer, tmp_path
) -> None:
    # its tests wait for a file nobody creates: the build is still running when the merge arrives
    never = tmp_path / "never"
    gated = "import os, time, unittest\n\nclass Gated(unittest.TestCase):\n    def test_gate(self):\n"
    gated += f"        while not os.path.exists({str(never)!r}):\n            time.sleep(0.1)\n"
    repo = Repo(tmp_path / "merge", {"tests/test_gated.py": gated})
    url = git_server.add(repo)
    sha = repo.branch("topic", {"notes.txt": "x\n"})
    started = post(
        api,
        server_pr("pr:opened", 8, repo, "topic", sha, url),
        {"X-Event-Key": "pr:opened"},
        secret=WEBHOOK_SECRET,
    )
    build_id = started.json()["build_id"]
    wait_for(store, build_id, until="run_tests")
    merged = post(
        api,
        server_pr("pr:merged", 8, repo, "topic", sha, url),
        {"X-Event-Key": "pr:merged"},
        secret=WEBHOOK_SECRET,
    )
    assert merged.status_code == 200
    assert merged.json()["action"] == "cancel" and merged.json()["builds"] == [build_id]
    done = wait_for(store, build_id)
    assert done.state is BuildState.stopped
    assert leftovers(settings.state_dir, done) == []


def test_redelivery_and_second_event_for_one_head_start_one_build(
    api: str, store: BuildStore, git_server: GitServer, tmp_path
) -> None:
    repo = Repo(tmp_path / "dup")
    url = git_server.add(repo)
    sha = repo.branch("topic", {"notes.txt": "x\n"})
    body = server_pr("pr:opened", 9, repo, "topic", sha, url)
    first = post(api, body, {"X-Event-Key": "pr:opened", "X-Request-Id": "same"}, secret=WEBHOOK_SECRET)
    again = post(api, body, {"X-Event-Key": "pr:opened", "X-Request-Id": "same"}, secret=WEBHOOK_SECRET)
    other = post(api, server_pr("pr:from_ref_updated", 9, repo, "topic", sha, url),
                 {"X-Event-Key": "pr:from_ref_updated", "X-Request-Id": "different"},
                 secret=WEBHOOK_SECRET)  # fmt: skip
    assert first.status_code == 202
    build_id = first.json()["build_id"]
    for reply in (again, other):
        assert reply.status_code == 200
        assert reply.json()["action"] == "duplicate" and reply.json()["build_id"] == build_id
    assert wait_for(store, build_id).state is BuildState.succeeded  # and the one build runs


def test_jenkins_trigger_posts_the_result_to_its_callback(
    api: str, store: BuildStore, git_server: GitServer, callback_port: int, tmp_path
) -> None:
    repo = Repo(tmp_path / "jenkins")
    with Recorder(port=callback_port) as jenkins:
        body = {"job": "webapp-ci", "build_number": 41, "clone_url": git_server.add(repo),
                "source_branch": "main", "callback_url": jenkins.url + "/podci-result"}  # fmt: skip
        refused = post(api, body, path="/hooks/jenkins")
        assert refused.status_code == 401 and "X-Podci-Token" in refused.json()["error"]
        reply = post(api, body, {"X-Podci-Token": JENKINS_TOKEN}, path="/hooks/jenkins")
        assert reply.status_code == 202, reply.text
        assert reply.json()["build_id"] == "webapp-ci-41"  # JOB_NAME-BUILD_NUMBER
        done = wait_for(store, "webapp-ci-41")
        assert done.state is BuildState.succeeded, done.reason
        reported = wait_until(lambda: (store.get("webapp-ci-41") or done).reported)
        assert reported == {"jenkins-callback": "succeeded"}
        [(path, headers, raw)] = jenkins.received
    posted = json.loads(raw)
    assert path == "/podci-result" and headers["Content-Type"] == "application/json"
    assert (posted["id"], posted["state"], posted["number"]) == ("webapp-ci-41", "succeeded", 41)
    assert posted["finished"] is not None
    again = post(api, body, {"X-Podci-Token": JENKINS_TOKEN}, path="/hooks/jenkins")
    assert again.json()["action"] == "duplicate"  # the same Jenkins build number twice


def test_repository_concurrency_limit_keeps_arrival_order(
    api: str, store: BuildStore, git_server: GitServer, tmp_path
) -> None:
    repo = Repo(tmp_path / "limit", {"tests/test_slow.py": SLOW_TESTS.replace("sleep(3)", "sleep(1)")})
    url = git_server.add(repo)
    ids = []
    for number in range(1, 7):
        body = {"job": "limited", "build_number": number, "clone_url": url}
        body |= {"source_branch": "main", "repo": "team/limited"}
        ids.append(
            post(api, body, {"X-Podci-Token": JENKINS_TOKEN}, path="/hooks/jenkins").json()["build_id"]
        )
    done = [wait_for(store, i, timeout=120) for i in ids]
    assert [r.state for r in done] == [BuildState.succeeded] * 6
    starts = [r.step_record("checkout").started for r in done]
    finishes = [r.finished for r in done]
    assert None not in starts and None not in finishes
    # at most four (PODCI_REPO_CONCURRENCY's default) run at once; the last two wait in `queued`
    # until one of the first four has finished, never overtaking an earlier arrival
    assert max(starts[:4]) <= min(starts[4:])  # type: ignore[type-var]
    assert min(starts[4:]) >= min(finishes[:4])  # type: ignore[type-var]
    spans = list(zip(starts, finishes, strict=True))
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)  # type: ignore[operator]
    assert most <= 4


@pytest.fixture
def quiet(settings: Settings) -> Iterator[tuple[str, Redis]]:
    """A receiver on an empty Redis database that no worker reads, with a Bitbucket secret."""
    secrets = {"bitbucket_server_secret": WEBHOOK_SECRET, "bitbucket_cloud_secret": WEBHOOK_SECRET}
    configured = other_db(settings, 3, max_body_bytes=4096, **secrets)
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    with Server(create_app(configured, make_app(configured), redis)) as server:
        yield server.url, redis
    redis.flushdb()


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [(b"{}", {"X-Event-Key": "pr:opened"}, 401, "no X-Hub-Signature header"),
     (b"{}", {"X-Event-Key": "pr:opened", "X-Hub-Signature": "sha256=00"}, 401, "does not match"),
     (b"{}", {"X-Event-Key": "pr:opened", "X-Hub-Signature": "md5=00"}, 401, "must look like"),
     (b"{" * 5000, {"X-Event-Key": "pr:opened"}, 413, "larger than 4096 bytes"),
     (b"{not json", {"X-Event-Key": "pr:opened", "sign": "yes"}, 400, "not valid JSON"),
     (b'{"eventKey": "pr:opened", "pullRequest": {"id": "x"}}', {"X-Event-Key": "pr:opened", "sign": "yes"},
      400, "pullRequest")],
)  # fmt: skip
def test_refused_requests_change_nothing(
    quiet, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    url, redis = quiet
    if headers.pop("sign", None):
        headers["X-Hub-Signature"] = sign(body, WEBHOOK_SECRET)
    reply = post(url, body, headers)
    assert reply.status_code == status
    assert words in reply.json()["error"]
    assert redis.dbsize() == 0  # no record, no queued message, no dedupe key


# The own corpus's signed deliveries (tests/fixtures/README.md): every scheme the receiver accepts.
SIGNED = [case for case in load() if case.auth is not None]


@pytest.mark.parametrize("case", SIGNED, ids=[case.id for case in SIGNED])
def test_signed_fixtures_verify_and_a_wrong_secret_is_refused(settings: Settings, case: Case) -> None:
    assert case.auth is not None
    setting, secret = case.auth["setting"].removeprefix("PODCI_").lower(), case.auth["secret"]
    for key, expect_ok in ((secret, True), (secret + "x", False)):
        configured = other_db(
            settings,
            4,
            bitbucket_server_url="https://bitbucket.example.com",
            clone_hosts=",".join(DEFAULT_OPTIONS["clone_hosts"]),
            jenkins_urls=",".join(DEFAULT_OPTIONS["jenkins_urls"]),
            **{setting: key},
        )
        redis = Redis.from_url(configured.require_redis_url())
        redis.flushdb()
        with Server(create_app(configured, make_app(configured), redis)) as server:
            reply = post(server.url, case.raw, case.headers, path=case.hook)
        if expect_ok:
            assert reply.status_code in (200, 202), reply.text
        else:
            assert reply.status_code == 401, reply.text
            assert redis.dbsize() == 0
        redis.flushdb()


def test_a_cloud_fixture_aimed_at_a_test_repository_builds(
    api: str, store: BuildStore, git_server: GitServer, tmp_path
) -> None:
    """The corpus's own `pullrequest:created`, with its repository links and commits made real."""
    repo = Repo(tmp_path / "webapp")
    served = git_server.add(repo, "cloud-webapp")  # Cloud clone URL = links.html.href + ".git"
    source = repo.branch("feature/login", {"notes.txt": "from the pull request\n"})
    body = json.loads((OWN_FIXTURES / "bitbucket-cloud/pullrequest-created.json").read_bytes())
    pr = body["pullrequest"]
    assert (pr["source"]["branch"]["name"], pr["destination"]["branch"]["name"]) == ("feature/login", "main")
    for side, sha in (("source", source), ("destination", repo.head("main"))):
        pr[side]["repository"]["links"]["html"]["href"] = served.removesuffix(".git")
        pr[side]["commit"]["hash"] = sha
    reply = post(
        api, body, {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "cloud-1"}, secret=WEBHOOK_SECRET
    )
    assert reply.status_code == 202, reply.text
    done = wait_for(store, reply.json()["build_id"])
    assert done.state is BuildState.succeeded, done.reason
    assert (done.request.repo, done.request.pull_request, done.request.fork) == ("team/webapp", 12, False)
    assert done.request.source.commit == source


def test_jenkins_notification_started_builds_job_and_number(
    api: str, store: BuildStore, git_server: GitServer, tmp_path
) -> None:
    repo = Repo(tmp_path / "notified")
    scm = {"url": git_server.add(repo), "branch": "origin/main", "commit": repo.head("main"), "changes": []}
    body = {"name": "nightly", "url": "job/nightly/", "build": {"number": 17, "phase": "QUEUED", "scm": scm}}
    token = {"X-Podci-Token": JENKINS_TOKEN}
    queued = post(api, body, token, path="/hooks/jenkins")
    assert queued.status_code == 200 and queued.json()["action"] == "ignored"
    body["build"]["phase"] = "STARTED"
    started = post(api, body, token, path="/hooks/jenkins")
    assert started.status_code == 202 and started.json()["build_id"] == "nightly-17"
    done = wait_for(store, "nightly-17")
    assert done.state is BuildState.succeeded, done.reason
    assert (done.job, done.number, done.request.source.ref) == ("nightly", 17, "main")


def test_a_final_report_lost_with_its_worker_is_sent_by_the_reconciler(
    store: BuildStore, settings: Settings, callback_port: int, tmp_path
) -> None:
    """As if the worker died right after completing the build, before sending its reports."""
    with Recorder(port=callback_port) as jenkins:
        request = BuildRequest(job="orphan", number=1, repo="team/orphan", callback_url=jenkins.url + "/cb",
                               source=Revision(clone_url=str(tmp_path), ref="main"))  # fmt: skip
        record = store.create(request, log_root=str(tmp_path), due=time.time() + 3600)

        def complete(r: BuildRecord) -> None:
            r.state, r.finished, r.step = BuildState.succeeded, utcnow(), None

        store.update(record.id, complete, due=time.time())
        reported = wait_until(lambda: (store.get(record.id) or record).reported, timeout=30)
        assert reported == {"jenkins-callback": "succeeded"}
        assert len(jenkins.received) == 1
