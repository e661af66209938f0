"""A step that runs long holds its lease: the reconciler never sends it again beside itself.

A checkout that takes 90 s (git's fetch made slow by a wrapper around the real git, as a slow link
would) under PODCI_STALL_GRACE=2, with the reconciler looking five times a second: without the lease it was
re-sent after 2 s and two checkouts deleted each other's directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from dispatch.app import make_app
from dispatch.submit import submit
from schemas.record import BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from tests.helpers import Worker, leftovers, slow_git, wait_for
from tests.test_builds import request
from tests.test_webhooks import other_db

FETCH_SECONDS = 90


@pytest.fixture
def slow(
    settings: Settings, worker_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Settings, Path, Worker]]:
    fetches = tmp_path / "fetches.log"
    bin_dir = slow_git(tmp_path / "bin", fetches, FETCH_SECONDS)
    configured = other_db(settings, 11, stall_grace=2, reconcile_interval=0.2, state_dir=tmp_path / "state")
    env = {
        **worker_env, "PODCI_REDIS_URL": configured.require_redis_url(), "PODCI_STALL_GRACE": "2",
        "PODCI_RECONCILE_INTERVAL": "0.2", "PODCI_STATE_DIR": str(tmp_path / "state"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    Redis.from_url(configured.require_redis_url()).flushdb()
    handle = Worker(env, tmp_path / "worker.log")
    try:
        yield configured, fetches, handle
    finally:
        handle.stop()


def test_a_ninety_second_checkout_runs_once(slow: tuple[Settings, Path, Worker], tmp_path: Path) -> None:
    configured, fetches, worker = slow
    repo = Repo(tmp_path / "repo")
    store = BuildStore(Redis.from_url(configured.require_redis_url()))
    record = submit(make_app(configured), store, configured, request(repo.path, "main", target=None))
    # The worker starts after the build's first due time has passed (as on a busy machine): its
    # message is overdue when it arrives, and must still run once.
    time.sleep(3)
    worker.start()
    done = wait_for(store, record.id, timeout=FETCH_SECONDS + 120)
    assert done.state is BuildState.succeeded, done.reason
    assert fetches.read_text().splitlines() == ["fetch"]  # one checkout, one fetch: never a second copy
    assert leftovers(configured.state_dir, done) == []
