"""Waiting costs no worker slot: many builds wait for setup at once with only two worker processes.

The setups wait on a gate the test opens: with two worker processes that slept through setup, at most
two builds could ever be in `wait_setup` at once. All twenty being there together, before the gate
opens, shows nobody sleeps, however slow the machine is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dispatch.submit import submit
from schemas.record import BuildState, StepState
from store.builds import BuildStore
from testkit.gitrepo import Repo
from tests.helpers import wait_for, wait_until
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")

CONFIG = """\
test:
  container: tests
  command: "true"
setup:
  file: .setup-done
"""
BUILDS = 20


def gated_pod(gate: Path) -> str:
    """A container whose setup completes only once `gate` exists."""
    script = (
        "import os, pathlib, signal, time\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.1)\n"
        "pathlib.Path('.setup-done').touch(); signal.pause()"
    )
    container = {"name": "tests", "image": "python:3.12-slim", "command": ["python3", "-c", script]}
    return yaml.safe_dump({"containers": [container]})


def waiting_in_setup(store: BuildStore, ids: list[str]) -> int:
    records = [store.get(i) for i in ids]
    return sum(1 for r in records if r is not None and r.step_record("wait_setup").state is StepState.running)


def test_twenty_builds_wait_for_setup_side_by_side_on_two_worker_processes(
    app, store, settings, tmp_path
) -> None:
    gate = tmp_path / "gate"
    files = {".podci.yml": CONFIG, ".podci/pod.yaml": gated_pod(gate)}
    repo = Repo(tmp_path / "gated", files, from_example=False)
    # each build counts as its own repository, so PODCI_REPO_CONCURRENCY does not hold any back
    requests = [
        request(repo.path, "main", target=None, job="gated").model_copy(update={"repo": f"team/gated-{i}"})
        for i in range(BUILDS)
    ]
    ids = [submit(app, store, settings, r).id for r in requests]
    try:
        wait_until(lambda: waiting_in_setup(store, ids) == BUILDS, timeout=240)
    finally:
        gate.touch()  # whatever happened, let every build finish and tear down
    done = [wait_for(store, i, timeout=240) for i in ids]
    assert [r.state for r in done] == [BuildState.succeeded] * BUILDS, [r.reason for r in done]
    assert all(r.step_record("wait_setup").checks >= 1 for r in done)
