"""The reporters (`workers/reporters/`) against real local HTTP stand-ins of Bitbucket Cloud and Server/DC.

Each stand-in checks every request against the shared API notes, section (c) "Build-status APIs" (method,
path, content type, auth header, body fields and their types, key and url limits, the state set of the
API) and answers 400 with what it found wrong, as Bitbucket would; the tests then also assert that it
found nothing. `test_stand_in_catches` shows that every one of those checks can fail.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from podci.embedded import free_port
from schemas.record import BuildRecord, BuildState, StepRecord
from schemas.record import TestResult as JUnit  # aliased: pytest would try to collect `Test*`
from schemas.request import BuildRequest, Provider, Revision
from schemas.settings import Settings
from testkit.bitbucket import StandIn, check, check_lookup
from testkit.servers import Recorder
from workers.errors import TransientError
from workers.reporters import make_reporters, status
from workers.reporters.bitbucket_cloud import BitbucketCloud
from workers.reporters.bitbucket_server import BitbucketServer
from workers.reporters.jenkins_callback import JenkinsCallback
from workers.reporters.status import Api

SHA = "046d9a3c1532acf4cf08fe93235c00e4d673c1d2"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://ci.example.com"
TOKEN = "tok-SECRET-cloud-5f2a"
USER = "ci-bot"
APP_PASSWORD = "pw-SECRET-app-9c1e"
SERVER_TOKEN = "tok-SECRET-server-77d0"
SECRETS = (TOKEN, APP_PASSWORD, SERVER_TOKEN, base64.b64encode(f"{USER}:{APP_PASSWORD}".encode()).decode())

APP = {"bitbucket_cloud_user": USER, "bitbucket_cloud_app_password": APP_PASSWORD}
CLOUD_PATH = f"/2.0/repositories/team/web/commit/{SHA}/statuses/build"
SERVER_PATH = f"/rest/api/latest/projects/TEAM/repos/web/commits/{SHA}/builds"
LEGACY_PATH = f"/rest/build-status/1.0/commits/{SHA}"


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture(autouse=True)
def _no_podci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read `PODCI_*`: a credential in the environment must not make a test pass or fail."""
    for key in [k for k in os.environ if k.startswith("PODCI_")]:
        monkeypatch.delenv(key)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make(
    state: BuildState = BuildState.succeeded,
    *,
    provider: Provider = "bitbucket-cloud",
    repo: str = "team/web",
    job: str = "web",
    commit: str | None = SHA,
    reason: str = "",
    tests: JUnit | None = None,
    callback_url: str | None = None,
) -> BuildRecord:
    request = BuildRequest(
        job=job, repo=repo, source=Revision(clone_url="/srv/web", ref="feature/login", commit=commit),
        target=Revision(clone_url="/srv/web", ref="main"), pull_request=12, provider=provider,
        callback_url=callback_url,
    )  # fmt: skip
    final = state.final
    return BuildRecord(
        id="b-7", job=job, number=7, name="web-7", request=request, steps=[StepRecord(name="checkout")],
        state=state, reason=reason, tests=tests, started=T0,
        finished=T0 + timedelta(seconds=90) if final else None,
    )  # fmt: skip


def cloud_settings(url: str, **extra: Any) -> Settings:
    return Settings(redis_url="redis://unused", public_url=PUBLIC, bitbucket_cloud_api_url=url, **extra)


def server_settings(url: str | None, **extra: Any) -> Settings:
    values: dict[str, Any] = {"bitbucket_server_token": SERVER_TOKEN, **extra}
    return Settings(redis_url="redis://unused", public_url=PUBLIC, bitbucket_server_url=url, **values)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# --- the checks themselves ----------------------------------------------------------------------------

GOOD_CLOUD = status.cloud_body(make(), PUBLIC)


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"method": "PUT"}, "method PUT"),
        ({"path": CLOUD_PATH + "/x"}, "path"),
        ({"headers": {"Content-Type": "text/plain", "Authorization": "Bearer t"}}, "content-type"),
        ({"headers": {"Content-Type": "application/json", "Authorization": "Basic t"}}, "authorization"),
        ({"body": {**GOOD_CLOUD, "key": "k" * 41}}, "key over 40"),
        ({"body": {**GOOD_CLOUD, "state": "CANCELLED"}}, "state 'CANCELLED'"),
        ({"body": {**GOOD_CLOUD, "url": "https://x/" + "u" * 440}}, "url of 450"),
        ({"body": {**GOOD_CLOUD, "buildNumber": "7"}}, "unknown field buildNumber"),
        ({"body": {**GOOD_CLOUD, "name": 7}}, "name is int"),
        ({"body": {k: v for k, v in GOOD_CLOUD.items() if k != "key"}}, "missing key"),
    ],
)
def test_stand_in_catches(change: dict[str, Any], found: str) -> None:
    request: dict[str, Any] = {
        "method": "POST",
        "path": CLOUD_PATH,
        "headers": {"Content-Type": "application/json", "Authorization": "Bearer t"},
        "body": GOOD_CLOUD,
    }

    def problems() -> list[str]:
        raw = json.dumps(request["body"]).encode()
        return check("cloud", request["method"], request["path"], request["headers"], raw,
                     path_expected=CLOUD_PATH, auth_expected="Bearer t")  # fmt: skip

    assert problems() == []
    request.update(change)
    found_problems = problems()
    assert any(found in p for p in found_problems), found_problems


@pytest.mark.parametrize(
    ("api", "path_expected", "path", "raw", "auth", "wanted"),
    [
        ("cloud", CLOUD_PATH, f"{CLOUD_PATH}/podci-web", b"", "Bearer t", ([], "podci-web")),
        ("cloud", CLOUD_PATH, f"{CLOUD_PATH}/a%2Fb", b"", "Bearer t", ([], "a/b")),
        ("cloud", CLOUD_PATH, CLOUD_PATH, b"", "Bearer t", ([f"GET {CLOUD_PATH}"], None)),
        ("cloud", CLOUD_PATH, f"{CLOUD_PATH}/k", b"{}", "Bearer t", (["a GET with a body"], "k")),
        (
            "cloud",
            CLOUD_PATH,
            f"{CLOUD_PATH}/k",
            b"",
            "Basic t",
            (["authorization header is not the expected one"], "k"),
        ),
        ("server", SERVER_PATH, f"{SERVER_PATH}?key=podci-web", b"", "Bearer t", ([], "podci-web")),
        ("server", SERVER_PATH, SERVER_PATH, b"", "Bearer t", ([f"GET {SERVER_PATH}"], None)),
        ("legacy", LEGACY_PATH, f"{LEGACY_PATH}?limit=1000", b"", "Bearer t", ([], None)),
        (
            "legacy",
            LEGACY_PATH,
            f"{LEGACY_PATH}?key=x",
            b"",
            "Bearer t",
            ([f"GET {LEGACY_PATH}?key=x"], None),
        ),
    ],
)
def test_stand_in_reads_only_the_documented_gets(
    api: Api, path_expected: str, path: str, raw: bytes, auth: str, wanted: tuple[list[str], str | None]
) -> None:
    got = check_lookup(
        api, path, {"Authorization": auth}, raw, path_expected=path_expected, auth_expected="Bearer t"
    )
    assert got == wanted


@pytest.mark.parametrize(
    ("api", "body", "found"),
    [
        ("server", {"key": "k", "state": "STOPPED", "url": "u"}, "state 'STOPPED'"),
        ("server", {"key": "k", "state": "FAILED", "url": "u", "buildNumber": 7}, "buildNumber is int"),
        ("server", {"key": "k", "state": "FAILED", "url": "u", "duration": 1.5}, "duration is float"),
        ("server", {"key": "k", "state": "FAILED", "url": "u", "ref": "main"}, "ref main"),
        (
            "server",
            {"key": "k", "state": "FAILED", "url": "u", "testResults": {"successful": 1}},
            "testResults",
        ),
        ("legacy", {"key": "k", "state": "CANCELLED", "url": "u"}, "state 'CANCELLED'"),
        ("legacy", {"key": "k", "state": "FAILED", "url": "u", "ref": "refs/heads/x"}, "unknown field ref"),
        ("legacy", {"key": "k", "state": "FAILED"}, "missing url"),
    ],
)
def test_stand_in_catches_server_rules(api: Api, body: dict[str, Any], found: str) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t"}
    problems = check(
        api, "POST", "/p", headers, json.dumps(body).encode(), path_expected="/p", auth_expected="Bearer t"
    )
    assert any(found in p for p in problems), problems


# --- Bitbucket Cloud ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "auth"),
    [
        ({"bitbucket_cloud_token": TOKEN}, f"Bearer {TOKEN}"),
        (APP, basic(USER, APP_PASSWORD)),
        ({"bitbucket_cloud_token": TOKEN, **APP}, f"Bearer {TOKEN}"),  # both configured: the token is used
    ],
)  # fmt: skip
def test_cloud_posts_the_status(stand_ins: list[StandIn], credentials: dict[str, str], auth: str) -> None:
    bb = StandIn("cloud", CLOUD_PATH, auth)
    stand_ins.append(bb)
    record = make(
        BuildState.succeeded, tests=JUnit(exit_code=0, log_path="t.log", total=12, failed=0, skipped=0)
    )
    reporter = BitbucketCloud(cloud_settings(bb.url, **credentials))
    assert reporter.applies(record)
    assert reporter.report(record) == "bitbucket-cloud: posted SUCCESSFUL"
    assert bb.one().body == {
        "key": "podci-web",
        "state": "SUCCESSFUL",
        "name": "podci web",
        "description": "12 tests passed",
        "url": "https://ci.example.com/builds/b-7",
        "refname": "feature/login",
    }


@pytest.mark.parametrize(
    ("state", "posted"),
    [(BuildState.queued, "INPROGRESS"), (BuildState.running, "INPROGRESS"), (BuildState.failed, "FAILED"),
     (BuildState.error, "FAILED"), (BuildState.stopped, "STOPPED")],
)  # fmt: skip
def test_cloud_states(stand_ins: list[StandIn], state: BuildState, posted: str) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}")
    stand_ins.append(bb)
    note = BitbucketCloud(cloud_settings(bb.url, bitbucket_cloud_token=TOKEN)).report(make(state, reason="r"))
    assert note == f"bitbucket-cloud: posted {posted}"
    assert bb.one().body["state"] == posted


def test_cloud_long_job_is_posted_with_a_short_key(stand_ins: list[StandIn]) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}")
    stand_ins.append(bb)
    job = "team-web/pull-requests/PR-1234/integration-tests"
    note = BitbucketCloud(cloud_settings(bb.url, bitbucket_cloud_token=TOKEN)).report(make(job=job))
    assert note == "bitbucket-cloud: posted SUCCESSFUL"
    assert bb.one().body["key"] == status.status_key(job)
    assert len(bb.one().body["key"]) == 32


def test_cloud_api_url_with_a_trailing_slash(stand_ins: list[StandIn]) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}")
    stand_ins.append(bb)
    BitbucketCloud(cloud_settings(bb.url + "/", bitbucket_cloud_token=TOKEN)).report(make())
    assert bb.one().path == CLOUD_PATH


# --- Bitbucket Server / Data Center -------------------------------------------------------------------


def test_server_builds_api(stand_ins: list[StandIn]) -> None:
    bb = StandIn("server", SERVER_PATH, f"Bearer {SERVER_TOKEN}")
    stand_ins.append(bb)
    record = make(BuildState.failed, provider="bitbucket-server", repo="TEAM/web", reason="tests failed",
                  tests=JUnit(exit_code=1, log_path="t.log", total=8, failed=2, skipped=1))  # fmt: skip
    reporter = BitbucketServer(server_settings(bb.url))
    assert reporter.applies(record)
    assert reporter.report(record) == "bitbucket-server: posted FAILED"
    assert bb.one().body == {
        "key": "podci-web",
        "state": "FAILED",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7#failing-tests",
        "description": "2 of 8 tests failed",
        "buildNumber": "7",
        "ref": "refs/heads/feature/login",
        "parent": "podci-TEAM/web",  # one key for the repository's required-builds merge check
        "duration": 90000,
        "testResults": {"successful": 5, "failed": 2, "skipped": 1},
    }


def test_server_builds_api_stopped_is_cancelled(stand_ins: list[StandIn]) -> None:
    bb = StandIn("server", SERVER_PATH, f"Bearer {SERVER_TOKEN}")
    stand_ins.append(bb)
    record = make(BuildState.stopped, provider="bitbucket-server", repo="TEAM/web", reason="superseded")
    assert BitbucketServer(server_settings(bb.url)).report(record) == "bitbucket-server: posted CANCELLED"
    assert bb.one().body["state"] == "CANCELLED"


@pytest.mark.parametrize(
    ("state", "posted"),
    [
        (BuildState.running, "INPROGRESS"),
        (BuildState.succeeded, "SUCCESSFUL"),
        (BuildState.stopped, "FAILED"),
    ],
)
def test_server_legacy_api(stand_ins: list[StandIn], state: BuildState, posted: str) -> None:
    bb = StandIn("legacy", LEGACY_PATH, f"Bearer {SERVER_TOKEN}")
    stand_ins.append(bb)
    record = make(state, provider="bitbucket-server", repo="TEAM/web", reason="superseded")
    reporter = BitbucketServer(server_settings(bb.url, bitbucket_server_legacy_status=True))
    assert reporter.report(record) == f"bitbucket-server: posted {posted}"
    assert bb.one().body == {
        "state": posted,
        "key": "podci-web",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7",
        "description": status.description(record),
    }


def test_server_base_url_userinfo_is_neither_sent_nor_logged(
    stand_ins: list[StandIn], caplog: pytest.LogCaptureFixture
) -> None:
    """A `user:pass@` in the base URL (there for clone URLs) must not replace the token, nor be logged."""
    caplog.set_level(logging.DEBUG)
    bb = StandIn("server", SERVER_PATH, f"Bearer {SERVER_TOKEN}", status=400, reply="no such repository")
    stand_ins.append(bb)
    url = bb.url.replace("http://", "http://admin:hunter2-SECRET@")
    record = make(provider="bitbucket-server", repo="TEAM/web")
    note = BitbucketServer(server_settings(url)).report(record)
    assert note == "bitbucket-server: refused with 400: no such repository"
    assert bb.seen[0].problems == []  # the Bearer token went, not Basic admin:hunter2
    assert "hunter2" not in caplog.text
    assert "admin" not in caplog.text
    assert "refused with 400" in caplog.text


# --- failures -----------------------------------------------------------------------------------------


def _cloud(url: str) -> BitbucketCloud:
    return BitbucketCloud(cloud_settings(url, bitbucket_cloud_token=TOKEN))


def _cloud_basic(url: str) -> BitbucketCloud:
    return BitbucketCloud(
        cloud_settings(url, bitbucket_cloud_user=USER, bitbucket_cloud_app_password=APP_PASSWORD)
    )


def _server(url: str) -> BitbucketServer:
    return BitbucketServer(server_settings(url))


def _legacy(url: str) -> BitbucketServer:
    return BitbucketServer(server_settings(url, bitbucket_server_legacy_status=True))


PRODUCTS: dict[str, tuple[Callable[[str], BitbucketCloud | BitbucketServer], Api, str, str, str]] = {
    "cloud-token": (_cloud, "cloud", CLOUD_PATH, f"Bearer {TOKEN}", "bitbucket-cloud"),
    "cloud-app-password": (_cloud_basic, "cloud", CLOUD_PATH, basic(USER, APP_PASSWORD), "bitbucket-cloud"),
    "server": (_server, "server", SERVER_PATH, f"Bearer {SERVER_TOKEN}", "bitbucket-server"),
    "legacy": (_legacy, "legacy", LEGACY_PATH, f"Bearer {SERVER_TOKEN}", "bitbucket-server"),
}


def _record_for(product: str) -> BuildRecord:
    if product.startswith("cloud"):
        return make(BuildState.running)
    return make(BuildState.running, provider="bitbucket-server", repo="TEAM/web")


@pytest.mark.parametrize("code", [429, 500, 502, 503])
@pytest.mark.parametrize("product", list(PRODUCTS))
def test_429_and_5xx_are_transient(
    stand_ins: list[StandIn], caplog: pytest.LogCaptureFixture, product: str, code: int
) -> None:
    caplog.set_level(logging.DEBUG)
    factory, api, path, auth, name = PRODUCTS[product]
    bb = StandIn(api, path, auth, status=code, reply='{"echo": "{auth}"}')
    stand_ins.append(bb)
    with pytest.raises(TransientError, match=f"{name} to .* answered {code}") as caught:
        factory(bb.url).report(_record_for(product))
    assert bb.one()  # the request itself was a good one
    assert_no_secret(str(caught.value), repr(caught.value), caplog.text)


@pytest.mark.parametrize("product", list(PRODUCTS))
def test_400_is_a_note_and_a_warning_without_credentials(
    stand_ins: list[StandIn], caplog: pytest.LogCaptureFixture, product: str
) -> None:
    """A refusal is given up, not retried; the body is logged, redacted even when it echoes the header."""
    caplog.set_level(logging.DEBUG)
    factory, api, path, auth, name = PRODUCTS[product]
    reply = '{"type": "error", "error": {"message": "bad request", "you sent": "{auth}"}}'
    bb = StandIn(api, path, auth, status=400, reply=reply)
    stand_ins.append(bb)
    note = factory(bb.url).report(_record_for(product))
    assert note.startswith(f"{name}: refused with 400: "), note
    assert "bad request" in note
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "refused with 400" in warnings[0].getMessage()
    assert "bad request" in warnings[0].getMessage()
    assert_no_secret(note, caplog.text)


def test_a_long_refusal_body_is_logged_up_to_500_characters(
    stand_ins: list[StandIn], caplog: pytest.LogCaptureFixture
) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}", status=403, reply="A" * 400 + "B" * 400)
    stand_ins.append(bb)
    note = _cloud(bb.url).report(make())
    message = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert message.endswith(": " + "A" * 400 + "B" * 100)
    assert len(note) < 200


@pytest.mark.parametrize("product", list(PRODUCTS))
def test_connection_refused_is_transient(caplog: pytest.LogCaptureFixture, product: str) -> None:
    caplog.set_level(logging.DEBUG)
    factory, _api, _path, _auth, name = PRODUCTS[product]
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransientError, match=f"{name} to .* failed: ConnectError") as caught:
        factory(nobody).report(_record_for(product))
    # raised `from None`: a traceback does not carry httpx's exception along
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_no_secret(str(caught.value), caplog.text)


def test_a_slow_server_is_a_transient_timeout(stand_ins: list[StandIn]) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}", delay=1.0)
    stand_ins.append(bb)
    reporter = BitbucketCloud(cloud_settings(bb.url, bitbucket_cloud_token=TOKEN), timeout=0.2)
    with pytest.raises(TransientError, match="ReadTimeout"):
        reporter.report(make())


def test_the_default_timeout_is_10_seconds_and_a_given_client_is_used(stand_ins: list[StandIn]) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}")
    stand_ins.append(bb)
    timeouts: list[Any] = []
    with httpx.Client(
        event_hooks={"request": [lambda r: timeouts.append(r.extensions["timeout"])]}
    ) as client:
        note = BitbucketCloud(cloud_settings(bb.url, bitbucket_cloud_token=TOKEN), client).report(make())
    assert note == "bitbucket-cloud: posted SUCCESSFUL"
    assert timeouts == [{"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}]
    bb.one()


def test_a_build_url_too_long_is_not_posted(
    stand_ins: list[StandIn], caplog: pytest.LogCaptureFixture
) -> None:
    bb = StandIn("cloud", CLOUD_PATH, f"Bearer {TOKEN}")
    stand_ins.append(bb)
    settings = Settings(redis_url="redis://unused", public_url="https://ci.example.com/" + "p" * 450,
                        bitbucket_cloud_api_url=bb.url, bitbucket_cloud_token=SecretStr(TOKEN))  # fmt: skip
    note = BitbucketCloud(settings).report(make())
    assert note.startswith("bitbucket-cloud: not posted: the build URL is ")
    assert bb.seen == []
    assert "not posted" in caplog.text


# --- which builds ---------------------------------------------------------------------------------------

CLOUD_OK = {"bitbucket_cloud_token": TOKEN}


@pytest.mark.parametrize(
    ("settings", "record", "applies"),
    [
        (CLOUD_OK, make(), True),
        (CLOUD_OK, make(BuildState.queued), True),
        (APP, make(), True),
        ({}, make(), False),  # no credentials
        ({"bitbucket_cloud_user": USER}, make(), False),  # a user without an app password
        ({"bitbucket_cloud_app_password": APP_PASSWORD}, make(), False),  # and the other way round
        (CLOUD_OK, make(commit=None), False),  # no source commit
        (CLOUD_OK, make(repo="web"), False),  # not workspace/slug
        (CLOUD_OK, make(provider="bitbucket-server"), False),
        (CLOUD_OK, make(provider="manual"), False),
    ],
)
def test_cloud_applies(settings: dict[str, str], record: BuildRecord, applies: bool) -> None:
    reporter = BitbucketCloud(cloud_settings("http://127.0.0.1:9", **settings))
    assert reporter.applies(record) is applies


SERVER: Provider = "bitbucket-server"
BB = "https://bb.example"
LEGACY = {"bitbucket_server_legacy_status": True}


@pytest.mark.parametrize(
    ("url", "settings", "record", "applies"),
    [
        (BB, {}, make(provider=SERVER, repo="TEAM/web"), True),
        (BB, {}, make(provider=SERVER, repo="web"), False),  # builds API needs PROJECT/slug
        (BB, LEGACY, make(provider=SERVER, repo="web"), True),
        (BB, {}, make(provider=SERVER, repo="TEAM/web", commit=None), False),
        (BB, LEGACY,
         make(provider=SERVER, repo="TEAM/web", commit=None), False),
        (None, {}, make(provider=SERVER, repo="TEAM/web"), False),  # no server URL
        (BB, {"bitbucket_server_token": None}, make(provider=SERVER, repo="TEAM/web"), False),
        (BB, {}, make(provider="bitbucket-cloud", repo="TEAM/web"), False),
    ],
)  # fmt: skip
def test_server_applies(
    url: str | None, settings: dict[str, Any], record: BuildRecord, applies: bool
) -> None:
    assert BitbucketServer(server_settings(url, **settings)).applies(record) is applies


# --- the reporter list and the Jenkins callback ---------------------------------------------------------


def test_make_reporters() -> None:
    reporters = make_reporters(cloud_settings("http://127.0.0.1:9", bitbucket_cloud_token=TOKEN))
    statuses = ["bitbucket-cloud", "bitbucket-server", "jenkins-callback"]
    assert [r.name for r in reporters] == [*statuses, "bitbucket-cloud-insights", "bitbucket-server-insights"]
    record = make(callback_url="http://127.0.0.1:9/cb")  # passed, without a JUnit report: no report
    assert [r.name for r in reporters if r.applies(record)] == ["bitbucket-cloud", "jenkins-callback"]


@pytest.mark.parametrize(
    ("state", "callback_url", "applies"),
    [
        (BuildState.succeeded, "http://ci/cb", True),
        (BuildState.stopped, "http://ci/cb", True),
        (BuildState.running, "http://ci/cb", False),  # Jenkins takes the final record only
        (BuildState.queued, "http://ci/cb", False),
        (BuildState.succeeded, None, False),
    ],
)
def test_jenkins_callback_applies(state: BuildState, callback_url: str | None, applies: bool) -> None:
    assert JenkinsCallback(Settings()).applies(make(state, callback_url=callback_url)) is applies


def test_jenkins_callback_posts_the_record_as_shown() -> None:
    with Recorder() as jenkins:
        record = make(BuildState.failed, reason="tests failed", callback_url=f"{jenkins.url}/cb")
        settings = Settings(jenkins_urls=jenkins.url + "/")
        note = JenkinsCallback(settings).report(record)
    assert note == "jenkins-callback: posted failed (200)"
    [(path, _headers, body)] = jenkins.received
    assert path == "/cb"
    posted = json.loads(body)
    assert posted["state"] == "failed" and posted["finished"] is not None
    assert posted["request"]["callback_url"] is None  # the callback's own (secret) URL is not echoed


def test_jenkins_callback_outside_the_jenkins_urls_is_not_posted() -> None:
    with Recorder() as jenkins:
        record = make(BuildState.failed, callback_url=f"{jenkins.url}/cb")
        note = JenkinsCallback(Settings(jenkins_urls="https://jenkins.example.com/")).report(record)
    assert "not posted" in note and "PODCI_JENKINS_URLS" in note
    assert jenkins.received == []


# --- a post whose answer was lost is not posted again -------------------------------------------------


@pytest.mark.parametrize("shown", [True, False], ids=["it-arrived", "it-never-arrived"])
@pytest.mark.parametrize("product", ["cloud-token", "server", "legacy"])
def test_a_final_status_whose_answer_was_lost_is_read_back_not_posted_twice(
    stand_ins: list[StandIn], redis_url: str, product: str, shown: bool
) -> None:
    """A worker killed between Bitbucket's 2xx and the record saying so: the next notify of that state
    asks Bitbucket first (one GET of the documented read) and posts only when the status is not there."""
    from types import SimpleNamespace

    from store import keys
    from workers.notify import notify
    from workers.process import ProcessResources

    factory, api, path, auth, name = PRODUCTS[product]
    bb = StandIn(api, path, auth)
    stand_ins.append(bb)
    settings = factory(bb.url).settings.model_copy(update={"redis_url": redis_url.rsplit("/", 1)[0] + "/10"})
    proc = ProcessResources(settings)
    redis = proc.store.redis
    redis.flushdb()
    try:
        request = _record_for(product).request
        build = proc.store.create(request, log_root="/nonexistent", due=0)

        def completes(r: BuildRecord) -> None:
            r.state, r.finished, r.step = BuildState.succeeded, r.created, None

        record = proc.store.update(build.id, completes, due=0)
        assert record is not None
        reporter = proc.reporters[name]
        redis.set(keys.report_sending(build.id, name), reporter.says(record))  # the killed post's mark
        if shown:
            reporter.report(record)  # Bitbucket took it; the record never heard
        before = len(bb.seen)
        task = SimpleNamespace(request=SimpleNamespace(retries=0))
        note = notify(proc, build.id, name, task)  # type: ignore[arg-type]
        asked = bb.seen[before:]
        assert [s.method for s in asked] == (["GET"] if shown else ["GET", "POST"]), asked
        assert all(s.problems == [] for s in bb.seen)
        assert note == (f"{name}: SUCCESSFUL shown already" if shown else f"{name}: posted SUCCESSFUL")
        after = proc.store.get(build.id)
        assert after is not None and after.reported[name] == reporter.says(record)
        # a notify with no lost post behind it never reads first
        redis.delete(keys.report_sending(build.id, name))
        assert notify(proc, build.id, name, task) == "nothing new"  # type: ignore[arg-type]
    finally:
        redis.flushdb()
