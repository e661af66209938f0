"""How fast the local pipeline moves builds, and proof that waiting holds no worker slot.

Starts its own embedded Redis and a `podci worker` child (concurrency 2, like the 2-core target
machine), then runs two scenarios and prints a table (and writes bench/results/pipeline.json):

- trivial: N builds whose pod is one idle container and whose test command is `true`;
  builds per second end to end, per-build latency, worker + Redis CPU seconds per build.
- slow setup: 20 builds whose setup takes 3 s each; total wall time against the 20 x 3 s = 60 s a
  sleeping worker pool of 2 would need at best (30 s), and how many waited side by side.

Usage: python bench/pipeline_rate.py [--builds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from redis import Redis

from bench.stack import group_cpu, publish
from dispatch.app import make_app
from dispatch.submit import submit
from podci.embedded import child_worker, embedded_redis
from schemas.record import BuildRecord
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore

TRIVIAL = {
    ".podci.yml": "test:\n  container: main\n  command: 'true'\nsetup:\n  ready: true\n",
    ".podci/pod.yaml": "containers:\n  - name: main\n    image: none\n    command: [sleep, infinity]\n",
}
SLOW = {
    ".podci.yml": "test:\n  container: main\n  command: 'true'\nsetup:\n  file: .ready\n",
    ".podci/pod.yaml": (
        "containers:\n  - name: main\n    image: none\n    command: [python3, -c, "
        "\"import pathlib, signal, time; time.sleep(3); pathlib.Path('.ready').touch(); signal.pause()\"]\n"
    ),
}


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)
    return path


def redis_cpu(client: Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_batch(
    app, store: BuildStore, settings: Settings, repo: Path, count: int, job: str
) -> list[BuildRecord]:  # type: ignore[no-untyped-def]
    req = BuildRequest(job=job, repo=repo.name, source=Revision(clone_url=str(repo), ref="main"))
    ids = [submit(app, store, settings, req).id for _ in range(count)]
    done: dict[str, BuildRecord] = {}
    while len(done) < count:
        for build_id in ids:
            if build_id not in done and (record := store.get(build_id)) and record.complete:
                done[build_id] = record
        time.sleep(0.05)
    return [done[i] for i in ids]


def most_at_once(records: list[BuildRecord], step: str) -> int:
    events = []
    for record in records:
        entry = record.step_record(step)
        assert entry.started and entry.finished
        events += [(entry.started, 1), (entry.finished, -1)]
    current = peak = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak


@dataclass
class LocalStack:
    settings: Settings
    app: Celery
    store: BuildStore
    client: Redis
    worker: subprocess.Popen[bytes]


@contextmanager
def local_stack(work: Path) -> Iterator[LocalStack]:
    """An embedded Redis and one `podci worker` (local backend, concurrency 2) on it, in `work`. No
    per-repository limit: this measures the pipeline, and every build here is one repository's."""
    (work / "redis").mkdir()
    with embedded_redis(work / "redis", persist=False) as url:
        env = {**os.environ, "PODCI_REDIS_URL": url, "PODCI_STATE_DIR": str(work / "state"),
               "PODCI_REPO_CONCURRENCY": "0"}  # fmt: skip
        settings = Settings(redis_url=url, state_dir=work / "state")
        client = Redis.from_url(url)
        with child_worker(env, work / "worker.log", concurrency=2) as worker:
            store = BuildStore(client, settings.retention_seconds)
            yield LocalStack(settings, make_app(settings), store, client, worker)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podci-bench-"))
    results: dict[str, float] = {}
    try:
        with local_stack(work) as local:
            settings, app, store, client = local.settings, local.app, local.store, local.client
            trivial = make_repo(work / "trivial", TRIVIAL)
            run_batch(app, store, settings, trivial, 2, "warmup")  # worker start-up out of the numbers
            cpu0, rcpu0, t0 = sum(group_cpu(local.worker.pid)), redis_cpu(client), time.perf_counter()
            records = run_batch(app, store, settings, trivial, args.builds, "trivial")
            wall = time.perf_counter() - t0
            cpu, rcpu = sum(group_cpu(local.worker.pid)) - cpu0, redis_cpu(client) - rcpu0
            durations = [(r.finished - r.created).total_seconds() for r in records if r.finished]
            assert all(r.state.value == "succeeded" for r in records), [r.reason for r in records]
            results.update({
                "trivial_builds": args.builds,
                "trivial_builds_per_second": args.builds / wall,
                "trivial_latency_p50_s": statistics.median(durations),
                "trivial_latency_max_s": max(durations),
                "worker_cpu_s_per_build_incl_git": cpu / args.builds,
                "redis_cpu_s_per_build": rcpu / args.builds,
            })  # fmt: skip
            slow = make_repo(work / "slow", SLOW)
            t0 = time.perf_counter()
            records = run_batch(app, store, settings, slow, 20, "slow")
            results.update({
                "slow_setup_builds": 20,
                "slow_setup_wall_s": time.perf_counter() - t0,
                "slow_setup_sleeping_pool_floor_s": 20 * 3 / 2,
                "slow_setup_most_waiting_at_once": most_at_once(records, "wait_setup"),
            })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("podci local pipeline (worker concurrency 2)", results, "pipeline")


if __name__ == "__main__":
    main()
