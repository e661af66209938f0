"""What closing podci costs and bounds: Redis bytes per retained build, and how fast the receiver says
503 (and /healthz says Redis is down) when Redis is down or hung.

Storage: the bundled example built `--builds` times through a real worker (local backend, embedded
Redis); then Redis' `used_memory` growth per build, each record's `MEMORY USAGE`, and the podci keys
that would never expire (the bounded indexes aside: there should be none).

Faults: `podci serve`'s app in front of a redis-server of its own, answering Jenkins triggers while
Redis is killed (down: connections refused) and while it is stopped with SIGSTOP (hung: it accepts
connections and never answers). Targets: a 503 within 1 s, /healthz within 1 s.

Usage: python -m bench.hardening [--builds N] [--requests N]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline_rate import local_stack, run_batch
from bench.stack import publish
from podci.example import example_repo
from podci.server import create_app
from schemas.settings import Settings
from store import keys
from store.connection import as_text
from testkit.servers import Server, redis_process

TOKEN = "bench-jenkins-token-hardening"


def storage(work: Path, builds: int) -> dict[str, Any]:
    with local_stack(work) as local:
        settings, app, store, client = local.settings, local.app, local.store, local.client
        repo = example_repo(work / "example")
        run_batch(app, store, settings, repo, 1, "warmup")  # the worker's start-up out of the numbers
        time.sleep(2)
        before = int(client.info("memory")["used_memory"])
        records = run_batch(app, store, settings, repo, builds, "retained")
        time.sleep(2)  # the final reports and metrics of the last builds
        after = int(client.info("memory")["used_memory"])
        assert all(r.state.value == "succeeded" for r in records), [r.reason for r in records]
        sizes = [int(client.memory_usage(keys.build(r.id)) or 0) for r in records]
        scanned = map(as_text, client.scan_iter(match="podci:*"))
        forever = [
            key for key in scanned if not keys.bounded_without_expiry(key) and int(client.ttl(key)) < 0
        ]
    return {
        "retained_builds": builds,
        "redis_bytes_per_retained_build": (after - before) / builds,
        "record_bytes_p50": statistics.median(sizes),
        "record_bytes_max": max(sizes),
        "podci_keys_without_expiry": len(forever),
    }


def _timed(call: Any) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    reply = call()
    return time.perf_counter() - start, reply


def faults(requests: int) -> dict[str, Any]:
    with redis_process() as (url, server):
        settings = Settings(redis_url=url, jenkins_token=TOKEN, clone_hosts="bitbucket.org")  # type: ignore[arg-type]
        results: dict[str, Any] = {"redis_timeout_s": settings.redis_timeout}
        with Server(create_app(settings)) as api:
            number = iter(range(1, 1_000_000))

            def trigger() -> httpx.Response:
                body = {"job": "faults", "build_number": next(number), "source_branch": "main",
                        "clone_url": "https://bitbucket.org/team/app.git"}  # fmt: skip
                return httpx.post(api.url + "/hooks/jenkins", json=body, headers={"X-Podci-Token": TOKEN},
                                  timeout=60)  # fmt: skip

            assert trigger().status_code == 202
            for state, act in (("hung", signal.SIGSTOP), ("down", None)):
                if act is not None:
                    server.send_signal(act)
                else:
                    server.send_signal(signal.SIGCONT)
                    server.kill()
                    server.wait()
                timed = [_timed(trigger) for _ in range(requests)]
                assert all(r.status_code == 503 and r.headers.get("Retry-After") for _, r in timed), timed[0]
                seconds = [s for s, _ in timed]
                health = [_timed(lambda: httpx.get(api.url + "/healthz", timeout=60)) for _ in range(5)]
                assert all(r.status_code == 503 for _, r in health)
                results.update({
                    f"intake_503_redis_{state}_p50_s": statistics.median(seconds),
                    f"intake_503_redis_{state}_max_s": max(seconds),
                    f"healthz_redis_{state}_max_s": max(s for s, _ in health),
                })  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podci-hardening-"))
    try:
        results = {**faults(args.requests), **storage(work, args.builds)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("podci closed by default: storage and faults at intake", results, "hardening")


if __name__ == "__main__":
    main()
