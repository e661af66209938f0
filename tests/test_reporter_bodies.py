"""workers/reporters/status.py: what a Bitbucket build status says, one table per rule.

The limits and state sets are the ones in the shared API notes, section (c) "Build-status APIs".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.record import BuildRecord, BuildState, StepRecord
from schemas.record import TestResult as JUnit  # aliased: pytest would try to collect `Test*`
from schemas.request import BuildRequest, Revision
from workers.reporters import status
from workers.reporters.status import Api

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SHA = "046d9a3c1532acf4cf08fe93235c00e4d673c1d2"
PUBLIC = "https://ci.example.com/"

# The state sets of the API notes, per API: what any body may carry.
ALLOWED: dict[Api, set[str]] = {
    "cloud": {"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"},
    "server": {"INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"},
    "legacy": {"INPROGRESS", "SUCCESSFUL", "FAILED"},
}


def junit(total: int | None, failed: int | None = 0, skipped: int | None = 0) -> JUnit:
    return JUnit(exit_code=1 if failed else 0, log_path="/logs/tests.log", total=total, failed=failed,
                      skipped=skipped)  # fmt: skip


def make(
    state: BuildState = BuildState.running,
    *,
    job: str = "web",
    number: int = 7,
    reason: str = "",
    tests: JUnit | None = None,
    ref: str = "feature/login",
    commit: str | None = SHA,
    repo: str = "team/web",
    started: datetime | None = None,
    finished: datetime | None = None,
    warnings: list[str] | None = None,
) -> BuildRecord:
    request = BuildRequest(
        job=job[:200], repo=repo, source=Revision(clone_url="/srv/web", ref=ref, commit=commit),
        target=Revision(clone_url="/srv/web", ref="main"), pull_request=12, provider="bitbucket-cloud",
    )  # fmt: skip
    return BuildRecord(
        id="b-7", job=job, number=number, name=f"{job[:50]}-{number}", request=request,
        steps=[StepRecord(name="checkout")], state=state, reason=reason, tests=tests, started=started,
        finished=finished, warnings=warnings or [],
    )  # fmt: skip


# --- keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("web", "podci-web"),
        ("j" * 33, "podci-" + "j" * 33),  # 39 characters: kept
        ("j" * 34, "podci-" + "j" * 34),  # 40 characters: kept, the limit is inclusive
        ("j" * 35, "d21e480a36f510570c0cfe2bbe379269"),  # 41 characters: md5 of the whole key
    ],
)
def test_cloud_key_keeps_within_40_characters(job: str, expected: str) -> None:
    key = status.status_key(job)
    assert key == expected
    assert len(key) <= 40


def test_cloud_key_is_stable_and_tells_long_jobs_apart() -> None:
    long_a, long_b = "a" * 60, "a" * 59 + "b"
    assert status.status_key(long_a) == status.status_key(long_a)
    assert status.status_key(long_a) != status.status_key(long_b)
    assert len(status.status_key(long_a)) == 32


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("j" * 248, "podci-" + "j" * 248),  # 254
        ("j" * 249, "podci-" + "j" * 249),  # 255: kept
        ("j" * 250, "podci-" + "j" * 216 + "/00ac42f413270a9d6854e2aa5b165805"),  # 256: 222 + "/" + md5
    ],
)
def test_server_key_shortens_past_255_like_the_plugin(job: str, expected: str) -> None:
    key = status.server_key(job)
    assert key == expected
    assert len(key) <= 255


# --- states -------------------------------------------------------------------------------------------

S = BuildState


@pytest.mark.parametrize(
    ("state", "cloud", "server", "legacy"),
    [
        (S.queued, "INPROGRESS", "INPROGRESS", "INPROGRESS"),
        (S.running, "INPROGRESS", "INPROGRESS", "INPROGRESS"),
        (S.succeeded, "SUCCESSFUL", "SUCCESSFUL", "SUCCESSFUL"),
        (S.failed, "FAILED", "FAILED", "FAILED"),
        (S.error, "FAILED", "FAILED", "FAILED"),
        (S.stopped, "STOPPED", "CANCELLED", "FAILED"),
    ],
)
def test_state_per_product(state: BuildState, cloud: str, server: str, legacy: str) -> None:
    assert (status.state_for(state, "cloud"), status.state_for(state, "server"),
            status.state_for(state, "legacy")) == (cloud, server, legacy)  # fmt: skip


@pytest.mark.parametrize(
    ("state", "remembered"),
    [
        (S.awaiting_approval, "INPROGRESS (waiting for approval)"),
        (S.queued, "INPROGRESS"),
        (S.running, "INPROGRESS"),
        (S.succeeded, "SUCCESSFUL"),
    ],
)
def test_an_approved_build_says_something_new_though_both_are_inprogress(
    state: BuildState, remembered: str
) -> None:
    assert status.said(state, "cloud") == remembered


@pytest.mark.parametrize("api", ["cloud", "server", "legacy"])
def test_every_state_maps_into_the_set_the_api_accepts(api: Api) -> None:
    assert {status.state_for(s, api) for s in BuildState} <= ALLOWED[api]


# --- description --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (make(S.queued), "build 7 queued"),
        (make(S.running), "build 7 running"),
        (make(S.succeeded, tests=junit(12)), "12 tests passed"),
        (make(S.succeeded, tests=junit(12, 0, 2)), "10 tests passed, 2 skipped"),
        (make(S.succeeded, tests=junit(1)), "1 test passed"),
        (make(S.succeeded, tests=junit(None, None, None)), "tests passed"),  # no JUnit report
        (make(S.succeeded), "tests passed"),
        (make(S.succeeded, warnings=["passed only on rerun: 1 known-flaky test(s) failed, then passed run "
                                     "again: t.a"]),
         "tests passed; passed only on rerun: 1 known-flaky test(s) failed, then passed run again: t.a"),
        (make(S.failed, reason="tests failed with exit code 1", tests=junit(12, 2)), "2 of 12 tests failed"),
        (make(S.failed, reason="tests failed with exit code 1", tests=junit(1, 1)), "1 of 1 test failed"),
        # a non-zero exit without JUnit failures: the counts would say nothing useful
        (make(S.failed, reason="tests failed with exit code 3", tests=junit(5, 0)),
         "tests failed with exit code 3"),
        (make(S.failed, reason="merge conflict in app.py"), "merge conflict in app.py"),
        (make(S.error, reason="setup did not complete within 300 s"), "setup did not complete within 300 s"),
        (make(S.stopped, reason="superseded by build 8"), "superseded by build 8"),
        (make(S.error), "build 7 error"),
        (make(S.stopped), "build 7 stopped"),
        (make(S.error, reason="pod lost:\n  node drained\n"), "pod lost: node drained"),
    ],
)  # fmt: skip
def test_description(record: BuildRecord, expected: str) -> None:
    assert status.description(record) == expected


def test_long_description_is_cut_to_255_with_an_ellipsis() -> None:
    text = status.description(make(S.error, reason="x" * 1000))
    assert len(text) == 255
    assert text == "x" * 254 + "…"


# --- url and name -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://ci.example.com", "https://ci.example.com/builds/b-7"),
        ("https://ci.example.com/", "https://ci.example.com/builds/b-7"),
        ("https://ci.example.com/podci//", "https://ci.example.com/podci/builds/b-7"),
    ],
)
def test_build_url(public: str, expected: str) -> None:
    assert status.build_url(make(), public) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.failed, "https://ci.example.com/builds/b-7#failing-tests"),  # where the author wants to land
        (S.error, "https://ci.example.com/builds/b-7"),  # no failing tests: the reason is on top
        (S.stopped, "https://ci.example.com/builds/b-7"),
        (S.succeeded, "https://ci.example.com/builds/b-7"),
        (S.running, "https://ci.example.com/builds/b-7"),
    ],
)
def test_build_url_of_a_failed_build_opens_its_failing_tests(state: S, expected: str) -> None:
    assert status.build_url(make(state), "https://ci.example.com") == expected


def test_build_url_of_449_characters_passes_and_450_is_refused() -> None:
    suffix = len("/builds/b-7")
    fits = "https://ci.example.com/" + "p" * (449 - suffix - len("https://ci.example.com/"))
    assert len(status.build_url(make(), fits)) == 449
    with pytest.raises(ValueError, match="450"):
        status.build_url(make(), fits + "p")
    with pytest.raises(ValueError):
        status.cloud_body(make(), fits + "p")


def test_cloud_url_escapes_braces_it_would_read_as_a_template() -> None:
    body = status.cloud_body(make(), "https://ci.example.com/{x}")
    assert body["url"] == "https://ci.example.com/%7Bx%7D/builds/b-7"


@pytest.mark.parametrize(
    ("job", "expected"),
    [("web", "podci web"), ("j" * 300, "podci " + "j" * 248 + "…")],
)
def test_name_is_at_most_255(job: str, expected: str) -> None:
    text = status.name(make(job=job))
    assert text == expected
    assert len(text) <= 255


# --- bodies -------------------------------------------------------------------------------------------


def test_cloud_body_while_running() -> None:
    assert status.cloud_body(make(S.running), PUBLIC) == {
        "key": "podci-web",
        "state": "INPROGRESS",
        "name": "podci web",
        "description": "build 7 running",
        "url": "https://ci.example.com/builds/b-7",
        "refname": "feature/login",
    }


def test_cloud_body_stopped() -> None:
    assert status.cloud_body(make(S.stopped, reason="superseded by build 8"), PUBLIC) == {
        "key": "podci-web",
        "state": "STOPPED",
        "name": "podci web",
        "description": "superseded by build 8",
        "url": "https://ci.example.com/builds/b-7",
        "refname": "feature/login",
    }


def test_server_body_while_running_has_no_duration_nor_test_results() -> None:
    record = make(S.running, started=T0)
    assert status.server_body(record, PUBLIC) == {
        "key": "podci-web",
        "state": "INPROGRESS",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7",
        "description": "build 7 running",
        "buildNumber": "7",
        "ref": "refs/heads/feature/login",
        "parent": "podci-team/web",
    }


def test_server_body_finished_with_junit_counts() -> None:
    record = make(S.failed, reason="tests failed with exit code 1", tests=junit(12, 2, 1),
                  started=T0, finished=T0 + timedelta(minutes=2, milliseconds=5))  # fmt: skip
    assert status.server_body(record, PUBLIC) == {
        "key": "podci-web",
        "state": "FAILED",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7#failing-tests",
        "description": "2 of 12 tests failed",
        "buildNumber": "7",
        "ref": "refs/heads/feature/login",
        "parent": "podci-team/web",
        "duration": 120005,
        "testResults": {"successful": 9, "failed": 2, "skipped": 1},
    }


def test_server_body_stopped_before_it_started_is_cancelled_without_duration() -> None:
    record = make(S.stopped, reason="superseded by build 8", ref="refs/heads/topic", finished=T0)
    assert status.server_body(record, PUBLIC) == {
        "key": "podci-web",
        "state": "CANCELLED",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7",
        "description": "superseded by build 8",
        "buildNumber": "7",
        "ref": "refs/heads/topic",  # already a full ref: not prefixed twice
        "parent": "podci-team/web",
    }


def test_server_body_omits_test_results_without_a_junit_report() -> None:
    record = make(S.succeeded, tests=junit(None, None, None), started=T0, finished=T0)
    body = status.server_body(record, PUBLIC)
    assert "testResults" not in body
    assert body["duration"] == 0


def test_legacy_body_has_five_fields_and_a_stopped_build_is_failed() -> None:
    record = make(S.stopped, reason="cancelled by alice", started=T0, finished=T0 + timedelta(seconds=3))
    assert status.legacy_body(record, PUBLIC) == {
        "state": "FAILED",
        "key": "podci-web",
        "name": "podci web",
        "url": "https://ci.example.com/builds/b-7",
        "description": "cancelled by alice",
    }


# --- where --------------------------------------------------------------------------------------------


LEGACY_PATH = f"/rest/build-status/1.0/commits/{SHA}"


def cloud_at(workspace_slug: str) -> str:
    return f"/2.0/repositories/{workspace_slug}/commit/{SHA}/statuses/build"


def server_at(project: str, slug: str) -> str:
    return f"/rest/api/latest/projects/{project}/repos/{slug}/commits/{SHA}/builds"


@pytest.mark.parametrize(
    ("repo", "commit", "cloud", "server", "legacy"),
    [
        ("team/web", SHA, cloud_at("team/web"), server_at("team", "web"), LEGACY_PATH),
        ("~alice/web", SHA, cloud_at("~alice/web"), server_at("~alice", "web"), LEGACY_PATH),  # personal repo
        ("team/we%b", SHA, cloud_at("team/we%25b"), server_at("team", "we%25b"), LEGACY_PATH),  # quoted
        # the legacy API is tied to the commit only, so a repository it cannot split does not matter
        ("web", SHA, None, None, LEGACY_PATH),
        ("a/b/c", SHA, None, None, LEGACY_PATH),
        ("team/web", None, None, None, None),  # no source commit: nothing to attach a status to
    ],
)
def test_paths(
    repo: str, commit: str | None, cloud: str | None, server: str | None, legacy: str | None
) -> None:
    record = make(repo=repo, commit=commit)
    got = (status.cloud_path(record), status.server_path(record), status.legacy_path(record))
    assert got == (cloud, server, legacy)


def test_the_source_commit_is_the_one_reported_not_the_target() -> None:
    record = make()
    record = record.model_copy(
        update={"request": record.request.model_copy(update={"target": Revision(
            clone_url="/srv/web", ref="main", commit="a" * 40)})}
    )  # fmt: skip
    assert status.cloud_path(record) == f"/2.0/repositories/team/web/commit/{SHA}/statuses/build"


def _body_types(body: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in body.items()}


def test_server_body_value_types() -> None:
    record = make(S.succeeded, tests=junit(3), started=T0, finished=T0 + timedelta(seconds=1))
    assert _body_types(status.server_body(record, PUBLIC)) == {
        "key": str, "state": str, "name": str, "url": str, "description": str, "buildNumber": str,
        "ref": str, "parent": str, "duration": int, "testResults": dict,
    }  # fmt: skip
