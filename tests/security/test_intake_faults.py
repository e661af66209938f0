"""Faults at intake (issue 13, finding 9): Redis down or hung gives a 503 with a JSON body and
Retry-After, so the sender redelivers; /healthz says so; one unreadable record is skipped and logged."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from dispatch.app import make_app
from dispatch.reconcile import reconcile
from podci.embedded import free_port
from podci.server import create_app
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store import keys
from store.builds import BUILDS, DUE, BuildStore
from testkit.servers import Server, redis_process
from tests.security.conftest import alone
from tests.test_webhooks import JENKINS_TOKEN

TRIGGER = {"job": "faults", "clone_url": "https://bitbucket.org/team/app.git", "source_branch": "main"}
LOGIN = {"Authorization": "Bearer page-token-for-faults", "Accept": "application/json"}


def faulty(settings: Settings, url: str) -> Settings:
    return alone(settings, url, jenkins_token=JENKINS_TOKEN, ui_tokens="page-token-for-faults",
                 clone_hosts="bitbucket.org")  # fmt: skip


@pytest.fixture
def stoppable() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of its own, to stop (SIGSTOP: it accepts connections and never answers)."""
    with redis_process() as (url, server):
        yield url, server


def assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) > 0
    assert "Redis" in reply.json()["error"]


def test_redis_down_at_intake_is_a_503_with_retry_after(settings: Settings) -> None:
    """Finding: Redis down at intake gave a plain-text 500; the server did not even start."""
    configured = faulty(settings, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with Server(create_app(configured)) as server:
        reply = httpx.post(server.url + "/hooks/jenkins", json={**TRIGGER, "build_number": 1},
                           headers={"X-Podci-Token": JENKINS_TOKEN})  # fmt: skip
        assert_unavailable(reply)
        health = httpx.get(server.url + "/healthz")
    assert health.status_code == 503 and health.json()["redis"] == "down"


def test_redis_hung_at_intake_is_a_503_not_a_hang(
    settings: Settings, stoppable: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Finding: a hung Redis held the webhook 5.4 s (and with no timeout at all, for good)."""
    url, redis_server = stoppable
    configured = faulty(settings, url)
    assert configured.redis_timeout <= 1  # the setting that bounds every Redis command
    with Server(create_app(configured)) as server:
        accepted = httpx.post(server.url + "/hooks/jenkins", json={**TRIGGER, "build_number": 1},
                              headers={"X-Podci-Token": JENKINS_TOKEN})  # fmt: skip
        assert accepted.status_code == 202, accepted.text
        redis_server.send_signal(signal.SIGSTOP)
        reply = httpx.post(server.url + "/hooks/jenkins", json={**TRIGGER, "build_number": 2},
                           headers={"X-Podci-Token": JENKINS_TOKEN}, timeout=60)  # fmt: skip
        assert_unavailable(reply)
        health = httpx.get(server.url + "/healthz", timeout=60)
        assert health.status_code == 503 and "does not answer" in health.json()["error"]


def test_an_unreadable_record_is_skipped_and_logged(
    settings: Settings, own_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: one unreadable record made every reconciler pass fail and /builds answer 500."""
    configured = faulty(settings, own_redis)
    redis = Redis.from_url(own_redis)
    redis.flushdb()
    store = BuildStore(redis)
    request = BuildRequest(job="fine", repo="team/app", source=Revision(clone_url="/nonexistent", ref="main"))
    fine = store.create(request, log_root="/nonexistent", due=time.time() + 3600)
    redis.set(keys.build("broken-1"), b'{"id": "broken-1", "state": "no such state"')
    redis.zadd(BUILDS, {"broken-1": time.time()})
    redis.zadd(DUE, {"broken-1": 0})
    app = make_app(configured)
    assert reconcile(app, store, grace=3) == 0  # the pass goes through; nothing was overdue but it
    assert redis.zscore(DUE, "broken-1") is None  # and it is not looked at again and again
    assert any("broken-1" in r.getMessage() and "cannot be read" in r.getMessage() for r in caplog.records)
    with Server(create_app(configured, app, redis)) as server:
        listed = httpx.get(server.url + "/builds", headers=LOGIN)
        one = httpx.get(server.url + "/builds/broken-1", headers=LOGIN)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()] == [fine.id]
    assert one.status_code == 404
    redis.flushdb()
