"""What Flower is shown, read from Celery's own events as Flower reads them: every step of a build
names the build, and the reconciler, which beat runs every few seconds, sends no task events at all
(its entries would push the builds' steps out of Flower's task list)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from dispatch.submit import submit
from schemas.record import BuildState, Step
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from tests.helpers import TaskMessages, wait_for, wait_until
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def task_events(app: Celery) -> Iterator[TaskMessages]:
    with TaskMessages(app) as events:
        yield events


def reconciles_in_log(log: Path) -> int:
    """The worker's own log line for each podci.reconcile it received: proof that it ran."""
    return log.read_text(errors="replace").count("podci.reconcile[")


def test_steps_name_their_build_and_the_reconciler_sends_no_task_events(
    task_events: TaskMessages, app: Celery, store: BuildStore, settings: Settings, state_dir: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    log = state_dir / "worker.log"
    before = reconciles_in_log(log)
    record = submit(app, store, settings, request(Repo(tmp_path / "events").path, "main", target=None))
    assert wait_for(store, record.id).state is BuildState.succeeded

    def teardown_seen() -> bool:
        return any(e.get("name") == "podci.teardown" and record.id in e.get("args", "")
                   for e in task_events.received())  # fmt: skip

    wait_until(teardown_seen, timeout=60)
    wait_until(lambda: reconciles_in_log(log) >= before + 2, timeout=60)  # beat: every second here

    received = task_events.received()
    assert not [e for e in received if e.get("name") == "podci.reconcile"]
    announced = {e["uuid"] for e in received}
    # A task-started or task-succeeded of a task never announced would be a reconcile run's.
    assert {e["uuid"] for e in task_events.all()} <= announced
    steps = {e["name"]: e for e in received if record.id in e.get("args", "")}
    assert {f"podci.{step.value}" for step in Step} <= set(steps)
    for event in received:
        if event.get("name", "").removeprefix("podci.") in Step.__members__:
            assert event["args"].startswith("['"), event  # the build id first: Flower's args column
