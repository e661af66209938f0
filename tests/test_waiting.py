"""Waiting costs no worker slot: many builds wait for setup at once with only two worker processes."""

from __future__ import annotations

from datetime import datetime

import pytest

from schemas.record import BuildRecord, BuildState
from tests.helpers import Repo, wait_for
from tests.test_builds import request
from workers.submit import submit

pytestmark = pytest.mark.usefixtures("worker")

SLOW_SETUP_POD = """\
containers:
  - name: tests
    image: python:3.12-slim
    command:
      - python3
      - -c
      - "import pathlib, signal, time; time.sleep(3); pathlib.Path('.setup-done').touch(); signal.pause()"
"""
CONFIG = """\
test:
  container: tests
  command: "true"
setup:
  file: .setup-done
"""


def most_at_once(windows: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def setup_window(record: BuildRecord) -> tuple[datetime, datetime]:
    step = record.step_record("wait_setup")
    assert step.started is not None and step.finished is not None
    return step.started, step.finished


def test_twenty_slow_setups_wait_side_by_side_on_two_worker_processes(app, store, settings, tmp_path) -> None:
    repo = Repo(
        tmp_path / "slow", {".podci.yml": CONFIG, ".podci/pod.yaml": SLOW_SETUP_POD}, from_example=False
    )
    # each build counts as its own repository, so PODCI_REPO_CONCURRENCY does not hold any back
    requests = [
        request(repo.path, "main", target=None, job="slow").model_copy(update={"repo": f"team/slow-{i}"})
        for i in range(20)
    ]
    records = [submit(app, store, settings, r) for r in requests]
    done = [wait_for(store, r.id, timeout=180) for r in records]
    assert [r.state for r in done] == [BuildState.succeeded] * 20, [r.reason for r in done]
    # With two worker processes, a worker that slept through setup could hold at most two builds in
    # it at once. Every setup lasts about 3 s, so many overlapping means nobody slept.
    assert most_at_once([setup_window(r) for r in done]) >= 8
    assert all(r.step_record("wait_setup").checks >= 1 for r in done)
