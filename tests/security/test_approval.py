"""Who may start a build (issue 13, point 3): a pull request from a fork or an untrusted author waits,
shown as "waiting for approval", until a trusted person comments `/podci ok-to-test` on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from dispatch.app import QUEUE_NEW, QUEUE_STEPS
from schemas.record import BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.corpus import OWN_FIXTURES
from tests.security.conftest import alone, serving
from tests.test_webhooks import WEBHOOK_SECRET, post

BRUNO, CHEN = "712020:9b3e2f6a-07c8", "712020:1c4d8e2b-5f90"  # a colleague; a stranger with a fork
LOGIN = {"Authorization": "Bearer page-token-for-approval"}


@pytest.fixture
def receiver(settings: Settings, own_redis: str) -> Iterator[tuple[str, Redis]]:
    """No worker reads this Redis: what matters is what is recorded and what is queued."""
    configured = alone(settings, own_redis, bitbucket_cloud_secret=WEBHOOK_SECRET, trusted_authors=BRUNO,
                       ui_tokens="page-token-for-approval")  # fmt: skip
    with serving(configured) as served:
        yield served


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OWN_FIXTURES / "bitbucket-cloud" / f"{name}.json").read_bytes())
    return loaded


def deliver(url: str, event: str, body: dict[str, Any], delivery: str) -> dict[str, Any]:
    reply = post(url, body, {"X-Event-Key": event, "X-Request-UUID": delivery}, secret=WEBHOOK_SECRET)
    assert reply.status_code in (200, 202), reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def steps_queued(redis: Redis) -> list[str]:
    """The pipeline's messages waiting in its queues (a step), by task name."""
    messages = redis.lrange(QUEUE_NEW, 0, -1) + redis.lrange(QUEUE_STEPS, 0, -1)
    return [json.loads(m)["headers"]["task"] for m in messages]


def comment(author: str, text: str) -> dict[str, Any]:
    body = fixture("pullrequest-comment-ok-to-test")
    body["actor"]["account_id"] = body["comment"]["user"]["account_id"] = author
    body["comment"]["content"]["raw"] = text
    return body


def test_a_stranger_s_pull_request_waits_for_a_trusted_person(receiver: tuple[str, Redis]) -> None:
    url, redis = receiver
    store = BuildStore(redis)
    opened = deliver(url, "pullrequest:created", fixture("pullrequest-created-fork"), "fork-1")
    assert opened["action"] == "build"
    record = store.get(opened["build_id"])
    assert record is not None and record.state is BuildState.awaiting_approval and record.step is None
    assert "podci.checkout" not in steps_queued(redis)  # nothing of the fork runs yet
    page = httpx.get(f"{url}/builds/{record.id}", headers=LOGIN).text
    assert "waiting for approval" in page and "/podci ok-to-test" in page

    # The author approving his own pull request, and a trusted person only chatting: nothing starts.
    for who, text, delivery in ((CHEN, "/podci ok-to-test", "c-1"), (BRUNO, "looks fine to me", "c-2")):
        assert (
            deliver(url, "pullrequest:comment_created", comment(who, text), delivery)["action"] == "ignored"
        )
    assert store.get(record.id).state is BuildState.awaiting_approval  # type: ignore[union-attr]

    approved = deliver(url, "pullrequest:comment_created", comment(BRUNO, "ok\n/podci ok-to-test"), "c-3")
    assert approved["action"] == "approve" and approved["builds"] == [record.id]
    started = store.get(record.id)
    assert started is not None and started.state is BuildState.queued and started.approved_by == BRUNO
    assert "podci.checkout" in steps_queued(redis)
    again = deliver(url, "pullrequest:comment_created", comment(BRUNO, "ok\n/podci ok-to-test"), "c-3")
    assert again["action"] == "duplicate"
    assert steps_queued(redis).count("podci.checkout") == 1


def test_a_new_commit_of_a_stranger_waits_again_and_stops_the_waiting_one(
    receiver: tuple[str, Redis],
) -> None:
    url, redis = receiver
    store = BuildStore(redis)
    body = fixture("pullrequest-created-fork")
    first = deliver(url, "pullrequest:created", body, "fork-2")["build_id"]
    body["pullrequest"]["source"]["commit"]["hash"] = "0123456789ab"
    second = deliver(url, "pullrequest:updated", body, "fork-3")
    assert second["superseded"] == [first]
    assert store.get(first).state is BuildState.stopped  # type: ignore[union-attr]
    assert store.get(second["build_id"]).state is BuildState.awaiting_approval  # type: ignore[union-attr]
