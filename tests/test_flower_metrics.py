"""Watching builds: Flower lists the pipeline's tasks and workers; /metrics counts the builds."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dispatch.submit import submit
from podci.embedded import free_port, stop_process_group
from podci.server import create_app
from schemas.record import BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from testkit.servers import Server
from tests.helpers import wait_for, wait_until
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")

METRICS_TOKEN = "metrics-token-for-tests"
METRICS_LOGIN = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def with_metrics_token(settings: Settings) -> Settings:
    return Settings(**{**settings.model_dump(), "metrics_token": METRICS_TOKEN})


@pytest.fixture(scope="module")
def flower(worker_env: dict[str, str], state_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {**worker_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    with open(state_dir / "flower.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podci", "flower", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/healthcheck"), timeout=30)
        # Flower only sees events sent after it subscribed: wait until it has seen one (a worker's
        # heartbeat, every two seconds; podci.reconcile sends none), so the build below is seen from
        # its first task on.
        wait_until(lambda: _heartbeats(url), timeout=60)
        yield url
    finally:
        stop_process_group(proc, timeout=10)


def _heartbeats(url: str) -> int:
    workers = httpx.get(url + "/workers", params={"json": 1}, timeout=10).json()["data"]
    return sum(int(worker.get("worker-heartbeat", 0)) for worker in workers)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_flower_lists_the_tasks_of_a_finished_build_and_the_worker(
    flower: str, app, store, settings, tmp_path
) -> None:
    record = submit(app, store, settings, request(Repo(tmp_path / "flower").path, "main", target=None))
    assert wait_for(store, record.id).state is BuildState.succeeded

    def tasks_of_build() -> set[str]:
        tasks = httpx.get(flower + "/api/tasks", params={"limit": 2000}, timeout=10).json()
        return {t["name"] for t in tasks.values() if record.id in (t.get("args") or "")}

    names = wait_until(lambda: {"podci.checkout", "podci.teardown"} <= tasks_of_build() and tasks_of_build())
    assert {f"podci.{s}" for s in ("create_service", "create_pod", "run_tests", "teardown")} <= names
    workers = wait_until(lambda: httpx.get(flower + "/api/workers", params={"refresh": 1}, timeout=10).json())
    assert any(name.startswith("celery@") for name in workers)


def scrape(url: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(url + "/metrics", headers=METRICS_LOGIN).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_the_builds_this_test_ran(app, store: BuildStore, settings: Settings, tmp_path) -> None:
    example = Repo(tmp_path / "metrics")
    example.branch("broken", {"tests/test_no.py": "import unittest\n\nclass T(unittest.TestCase):\n"
                                        "    def test_no(self):\n        self.fail('no')\n"})  # fmt: skip
    with Server(create_app(with_metrics_token(settings), app)) as server:
        before = scrape(server.url)
        runs = [
            submit(app, store, settings, request(example.path, ref, target=None))
            for ref in ("main", "broken")
        ]
        assert [wait_for(store, r.id).state for r in runs] == [BuildState.succeeded, BuildState.failed]
        after = wait_until(lambda: _moved(before, scrape(server.url)))
    for state in ("succeeded", "failed"):
        key = f'podci_builds_total{{state="{state}"}}'
        assert after[key] - before.get(key, 0) == 1
    key = 'podci_step_duration_seconds_count{step="run_tests"}'
    assert after[key] - before.get(key, 0) == 2
    assert 'podci_queue_depth{queue="podci.steps"}' in after


def _moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    key = 'podci_builds_total{state="failed"}'
    return after if after.get(key, 0) > before.get(key, 0) else None


def test_metrics_text_is_prometheus_exposition(settings: Settings, app) -> None:
    with Server(create_app(with_metrics_token(settings), app)) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        reply = httpx.get(server.url + "/metrics", headers=METRICS_LOGIN)
    assert reply.headers["content-type"].startswith("text/plain")
    assert re.search(r"^# TYPE podci_builds(_total)? counter$", reply.text, re.M)
    assert re.search(r"^# TYPE podci_step_duration_seconds histogram$", reply.text, re.M)
