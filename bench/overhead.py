"""podci's orchestration cost per build against the floor, measured in the same run on the same Redis.

podci: builds started by webhooks, run by one `podci worker` (2 pool processes, as on the 2-core
target) through the Kubernetes backend against the fake API server (whose own CPU is the cluster's, not
ours). We count the Celery tasks the worker ran per build (steps, re-looks, reports, the reconciler).
The floor: the same number of chains, each a bare chain of that many no-op Celery tasks (bench/floor.py),
on the same Redis server with the same worker settings and flags.

CPU is read from /proc for the worker's process group and from Redis' INFO. The worker's figure is split
into its own Python processes and the git processes it ran (fetch and merge: the build's work, not
orchestration); the ratio is taken on worker Python + Redis, against the floor's worker + Redis.

Usage: python -m bench.overhead [--builds N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from bench.e2e import send, wait_final
from bench.floor import DONE_KEY, QUEUE, make_floor_app, send_chains
from bench.stack import RedisServer, Stack, group_cpu, stack
from podci.embedded import stop_process_group
from store.builds import BuildStore

TASK_LINE = re.compile(rb"Task ([\w.]+)\[[0-9a-f-]+\] (?:succeeded|retry|raised|failed)")


def tasks_in(log: Path, since: int = 0) -> Counter[str]:
    """Tasks run, by name, in the log after byte `since`."""
    return (
        Counter(m.decode() for m in TASK_LINE.findall(log.read_bytes()[since:]))
        if log.exists()
        else Counter()
    )


def measure_podci(
    built: Stack,
    builds: int,
    timeout: float = 600,
    warmed: Callable[[], None] | None = None,
    idle: float = 0.0,
) -> dict[str, Any]:
    """`warmed`: called after the warm-up builds, before the measured ones (to change the cluster).
    `idle`: seconds to measure the stack with no build first (heartbeats, the reconciler's passes): the
    `idle_*_per_s` rates, which a caller comparing runs of different lengths takes off each run."""
    built.start_workers(1, 2)
    group, store = built.workers[0], BuildStore(built.store_client())
    branches = [
        (f"topic-{n}", built.repo.branch(f"topic-{n}", {f"n{n}.txt": f"{n}\n"})) for n in range(builds + 2)
    ]
    with httpx.Client(timeout=30) as client:
        warm = [send(client, built, 50_000 + n, branches[n])[1] for n in range(2)]
        wait_final(store, warm, 120)
        time.sleep(2)  # the warm-up's trailing tasks (stale re-looks) out of the window
        if warmed is not None:
            warmed()
        assert group.proc is not None
        rates = _idle_rates(built, idle) if idle > 0 else {}
        (own0, git0), redis0, since = group_cpu(group.proc.pid), built.redis.cpu(), group.log.stat().st_size
        start = time.perf_counter()
        ids = [send(client, built, n + 1, branches[n + 2])[1] for n in range(builds)]
        records = wait_final(store, ids, timeout)
        wall = time.perf_counter() - start
        time.sleep(2)  # let the last re-looks run: they are part of what a build costs
    (own1, git1), redis1, tasks = group_cpu(group.proc.pid), built.redis.cpu(), tasks_in(group.log, since)
    window = time.perf_counter() - start
    group.stop()
    built.workers.clear()
    ok = sum(r.state.value == "succeeded" for r in records)
    if ok != builds:
        reasons = sorted({r.reason for r in records if r.state.value != "succeeded"})
        raise SystemExit(f"only {ok} of {builds} podci builds succeeded: {reasons}")
    return {
        "builds": builds,
        "wall_s": wall,
        "tasks_per_build": sum(tasks.values()) / builds,
        "worker_cpu_s_per_build": (own1 - own0) / builds,
        "git_cpu_s_per_build": (git1 - git0) / builds,
        "redis_cpu_s_per_build": (redis1 - redis0) / builds,
        "tasks_per_build_by_name": {name: round(n / builds, 2) for name, n in tasks.most_common()},
        "window_s": window,
        **rates,
    }


def _idle_rates(built: Stack, seconds: float) -> dict[str, float]:
    """What the worker group and Redis cost per second with nothing to build."""
    group = built.workers[0]
    assert group.proc is not None
    (own0, _), redis0, since = group_cpu(group.proc.pid), built.redis.cpu(), group.log.stat().st_size
    time.sleep(seconds)
    (own1, _), redis1, tasks = group_cpu(group.proc.pid), built.redis.cpu(), tasks_in(group.log, since)
    return {
        "idle_worker_cpu_s_per_s": (own1 - own0) / seconds,
        "idle_redis_cpu_s_per_s": (redis1 - redis0) / seconds,
        "idle_tasks_per_s": sum(tasks.values()) / seconds,
    }


def measure_floor(redis: RedisServer, work: Path, chains: int, length: int) -> dict[str, float]:
    url = redis.url.rsplit("/", 1)[0] + "/1"
    env = {**os.environ, "FLOOR_REDIS_URL": url}
    argv = [sys.executable, "-m", "celery", "-A", "bench.floor", "worker", "--queues", QUEUE,
            "--loglevel", "INFO", "--concurrency", "2", "--events", "--without-gossip",
            "--without-mingle"]  # fmt: skip
    log = work / "floor.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    app, counter = make_floor_app(url), Redis.from_url(url)

    def finished(total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while int(counter.get(DONE_KEY) or 0) < total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the floor run did not finish; see {log}")
            time.sleep(0.05)

    try:
        send_chains(app, 2, length)
        finished(2, 60)
        time.sleep(1)
        (own0, _), redis0, since = group_cpu(proc.pid), redis.cpu(), log.stat().st_size
        start = time.perf_counter()
        send_chains(app, chains, length)
        finished(2 + chains, 600)
        wall = time.perf_counter() - start
        time.sleep(1)
        (own1, _), redis1, tasks = group_cpu(proc.pid), redis.cpu(), tasks_in(log, since)
    finally:
        stop_process_group(proc, timeout=20)
    return {
        "chains": chains,
        "wall_s": wall,
        "tasks_per_chain": sum(tasks.values()) / chains,
        "worker_cpu_s_per_chain": (own1 - own0) / chains,
        "redis_cpu_s_per_chain": (redis1 - redis0) / chains,
    }


def run(builds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podci-overhead-") as tmp, stack(Path(tmp)) as built:
        podci = measure_podci(built, builds)
        floor = measure_floor(built.redis, Path(tmp), builds, max(1, round(podci["tasks_per_build"])))
    podci_cpu = podci["worker_cpu_s_per_build"] + podci["redis_cpu_s_per_build"]
    floor_cpu = floor["worker_cpu_s_per_chain"] + floor["redis_cpu_s_per_chain"]
    return {
        **{f"podci_{k}": v for k, v in podci.items()},
        **{f"floor_{k}": v for k, v in floor.items()},
        "podci_orchestration_cpu_s_per_build": podci_cpu,
        "floor_cpu_s_per_build": floor_cpu,
        "overhead_ratio": podci_cpu / floor_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=60)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "overhead.json")
    args = parser.parse_args()
    results = run(args.builds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:>40}: {value:.4f}" if isinstance(value, float) else f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
