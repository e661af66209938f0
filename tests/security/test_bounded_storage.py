"""Bounded storage (issue 13, finding 8): everything a build writes to Redis expires after
PODCI_RETENTION_DAYS (or is a bounded index), and every free-text field of a request has a maximum
length and a 400 that names it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store import keys
from store.builds import BUILDS, BuildStore
from store.connection import as_text
from testkit.gitrepo import GitServer, Repo
from testkit.servers import Recorder
from tests.helpers import Worker, wait_for, wait_until
from tests.security.conftest import alone, serving
from tests.test_webhooks import JENKINS_TOKEN

DAYS = 2


@pytest.fixture(scope="module")
def stack(
    settings: Settings, own_redis: str, worker_env: dict[str, str], callback_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Redis]]:  # fmt: skip
    state = tmp_path_factory.mktemp("bounded")
    configured = alone(settings, own_redis, jenkins_token=JENKINS_TOKEN, retention_days=DAYS, state_dir=state)
    env = {**worker_env, "PODCI_REDIS_URL": own_redis, "PODCI_STATE_DIR": str(state),
           "PODCI_RETENTION_DAYS": str(DAYS)}  # fmt: skip
    worker = Worker(env, state / "worker.log")
    worker.start()
    try:
        with serving(configured) as served:
            yield served
    finally:
        worker.stop()


def trigger(url: str, **fields: object) -> httpx.Response:
    return httpx.post(url + "/hooks/jenkins", json=fields, headers={"X-Podci-Token": JENKINS_TOKEN})


@pytest.mark.parametrize(
    ("field", "value"),
    [("triggered_by", "x" * 900_000), ("repo", "team/" + "r" * 300), ("job", "j" * 201),
     ("source_branch", "b" * 300), ("callback_url", "https://jenkins.example.com/" + "c" * 2000)],
)  # fmt: skip
def test_a_long_free_text_field_is_a_400_that_names_it(
    stack: tuple[str, Redis], git_server: GitServer, field: str, value: str, tmp_path: Path
) -> None:
    """Finding: one request with long free-text fields stored 917,576 bytes for good."""
    url, redis = stack
    before = redis.dbsize()
    clone = git_server.add(Repo(tmp_path / "r"), "bounded-long")
    body = {"job": "long", "build_number": 1, "clone_url": clone, "source_branch": "main", field: value}
    reply = trigger(url, **body)
    assert reply.status_code == 400, reply.text[:300]
    assert f"`{field}`" in reply.json()["error"] and "at most" in reply.json()["error"]
    assert len(reply.text) < 2000
    assert redis.dbsize() == before


def test_everything_a_build_writes_expires(
    stack: tuple[str, Redis], git_server: GitServer, callback_port: int, tmp_path: Path
) -> None:
    """Finding: records, the builds set, pull request sets and counters never expired."""
    url, redis = stack
    clone = git_server.add(Repo(tmp_path / "kept"), "bounded-kept")
    with Recorder(port=callback_port) as jenkins:
        reply = trigger(url, job="kept", build_number=1, clone_url=clone, source_branch="main",
                        repo="team/kept", pull_request=4,
                        callback_url=f"http://127.0.0.1:{callback_port}/cb")  # fmt: skip
        assert reply.status_code == 202, reply.text
        store = BuildStore(redis)
        assert wait_for(store, "kept-1").complete
        wait_until(lambda: jenkins.received)
        wait_until(lambda: (store.get("kept-1") or store).reported)  # type: ignore[union-attr]
    counted = BuildRequest(job="counted", repo="team/kept", pull_request=4, provider="bitbucket-server",
                           source=Revision(clone_url=clone, ref="main"))  # fmt: skip
    BuildStore(redis, DAYS * 86400).create(counted, log_root=str(tmp_path), due=time.time() + 3600)
    left = []
    for key in map(as_text, redis.scan_iter(match="podci:*")):
        ttl = int(redis.ttl(key))
        if keys.bounded_without_expiry(key):
            continue
        if not 0 < ttl <= DAYS * 86400:
            left.append(f"{key} (ttl {ttl})")
    assert left == []
    assert 0 < int(redis.ttl(keys.build("kept-1"))) <= DAYS * 86400
    record_bytes = int(redis.memory_usage(keys.build("kept-1")) or 0)
    assert 0 < record_bytes < 64 * 1024


def test_the_builds_index_forgets_what_expired(stack: tuple[str, Redis], tmp_path: Path) -> None:
    _, redis = stack
    long_ago = time.time() - (DAYS + 1) * 86400
    redis.zadd(BUILDS, {"forgotten-1": long_ago})
    request = BuildRequest(
        job="fresh", repo="team/kept", source=Revision(clone_url="/nonexistent", ref="main")
    )
    BuildStore(redis, DAYS * 86400).create(request, log_root=str(tmp_path), due=time.time() + 3600)
    assert redis.zscore(BUILDS, "forgotten-1") is None
