"""Teardown on the local backend ends every process a build started (issue 13, finding 10), including
those that left its process group (`setsid`), its parent (a double fork) and its environment (`env -i`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from dispatch.submit import submit
from schemas.record import BuildState
from testkit.gitrepo import EXAMPLE, Repo
from tests.helpers import processes_mentioning, wait_for, wait_until
from tests.test_builds import request

pytestmark = pytest.mark.usefixtures("worker")

SLEEP = "python3 -c 'import time; time.sleep(301)'"


def test_processes_that_left_the_build_s_group_end_at_teardown(app, store, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Finding: a test's `setsid sleep 301` survived teardown."""
    marker = f"podci-escapee-{uuid.uuid4().hex}"
    script = "\n".join([
        f"setsid {SLEEP} {marker}-setsid &",
        f'env -i PATH="$PATH" setsid {SLEEP} {marker}-clean-env &',
        f'( sh -c "setsid {SLEEP} {marker}-double-fork &" & )',
        # the tests pass once all three run, so that teardown has them to find
        f"until [ $(pgrep -f -c {marker}) -ge 3 ]; do sleep 0.1; done",
    ])  # fmt: skip
    config = yaml.safe_load((EXAMPLE / ".podci.yml").read_text())
    config["test"]["command"] = ["sh", "-c", script]
    repo = Repo(tmp_path / "escape", {".podci.yml": yaml.safe_dump(config)})
    record = submit(app, store, settings, request(repo.path, "main", target=None))
    done = wait_for(store, record.id, timeout=180)
    assert done.state is BuildState.succeeded, done.reason
    # Teardown has run: nothing of the build may be left (zombies aside, which are not running).
    wait_until(lambda: processes_mentioning(marker) == [], timeout=60)
