"""What Flower is shown, read from Celery's own events as Flower reads them: every step of a build
names the build, and the reconciler, which beat runs every few seconds, sends no task events at all
(its entries would push the builds' steps out of Flower's task list)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from dispatch.submit import submit
from schemas.record import BuildState, Step
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from tests.helpers import wait_for, wait_until
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")


class TaskEvents:
    """Every task event the workers send (`task-received`, `-started`, `-succeeded`, ...)."""

    def __init__(self, app: Celery) -> None:
        self.app, self.lock = app, threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        events = self

        class Receiver(self.app.events.Receiver):  # type: ignore[misc, name-defined]
            def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
                super().on_consume_ready(*args, **kwargs)
                events.ready.set()

        with self.app.connection_for_read() as connection:
            self.receiver = Receiver(connection, handlers={"*": self._seen})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _seen(self, event: dict[str, Any]) -> None:
        if str(event.get("type", "")).startswith("task-"):
            with self.lock:
                self.events.append(event)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == "task-received"]

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)


@pytest.fixture
def task_events(app: Celery) -> Iterator[TaskEvents]:
    events = TaskEvents(app)
    events.thread.start()
    assert events.ready.wait(30), "the event receiver did not start"
    yield events
    events.receiver.should_stop = True
    events.thread.join(10)


def reconciles_in_log(log: Path) -> int:
    """The worker's own log line for each podci.reconcile it received: proof that it ran."""
    return log.read_text(errors="replace").count("podci.reconcile[")


def test_steps_name_their_build_and_the_reconciler_sends_no_task_events(
    task_events: TaskEvents, app: Celery, store: BuildStore, settings: Settings, state_dir: Path,
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
