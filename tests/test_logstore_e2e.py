"""Logs through S3 end to end: a real worker puts a build's logs into a real S3 HTTP API (moto's
server), and a page server with a state directory of its own shows them. Worker and pages share
nothing but Redis and the bucket."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

from dispatch.app import make_app
from dispatch.submit import submit
from podci.embedded import free_port
from podci.server import create_app
from schemas.record import BuildRecord, BuildState
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from store.logstore import open_log_store
from testkit.gitrepo import Repo
from testkit.servers import Server
from tests.conftest import FAST
from tests.helpers import Worker, processes_of, wait_for, wait_until
from tests.s3 import CREDENTIALS, make_bucket, s3_server
from tests.test_webhooks import configure, other_db
from workers.gc import collect_garbage

UI_TOKEN = "logstore-page-token-for-tests"
LOGIN = {"Authorization": f"Bearer {UI_TOKEN}"}
CONFIG = """\
test:
  container: tests
  command: "echo the-test-log-says-hello; env | sort"
setup:
  ready: true
"""
POD = """\
containers:
  - name: tests
    image: none
    command: [sleep, infinity]
  - name: app
    image: none
    command: [sh, -c, "echo the-app-container-says-hello; sleep infinity"]
"""
FILES = {".podci.yml": CONFIG, ".podci/pod.yaml": POD}
_buckets = itertools.count()


@dataclass
class Stack:
    settings: Settings  # the worker's
    store: BuildStore
    repo: Repo
    state_dir: Path  # the worker's


def worker_for(worker_env: dict[str, str], configured: Settings, endpoint: str, log: Path) -> Worker:
    env = {
        **worker_env, **FAST, **CREDENTIALS,
        "PODCI_REDIS_URL": configured.require_redis_url(), "PODCI_STATE_DIR": str(configured.state_dir),
        "PODCI_LOG_STORE": configured.log_store, "PODCI_S3_ENDPOINT_URL": endpoint,
        "PODCI_SAFETY_LOOK": "2",  # a teardown waiting for the store looks again soon
    }  # fmt: skip
    return Worker(env, log)


def build(stack: Stack) -> BuildRecord:
    request = BuildRequest(
        job="s3logs", repo="s3logs", source=Revision(clone_url=str(stack.repo.path), ref="main")
    )
    return submit(make_app(stack.settings), stack.store, stack.settings, request)


def bucket_for(endpoint: str) -> str:
    name = f"podci-e2e-{os.getpid()}-{next(_buckets)}"
    make_bucket(endpoint, name)
    return name


@pytest.fixture(scope="module")
def stack(
    settings: Settings, worker_env: dict[str, str], s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("s3logs")
    url = f"s3://{bucket_for(s3_endpoint)}/podci"
    configured = other_db(
        settings, 4, state_dir=tmp / "worker-state", log_store=url, s3_endpoint_url=s3_endpoint
    )
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    worker = worker_for(worker_env, configured, s3_endpoint, tmp / "worker.log")
    worker.start()
    try:
        files = {".podci.yml": CONFIG, ".podci/pod.yaml": POD}
        yield Stack(
            configured, BuildStore(redis), Repo(tmp / "repo", files, from_example=False), tmp / "worker-state"
        )
    finally:
        worker.stop()
        redis.flushdb()


def test_pages_with_their_own_state_directory_show_logs_from_s3(stack: Stack, tmp_path: Path) -> None:
    record = wait_for(stack.store, build(stack).id, timeout=180)
    assert record.state is BuildState.succeeded, record.reason
    assert set(record.logs) >= {"tests", "containers/app", "containers/tests"}
    assert all(where.startswith(stack.settings.log_store) for where in record.logs.values())
    # Nothing of the logs is left on the worker's disk: the store has them.
    assert not (stack.state_dir / "logs").exists()
    assert list((stack.state_dir / "scratch-logs").glob("*")) == []
    pages = configure(stack.settings, state_dir=tmp_path / "api-state", ui_tokens=UI_TOKEN)
    redis = Redis.from_url(pages.require_redis_url())
    with Server(create_app(pages, make_app(pages), redis)) as api:
        page = httpx.get(f"{api.url}/builds/{record.id}", headers=LOGIN)
        assert page.status_code == 200
        # the page's own links (relative to it) are what a reader follows
        tests, app = (
            httpx.get(page.url.join(f"{record.id}/logs/{name}"), headers=LOGIN)
            for name in ("tests", "containers/app")
            if f'href="{record.id}/logs/{name}"' in page.text
        )
    assert tests.status_code == 200 and "the-test-log-says-hello" in tests.text
    assert app.status_code == 200 and "the-app-container-says-hello" in app.text
    # The build's own processes never saw the store's credentials, so its log cannot show them.
    assert "AWS_" not in tests.text
    assert not any(value in tests.text for value in CREDENTIALS.values() if len(value) > 12)
    assert not (tmp_path / "api-state" / "logs").exists()


def test_gc_deletes_expired_logs_from_s3(stack: Stack) -> None:
    record = wait_for(stack.store, build(stack).id, timeout=180)
    logs = open_log_store(stack.settings.log_store, stack.settings.s3_endpoint_url)
    assert logs.names(record.name)
    gone = collect_garbage(stack.settings, stack.store, dry_run=True, logs=logs,
                           now=time.time() + stack.settings.retention_seconds + 60)  # fmt: skip
    assert f"logs {stack.settings.log_store}/{record.name}" in gone
    assert logs.names(record.name)  # a dry run deletes nothing
    collect_garbage(stack.settings, stack.store, dry_run=False, logs=logs)
    assert logs.names(record.name)  # not expired yet: kept
    collect_garbage(stack.settings, stack.store, dry_run=False, logs=logs,
                    now=time.time() + stack.settings.retention_seconds + 60)  # fmt: skip
    assert logs.names(record.name) == []


def test_a_store_down_at_teardown_is_retried_and_the_logs_arrive(
    settings: Settings, worker_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is not there when the build's teardown wants it; the build's objects are deleted
    anyway, the step is retried, and once the store answers the build completes with every log in it."""
    for name, value in CREDENTIALS.items():  # this process reads the bucket too
        monkeypatch.setenv(name, value)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    url = "s3://podci-late/podci"
    configured = other_db(
        settings, 5, state_dir=tmp_path / "worker-state", log_store=url, s3_endpoint_url=endpoint
    )
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    store = BuildStore(redis)
    worker = worker_for(worker_env, configured, endpoint, tmp_path / "worker.log")
    worker.start()
    try:
        stack = Stack(configured, store, Repo(tmp_path / "repo", FILES, from_example=False), tmp_path)
        record = build(stack)
        wait_until(
            lambda: "the logs stay on this worker" in (tmp_path / "worker.log").read_text(), timeout=180
        )
        waiting = store.get(record.id)
        assert waiting is not None and not waiting.complete and waiting.step == "teardown", waiting
        assert processes_of(configured.state_dir, record.name) == []  # the deletes did not wait for it
        with s3_server(port):
            make_bucket(endpoint, "podci-late")
            done = wait_for(store, record.id, timeout=240)
            assert done.state is BuildState.succeeded, done.reason
            logs = open_log_store(url, endpoint)
            assert {"tests", "containers/app"} <= set(logs.names(record.name))
            text = logs.read(record.name, "tests")
            assert text is not None and b"the-test-log-says-hello" in text
    finally:
        worker.stop()
        redis.flushdb()
