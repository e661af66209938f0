"""Webhook intake alone: requests per second and latency of `podci serve` on this machine.

Starts an embedded Redis and `podci serve` (one uvicorn process, no worker: builds are recorded and
queued, not run), then posts signed Bitbucket Server `pr:opened` webhooks, each for a new pull
request so every one creates a build. The load generator (httpx, asyncio) shares the machine's
cores with the server, so the numbers are a floor.

Usage: python bench/intake.py [--requests N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from events.signature import sign
from podci.embedded import embedded_redis, free_port, stop_process_group

SECRET = "bench-secret"


def payload(n: int) -> bytes:
    def ref(name: str, sha: str) -> dict[str, object]:
        links = {"clone": [{"name": "http", "href": "https://bitbucket.example.com/scm/team/webapp.git"}]}
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": sha,
                "repository": {"slug": "webapp", "project": {"key": "TEAM"}, "links": links}}  # fmt: skip

    pull_request = {"id": n, "fromRef": ref(f"topic-{n}", f"{n:040x}"), "toRef": ref("main", "f" * 40)}
    body = {"eventKey": "pr:opened", "actor": {"name": "bench"}, "pullRequest": pull_request}
    return json.dumps(body).encode()


async def fire(url: str, total: int, concurrency: int, first: int = 1) -> list[float]:
    """Post `total` webhooks for pull requests `first`, `first + 1`, ...; each starts a build."""
    bodies = [payload(first + n) for n in range(total)]
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one_worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                headers = {
                    "X-Event-Key": "pr:opened",
                    "X-Request-Id": f"bench-{first + i}",
                    "X-Hub-Signature": sign(bodies[i], SECRET),
                    "Content-Type": "application/json",
                }
                start = time.perf_counter()
                reply = await client.post(url, content=bodies[i], headers=headers)
                latencies.append(time.perf_counter() - start)
                assert reply.status_code == 202, reply.text

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podci-intake-"))
    (work / "redis").mkdir()
    try:
        with embedded_redis(work / "redis", persist=False) as redis_url:
            port = free_port()
            env = {
                **os.environ,
                "PODCI_REDIS_URL": redis_url,
                "PODCI_STATE_DIR": str(work),
                "PODCI_BITBUCKET_SERVER_SECRET": SECRET,
                "PODCI_BITBUCKET_CLOUD_SECRET": SECRET,
            }
            server = subprocess.Popen(
                [sys.executable, "-m", "podci", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning"], env=env, start_new_session=True,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 20
                while True:
                    try:
                        if httpx.get(base + "/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, "podci serve did not start"
                        time.sleep(0.1)
                asyncio.run(fire(base + "/hooks/bitbucket", 200, args.concurrency))  # warm-up
                start = time.perf_counter()
                latencies = asyncio.run(
                    fire(base + "/hooks/bitbucket", args.requests, args.concurrency, 1000)
                )
                wall = time.perf_counter() - start
            finally:
                stop_process_group(server, timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    results = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "requests_per_second": round(args.requests / wall, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }
    for key, value in results.items():
        print(f"{key:>22}: {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "intake.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
