"""Redis that fails over: sentinel URLs in the settings, clients and workers that follow a failover, and
workers that outlive a Redis restart.

Every Redis here is a real `redis-server` (testkit.sentinel: a master, its replica and three sentinels,
or one server restarted on its port); every worker is a real `podci worker --beat` process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatch.app import make_app
from dispatch.submit import submit
from podci.embedded import free_port
from schemas.record import BuildRecord, BuildState
from schemas.redis_url import SentinelUrl, parse_sentinel
from schemas.settings import Settings
from store.builds import BuildStore
from store.connection import connect, connect_to
from testkit.gitrepo import Repo
from testkit.sentinel import RedisNode, Sentinels, sentinels
from tests.helpers import Worker, leftovers, slow_git, wait_for, wait_until
from tests.test_builds import request

FAST = {"stall_grace": "3", "reconcile_interval": "1", "teardown_grace": "1", "transient_retries": "2"}
BUILD_TIMEOUT = 240  # a build on a busy two-core machine, with a reconnect in between
FETCH_SECONDS = 12  # a checkout in progress when Redis goes away: a step running, its message unacked

# == settings ==========================================================================================

S = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"redis_url": S, "redis_sentinel_master": "mymaster"}, None),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, None),
        ({}, None),
        ({"redis_url": S}, "PODCI_REDIS_SENTINEL_MASTER is not set"),
        ({"redis_url": S, "redis_sentinel_master": ""}, "PODCI_REDIS_SENTINEL_MASTER is not set"),
        ({"redis_url": "redis://127.0.0.1/0", "redis_sentinel_master": "m"}, "does not name sentinels"),
        ({"redis_sentinel_master": "m"}, "does not name sentinels"),
        ({"redis_url": "sentinel://a:1;redis://b:2", "redis_sentinel_master": "m"}, "is not a sentinel URL"),
        ({"redis_url": "sentinel://a:port", "redis_sentinel_master": "m"}, "port that is not a number"),
        ({"redis_url": "sentinel://a:1/zero", "redis_sentinel_master": "m"}, "a database is a number"),
        ({"redis_url": "sentinel://", "redis_sentinel_master": "m"}, "is not a sentinel URL"),
    ],
)
def test_sentinel_settings(values: dict[str, str], problem: str | None) -> None:
    if problem is None:
        Settings(**values)  # type: ignore[arg-type]
        return
    with pytest.raises(ValidationError, match=problem):
        Settings(**values)  # type: ignore[arg-type]


def test_a_missing_master_name_stops_the_worker_with_a_sentence(tmp_path: Path) -> None:
    env = {**_clean_env(), "PODCI_REDIS_URL": S, "PODCI_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "podci", "worker"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "PODCI_REDIS_SENTINEL_MASTER is not set" in proc.stderr
    assert "sentinel monitor NAME" in proc.stderr


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("sentinel://h1:26379;sentinel://h2:26380", SentinelUrl((("h1", 26379), ("h2", 26380)))),
        ("sentinel://h1", SentinelUrl((("h1", 26379),))),
        ("sentinel://:pw@h1:1/3;sentinel://h2:2/3", SentinelUrl((("h1", 1), ("h2", 2)), 3, None, "pw")),
        ("sentinel://u:p%40ss@h1:1; sentinel://h2:2", SentinelUrl((("h1", 1), ("h2", 2)), 0, "u", "p@ss")),
    ],
)
def test_parse_sentinel(url: str, parsed: SentinelUrl) -> None:
    assert parse_sentinel(url) == parsed


def test_the_broker_follows_the_sentinels_and_workers_never_stop_reconnecting() -> None:
    on_sentinels = make_app(Settings(redis_url=S, redis_sentinel_master="mymaster"))
    assert on_sentinels.conf.broker_transport_options["master_name"] == "mymaster"
    assert on_sentinels.conf.result_backend_transport_options == {"master_name": "mymaster"}
    assert on_sentinels.conf.broker_connection_max_retries is None
    plain = make_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert "master_name" not in plain.conf.broker_transport_options


# == clients ===========================================================================================


@pytest.fixture
def redis_set(tmp_path: Path) -> Iterator[Sentinels]:
    with sentinels(tmp_path / "redis") as running:
        yield running


def test_connect_reaches_the_master_and_after_a_failover_the_new_one(redis_set: Sentinels) -> None:
    settings = Settings(redis_url=redis_set.url, redis_sentinel_master=redis_set.name)
    client = connect_to(settings, timeout=2)
    first = redis_set.master()
    assert client.info("server")["tcp_port"] == first.port
    client.set("podci:test:written", "before")
    wait_until(lambda: first.client().wait(1, 5000) >= 1)  # on the replica too

    killed = redis_set.kill_master()
    promoted = redis_set.wait_for_failover(killed.port)

    def on_new_master() -> bool:
        try:
            return bool(client.info("server")["tcp_port"] == promoted)
        except Exception:
            return False  # while the sentinels still name the dead master

    wait_until(on_new_master, timeout=60)
    assert client.get("podci:test:written") == b"before"
    client.set("podci:test:written", "after")
    assert redis_set.master().client().get("podci:test:written") == b"after"


def test_connect_without_the_master_name_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="PODCI_REDIS_SENTINEL_MASTER"):
        connect(S)


# == workers ===========================================================================================


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}


def _worker(tmp_path: Path, url: str, master: str | None) -> tuple[Settings, Worker]:
    values = {**FAST, "redis_url": url, "state_dir": str(tmp_path / "state")}
    if master:
        values["redis_sentinel_master"] = master
    settings = Settings(**values)  # type: ignore[arg-type]
    slow = slow_git(tmp_path / "bin", tmp_path / "fetches.log", FETCH_SECONDS)
    env = {**_clean_env(), **{f"PODCI_{k.upper()}": v for k, v in values.items()},
           "PATH": f"{slow}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    return settings, Worker(env, tmp_path / "worker.log")


def _fetches(tmp_path: Path) -> int:
    log = tmp_path / "fetches.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _submit(settings: Settings, repo: Repo, store: BuildStore) -> str:
    return submit(make_app(settings), store, settings, request(repo.path, "main", target=None)).id


def _build(settings: Settings, repo: Repo, store: BuildStore, build_id: str | None = None) -> BuildRecord:
    """Wait for the build (submitted now, unless given); it must succeed and leave nothing behind."""
    done = wait_for(store, build_id or _submit(settings, repo, store), timeout=BUILD_TIMEOUT)
    assert done.state is BuildState.succeeded, done.reason
    assert leftovers(settings.state_dir, done) == []
    return done


def _log(worker: Worker) -> str:
    return worker.log.read_text(errors="replace")


def _alive(worker: Worker) -> None:
    assert worker.proc is not None and worker.proc.poll() is None, "the worker exited"
    assert "Unrecoverable error" not in _log(worker)


def test_a_worker_outlives_a_redis_restart_and_builds_after_it(tmp_path: Path) -> None:
    """Redis crashes while a step runs (its message unacknowledged) and the worker waits on the queue:
    the worker reconnects, the running build finishes, and so does one sent after the restart."""
    server = RedisNode(tmp_path / "redis")
    server.start()
    settings, worker = _worker(tmp_path, f"redis://127.0.0.1:{server.port}/0", None)
    try:
        worker.start()
        repo = Repo(tmp_path / "repo")
        store = BuildStore(connect_to(settings))
        running = _submit(settings, repo, store)
        wait_until(lambda: _fetches(tmp_path) >= 1, timeout=120)

        server.stop(signal.SIGKILL)  # a crash; the append-only file keeps what was acknowledged
        wait_until(lambda: "Connection to broker lost" in _log(worker), timeout=60)
        time.sleep(5)  # down long enough for several failed reconnects
        server.start()

        _build(settings, repo, store, running)
        _build(settings, repo, store)
        _alive(worker)
    finally:
        worker.stop()
        server.stop(signal.SIGTERM)


def test_a_build_through_sentinels_and_another_after_a_failover(tmp_path: Path, redis_set: Sentinels) -> None:
    settings, worker = _worker(tmp_path, redis_set.url, redis_set.name)
    try:
        worker.start()
        repo = Repo(tmp_path / "repo")
        store = BuildStore(connect_to(settings))
        _build(settings, repo, store)
        running = _submit(settings, repo, store)
        wait_until(lambda: _fetches(tmp_path) >= 2, timeout=120)  # its checkout under way

        killed = redis_set.kill_master()
        redis_set.wait_for_failover(killed.port)
        wait_until(lambda: "Connection to broker lost" in _log(worker), timeout=60)

        _build(settings, repo, store, running)
        _build(settings, repo, store)
        _alive(worker)
    finally:
        worker.stop()


def test_a_worker_that_gives_up_ends_with_a_failure_status(tmp_path: Path) -> None:
    """What made the exits after a Redis restart invisible: a worker that stops on an unrecoverable
    error (here: no broker, and a retry budget of one, which podci's own workers never have) must end
    its command with a non-zero status, not 0."""
    script = (
        "from dispatch.app import make_app; from podci.cli import run_celery; "
        "from schemas.settings import Settings; "
        f"app = make_app(Settings(redis_url='redis://127.0.0.1:{free_port()}/0')); "
        "app.conf.broker_connection_max_retries = 1; "
        "run_celery(app, ['worker', '--pool', 'solo', '--without-mingle', '--without-gossip'])"
    )
    env = {**_clean_env(), "PODCI_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert "Unrecoverable error" in proc.stdout + proc.stderr
    assert proc.returncode == 1
