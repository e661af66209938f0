"""One identity per provider (issue 13, finding 3): a Jenkins request can neither supersede nor cancel
a Bitbucket build, nor take its names; a replayed cancel does nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas.settings import Settings
from store.builds import BuildStore
from tests.security.conftest import alone, serving
from tests.test_webhooks import JENKINS_TOKEN, WEBHOOK_SECRET, post

BASE = "https://bitbucket.example.com"
SHA = ["1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"]


def server_event(event: str, pr: int, commit: str) -> dict[str, Any]:
    def ref(name: str, sha: str) -> dict[str, Any]:
        links = {"clone": [{"name": "http", "href": f"{BASE}/scm/team/webapp.git"}]}
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": sha,
                "repository": {"slug": "webapp", "project": {"key": "TEAM"}, "links": links}}  # fmt: skip

    author = {"user": {"name": "alice"}}
    pull_request = {
        "id": pr,
        "fromRef": ref("topic", commit),
        "toRef": ref("main", "3" * 40),
        "author": author,
    }
    return {"eventKey": event, "actor": {"name": "alice"}, "pullRequest": pull_request}


@pytest.fixture
def receiver(settings: Settings, own_redis: str) -> Iterator[tuple[str, BuildStore]]:
    """Builds are recorded and queued on a database no worker reads: this is about their identity."""
    configured = alone(settings, own_redis, bitbucket_server_secret=WEBHOOK_SECRET,
                       jenkins_token=JENKINS_TOKEN, bitbucket_server_url=BASE, trusted_authors="alice",
                       clone_hosts="bitbucket.example.com")  # fmt: skip
    with serving(configured) as (url, redis):
        yield url, BuildStore(redis)


def bitbucket(url: str, event: str, pr: int, commit: str, delivery: str) -> dict[str, Any]:
    reply = post(url, server_event(event, pr, commit), {"X-Event-Key": event, "X-Request-Id": delivery},
                 secret=WEBHOOK_SECRET)  # fmt: skip
    assert reply.status_code in (200, 202), reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def jenkins(url: str, **fields: Any) -> dict[str, Any]:
    body = {"clone_url": f"{BASE}/scm/team/webapp.git", "source_branch": "topic", **fields}
    reply = post(url, body, {"X-Podci-Token": JENKINS_TOKEN}, path="/hooks/jenkins")
    assert reply.status_code in (200, 202, 409), reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def test_jenkins_can_neither_supersede_nor_shadow_a_bitbucket_build(receiver: tuple[str, BuildStore]) -> None:
    url, store = receiver
    first = bitbucket(url, "pr:opened", 8, SHA[0], "d-1")["build_id"]
    signed = store.get(first)
    assert signed is not None
    # The same repository and pull request number, from Jenkins: another source's pull request.
    other = jenkins(url, job="ci", build_number=1, repo="TEAM/webapp", pull_request=8)
    assert other["superseded"] == []
    still = store.get(first)
    assert still is not None and not still.cancel_requested
    # A Jenkins job named like the Bitbucket one, numbered to take the next Bitbucket build's name.
    jenkins(url, job=signed.job, build_number=signed.number + 1)
    jenkins(url, job=signed.job, build_number=signed.number + 2)
    second = bitbucket(url, "pr:from_ref_updated", 8, SHA[1], "d-2")
    assert second["action"] == "build", second  # never "duplicate": the new commit is built
    assert second["superseded"] == [first]


def test_a_replayed_cancel_does_nothing_the_second_time(receiver: tuple[str, BuildStore]) -> None:
    url, store = receiver
    bitbucket(url, "pr:opened", 9, SHA[0], "d-3")
    declined = bitbucket(url, "pr:declined", 9, SHA[0], "d-4")
    assert declined["action"] == "cancel" and len(declined["builds"]) == 1
    reopened = bitbucket(url, "pr:opened", 9, SHA[1], "d-5")["build_id"]
    replayed = bitbucket(url, "pr:declined", 9, SHA[0], "d-4")
    assert replayed["action"] == "duplicate"
    record = store.get(reopened)
    assert record is not None and not record.cancel_requested
