"""The local backend's stand-in for a kubelet's probes and the pod watch: one process per build while
its setup is under way, which looks at the build's containers and wakes the build when that changes
(setup complete, or a container gone), so that waiting costs the workers nothing.

Run as `python -m workers.backends.local.watcher --build ID --state-dir DIR`, with the Redis URL in
`PODCI_WAKE_REDIS` (and a sentinel URL's master name in `PODCI_WAKE_REDIS_MASTER`; its environment,
kept private), detached like a container (teardown ends it). It
reads the build's record once, then looks every probe period (the shortest `periodSeconds`, within
0.25-2 s) until setup is complete or has failed, pushes the build onto `store.keys.WAKES` (a worker's
waker thread sends the parked step) and exits. The end of a container or of the tests wakes the
build from the launcher itself (`proc --wake-build`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from redis import Redis

from schemas.record import BuildRecord
from schemas.settings import scratch_log_dir
from store import keys
from store.builds import BuildStore
from store.connection import connect
from workers.backends.base import BuildContext
from workers.backends.local.backend import LocalBackend
from workers.backends.local.proc import WAKE_MASTER_ENV, WAKE_REDIS_ENV
from workers.private import keep_memory_private


def period(ctx: BuildContext) -> float:
    periods = [c.readiness_probe.period_seconds for c in ctx.pod.containers if c.readiness_probe is not None]
    return max(0.25, min(2.0, min(periods, default=1) / 2))


def watch(redis: Redis, backend: LocalBackend, ctx: BuildContext) -> str:
    """Look until setup is decided (or the build is gone); returns why it stopped."""
    build_dir = backend.root / ctx.name
    while build_dir.is_dir():
        status = backend.setup_status(ctx)
        if status.ready or status.failure:
            redis.rpush(keys.WAKES, ctx.build_id)
            return "setup failed" if status.failure else "setup complete"
        time.sleep(period(ctx))
    return "the build was torn down"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="workers.backends.local.watcher")
    for flag in ("--build", "--state-dir"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    keep_memory_private()
    url = os.environ[WAKE_REDIS_ENV]
    master = os.environ.get(WAKE_MASTER_ENV)
    redis = connect(url, timeout=10, master=master)
    record: BuildRecord | None = BuildStore(redis).get(args.build)
    if record is None:
        print(f"no build {args.build!r} in the Redis of {WAKE_REDIS_ENV}")
        return 1
    state = Path(args.state_dir)
    ctx = BuildContext.from_record(
        record, state / "checkouts" / record.name, scratch_log_dir(state, record.name)
    )
    print(watch(redis, LocalBackend(state, redis_url=url, redis_master=master), ctx))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
