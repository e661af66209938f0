"""An upgrade as a rollout does it: a new worker starts beside the old one, then the old one gets
SIGTERM while builds are at every step. Nothing is lost: every build finishes as it would have, and
the old worker finishes what it runs and exits by itself (docs/operations.md, "Upgrades").
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from redis import Redis

from dispatch.app import make_app
from dispatch.submit import submit
from schemas.record import BuildState
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from tests.conftest import FAST
from tests.helpers import Worker, leftovers, wait_for, wait_until

DB = 2
TESTS = "import time, unittest\n\nclass Slow(unittest.TestCase):\n    def test_slow(self):\n"
TESTS += "        time.sleep(2)\n"


def test_a_rolling_upgrade_of_the_workers_loses_no_build(redis_url: str, tmp_path: Path) -> None:
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    redis = Redis.from_url(url)
    redis.flushdb()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env |= {**FAST, "PODCI_REDIS_URL": url, "PODCI_STATE_DIR": str(state)}
    settings = Settings(redis_url=url, state_dir=state, **{k[6:].lower(): v for k, v in FAST.items()})
    store, app = BuildStore(redis), make_app(settings)
    repo = Repo(tmp_path / "app", {"tests/test_slow.py": TESTS})
    old, new = Worker(env, tmp_path / "old.log"), Worker(env, tmp_path / "new.log")
    old.start()
    try:
        ids = []
        for number in range(6):
            request = BuildRequest(
                repo="team/app", job="upgrade", number=number + 1, provider="manual",
                source=Revision(clone_url=str(repo.path), ref="main"),
            )  # fmt: skip
            ids.append(submit(app, store, settings, request).id)
        wait_until(lambda: any((r := store.get(i)) and r.step == "run_tests" for i in ids), timeout=120)
        new.start()
        assert old.proc is not None
        os.killpg(old.proc.pid, signal.SIGTERM)  # what the kubelet sends at a rollout
        assert old.proc.wait(timeout=300) == 0, "the old worker did not finish its steps and exit"
        done = [wait_for(store, i, timeout=240) for i in ids]
        assert [(r.id, r.state, r.reason) for r in done] == [
            (r.id, BuildState.succeeded, r.reason) for r in done
        ]
        assert [r.attempts for r in done] == [1] * len(ids)  # no build was relaunched either
        assert [left for r in done if (left := leftovers(state, r))] == []
    finally:
        new.stop()
        old.stop()
        redis.flushdb()
    assert "warm shutdown" in (tmp_path / "old.log").read_text().lower()
