"""The pure parts of the build pages, by table: Bitbucket links, relative roots, where a failed test
is in its log, and how facts of a finished build are worded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.record import BuildRecord, BuildState, PodAttempt, Step, StepRecord, utcnow
from schemas.request import BuildRequest, Revision
from web.failures import Excerpt, find_failure
from web.links import BuildLinks, build_links, repo_name_of_clone
from web.pages import local_next, root_of, site_path
from web.present import LOOKS, attempt_end, clip, pod_fact, reporting, service_fact

SHA = "0123456789abcdef0123456789abcdef01234567"
SERVER = "https://git.example.com/bitbucket/"
CLOUD_HOME = "https://bitbucket.org/team/webapp"
SERVER_HOME = "https://git.example.com/bitbucket/projects/TEAM/repos/webapp"


def request(provider: str, repo: str = "team/webapp", source: str = "feature/login", pr: int | None = 12,
            clone: str = "https://bitbucket.org/team/webapp.git", fork: bool = False,
            target: str | None = "main") -> BuildRequest:  # fmt: skip
    return BuildRequest(
        job="webapp-pr", repo=repo, provider=provider,  # type: ignore[arg-type]
        source=Revision(clone_url=clone, ref=source),
        target=Revision(clone_url=clone, ref=target) if target else None,
        pull_request=pr, fork=fork,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("made", "commit", "server", "links"),
    [
        (request("bitbucket-cloud"), SHA, None, BuildLinks(
            f"{CLOUD_HOME}/pull-requests/12", f"{CLOUD_HOME}/commits/{SHA}",
            f"{CLOUD_HOME}/branch/feature/login", f"{CLOUD_HOME}/branch/main")),
        (request("bitbucket-server", repo="TEAM/webapp"), SHA, SERVER, BuildLinks(
            f"{SERVER_HOME}/pull-requests/12", f"{SERVER_HOME}/commits/{SHA}",
            f"{SERVER_HOME}/browse?at=refs/heads/feature/login", f"{SERVER_HOME}/browse?at=refs/heads/main")),
        # A personal project of Server lives under /users.
        (request("bitbucket-server", repo="~alice/tool", pr=None, target=None), None, SERVER, BuildLinks(
            source_branch="https://git.example.com/bitbucket/users/alice/repos/tool/browse?at=refs/heads/feature/login")),
        # Escaped: a branch name is the pull request author's to choose.
        (request("bitbucket-cloud", source="fix/a#b&c%d\"<x>"), None, None, BuildLinks(
            f"{CLOUD_HOME}/pull-requests/12", None,
            f"{CLOUD_HOME}/branch/fix/a%23b%26c%25d%22%3Cx%3E", f"{CLOUD_HOME}/branch/main")),
        (request("bitbucket-server", repo="TEAM/webapp", source="a+b&c"), None, SERVER, BuildLinks(
            f"{SERVER_HOME}/pull-requests/12", None,
            f"{SERVER_HOME}/browse?at=refs/heads/a%2Bb%26c", f"{SERVER_HOME}/browse?at=refs/heads/main")),
        (request("bitbucket-cloud", repo="te am/x?y"), SHA, None, BuildLinks()),  # not a repository name
        (request("bitbucket-server", repo="TEAM/webapp"), SHA, None, BuildLinks()),  # no server URL known
        (request("bitbucket-server", repo="TEAM/webapp"), SHA, "javascript:alert(1)//", BuildLinks()),
        (request("jenkins"), SHA, SERVER, BuildLinks()),
        (request("manual", clone="/srv/git/webapp"), SHA, None, BuildLinks()),
        (request("bitbucket-cloud"), "not-a-sha", None, BuildLinks(
            f"{CLOUD_HOME}/pull-requests/12", None,
            f"{CLOUD_HOME}/branch/feature/login", f"{CLOUD_HOME}/branch/main")),
        # A fork's branch and commit are in the fork; a fork whose clone URL says nothing gets none.
        (request("bitbucket-cloud", fork=True, clone="git@bitbucket.org:bob/webapp.git"), SHA, None,
         BuildLinks(f"{CLOUD_HOME}/pull-requests/12", f"https://bitbucket.org/bob/webapp/commits/{SHA}",
                    "https://bitbucket.org/bob/webapp/branch/feature/login", f"{CLOUD_HOME}/branch/main")),
        (request("bitbucket-cloud", fork=True, clone="https://elsewhere.example/bob/webapp.git"), SHA, None,
         BuildLinks(f"{CLOUD_HOME}/pull-requests/12", None, None, f"{CLOUD_HOME}/branch/main")),
    ],
)  # fmt: skip
def test_bitbucket_links(
    made: BuildRequest, commit: str | None, server: str | None, links: BuildLinks
) -> None:
    assert build_links(made, commit, server) == links


@pytest.mark.parametrize(
    ("product", "url", "name"),
    [
        ("bitbucket-cloud", "https://bitbucket.org/bob/webapp.git", "bob/webapp"),
        ("bitbucket-cloud", "git@bitbucket.org:bob/webapp.git", "bob/webapp"),
        ("bitbucket-cloud", "https://bitbucket.org/bob/webapp/extra.git", None),
        ("bitbucket-server", "https://git.example.com/bitbucket/scm/bob/webapp.git", "BOB/webapp"),
        ("bitbucket-server", "ssh://git@git.example.com:7999/bob/webapp.git", "BOB/webapp"),
        ("bitbucket-server", "https://other.example.com/scm/bob/webapp.git", None),
        ("bitbucket-server", "file:///srv/git/webapp", None),
    ],
)
def test_repository_named_by_a_clone_url(product: str, url: str, name: str | None) -> None:
    assert repo_name_of_clone(product, url, SERVER) == name


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/", "./"),
        ("/builds", "./"),
        ("/login", "./"),
        ("/builds/b-1", "../"),
        ("/builds/b-1/live", "../../"),
    ],
)
def test_the_way_back_to_the_site_root(path: str, root: str) -> None:
    assert root_of(path) == root


@pytest.mark.parametrize(
    ("path", "root_path", "below"),
    [
        ("/builds/b-1", "", "/builds/b-1"),
        ("/podci/builds/b-1", "/podci", "/builds/b-1"),
        ("/x", "/podci", "/x"),
    ],
)
def test_the_path_below_a_proxy_prefix(path: str, root_path: str, below: str) -> None:
    assert site_path(path, root_path) == below


@pytest.mark.parametrize(
    ("given", "target"),
    [("/builds/b-1", "builds/b-1"), ("builds", "builds"), ("", "builds"), ("//evil.example/x", "builds"),
     ("/\\evil.example", "builds"), ("\\\\evil.example", "builds"), ("https://evil.example/", "builds")],
)  # fmt: skip
def test_after_login_only_a_path_of_this_site(given: str, target: str) -> None:
    assert local_next(given) == target


UNITTEST_LOG = """test_ok (tests.test_login.LoginTest.test_ok) ... ok
test_wrong_password (tests.test_login.LoginTest.test_wrong_password) ... FAIL

======================================================================
FAIL: test_wrong_password (tests.test_login.LoginTest.test_wrong_password)
Traceback (most recent call last):
  File "tests/test_login.py", line 9, in test_wrong_password
AssertionError: 200 != 401"""
PYTEST_LOG = """tests/test_login.py::LoginTest::test_ok PASSED
tests/test_login.py::LoginTest::test_wrong_password FAILED
=== short test summary info ===
FAILED tests/test_login.py::LoginTest::test_wrong_password - AssertionError"""


@pytest.mark.parametrize(
    ("log", "name", "found"),
    [
        # The line that reports the failure, not the progress line, and the traceback after it.
        (UNITTEST_LOG, "tests.test_login.LoginTest.test_wrong_password",
         Excerpt(3, tuple(UNITTEST_LOG.splitlines()[2:]))),
        (PYTEST_LOG, "tests.test_login.LoginTest.test_wrong_password",
         Excerpt(2, tuple(PYTEST_LOG.splitlines()[1:]))),
        (PYTEST_LOG, "tests.test_login.LoginTest.test_wrong", None),  # a word, not a prefix
        ("", "tests.test_login.LoginTest.test_wrong_password", None),
        ("a\nb\nc\nd\nx.test_y failed\ne", "x.test_y", Excerpt(3, ("c", "d", "x.test_y failed", "e"))),
    ],
)  # fmt: skip
def test_where_the_log_reports_a_failed_test(log: str, name: str, found: Excerpt | None) -> None:
    assert find_failure(log, name) == found


def record(state: BuildState, finished: bool, pods: int = 0, service: str = "",
           reported: dict[str, str] | None = None) -> BuildRecord:  # fmt: skip
    now = utcnow()
    return BuildRecord(
        id="webapp-pr-3", job="webapp-pr", number=3, name="webapp-pr-3",
        request=request("bitbucket-cloud"), state=state, finished=now if finished else None,
        steps=[StepRecord(name=step) for step in Step], service=service, reported=reported or {},
        pods=[PodAttempt(attempt=n, pod=f"webapp-pr-3-{n}", ended="evicted" if n < pods else "")
              for n in range(1, pods + 1)],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("made", "pod", "service"),
    [
        (record(BuildState.running, False), ("none yet", False), ("none yet", False)),
        (record(BuildState.error, True), ("not created", False), ("not created", False)),
        (record(BuildState.stopped, True), ("not created", False), ("not created", False)),
        (record(BuildState.failed, True, pods=2, service="svc"), ("webapp-pr-3-2", True), ("svc", True)),
    ],
)
def test_pod_and_service_of_a_build(
    made: BuildRecord, pod: tuple[str, bool], service: tuple[str, bool]
) -> None:
    assert (pod_fact(made), service_fact(made)) == (pod, service)


def test_how_pod_attempts_ended() -> None:
    running, ended = record(BuildState.running, False, pods=2), record(BuildState.failed, True, pods=2)
    assert [attempt_end(running, a) for a in running.pods] == [("evicted", False), ("current", True)]
    assert [attempt_end(ended, a) for a in ended.pods] == [
        ("evicted", False), ("ended with the build (failed)", False),
    ]  # fmt: skip
    ended.pod_kept_until = utcnow() + timedelta(minutes=5)
    assert attempt_end(ended, ended.pods[1])[1] is True
    assert "kept for debugging" in attempt_end(ended, ended.pods[1])[0]


@pytest.mark.parametrize(
    ("made", "said"),
    [
        # What was posted, never the build's own state in its place.
        (record(BuildState.error, True), "nothing posted"),
        (record(BuildState.error, True, reported={"bitbucket-cloud": "FAILED"}), "bitbucket-cloud: FAILED"),
        (record(BuildState.running, False, reported={"bitbucket-server": "INPROGRESS"}),
         "bitbucket-server: INPROGRESS"),
        (record(BuildState.queued, False), "nothing posted yet"),
    ],
)  # fmt: skip
def test_what_reporting_did(made: BuildRecord, said: str) -> None:
    assert reporting(made) == said


def test_the_unhappy_endings_look_different_without_colour() -> None:
    looks = [LOOKS[state] for state in (BuildState.failed, BuildState.error, BuildState.stopped)]
    assert len({look.icon for look in looks}) == 3 and len({look.hint for look in looks}) == 3
    assert set(LOOKS) == set(BuildState)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("short", "short"), ("two\nlines", "two lines"), ("x" * 100, "x" * 89 + "…")],
)
def test_reasons_are_clipped_to_one_line(text: str, shown: str) -> None:
    assert clip(text) == shown
