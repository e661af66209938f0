"""Where `podci serve` spends its time under the intake benchmark's load: py-spy on each server process.

Runs the same stack and load as `bench/intake.py` and samples every server process with py-spy while
the measured requests are answered. Writes one raw (collapsed-stack) file per process to
bench/results/ (speedscope.app and flamegraph.pl read it) and prints, over all of them, the share of
samples spent in each part of a request and the functions with the most samples, inclusive and self.

py-spy counts a thread that is runnable but waiting for a core as busy, at the line it was stopped
on; on a machine with more busy processes than cores that shows up as socket sends (a write that woke
Redis, which then took the core). `--gil` keeps only samples holding the GIL: the Python work alone.

Usage: python -m bench.profile_intake [--requests N] [--concurrency C] [--workers W] [--gil]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

try:
    from bench.intake import RESULTS, WARMUP, Stack, generate, running_stack
except ModuleNotFoundError:  # run as `python bench/profile_intake.py`: bench/ itself is on sys.path
    from intake import RESULTS, WARMUP, Stack, generate, running_stack  # type: ignore[no-redef,import-not-found]

# The parts of a request, in the order a sample is assigned: the first whose frame it contains wins.
PARTS = [
    ("enqueue: Celery send_task", "send_task (celery/app/base.py)"),
    ("enqueue: Celery send_task", "AsyncResult.__del__ (celery/result.py)"),  # unsubscribes, later
    ("record: BuildStore.create (INCR + Lua)", "BuildStore.create (workers/store.py)"),
    ("mark queued: BuildStore.mark_queued", "BuildStore.mark_queued (workers/store.py)"),
    ("supersede: stop_pull_request", "Intake.stop_pull_request (events/intake.py)"),
    ("log line", "Logger."),
    ("parse: bitbucket.parse", "parse (events/bitbucket.py)"),
    ("signature: check_bitbucket", "check_bitbucket (events/receiver.py)"),
    ("json.loads", "loads (json/__init__.py)"),
    ("body: read_body", "read_body (events/receiver.py)"),
    ("answer: JSONResponse", "JSONResponse"),
    ("rest of the handler", "receive (events/receiver.py)"),
    ("FastAPI/Starlette routing and middleware", "Starlette.__call__"),
    ("uvicorn HTTP protocol", "uvicorn/protocols/http"),
]


# Where a sample stops when the thread is in a Redis round trip: sending, or reading the answer.
REDIS_SOCKET = {
    "AbstractConnection.send_packed_command (redis/connection.py)",
    "SocketBuffer._read_from_socket (redis/_parsers/socket.py)",
}


def _frame(raw: str) -> str:
    """`function (file:line)` without the line, so one function is one entry."""
    return re.sub(r":\d+\)$", ")", raw)


def summarise(files: list[Path], top: int) -> str:
    total = waiting = 0
    parts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for path in files:
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue  # a line cut short when py-spy was stopped
            n = int(count)
            frames = [_frame(f) for f in stack.split(";")]
            total += n
            joined = ";".join(frames)
            part = next((label for label, marker in PARTS if marker in joined), "other (event loop, idle)")
            parts[part] += n
            for name in set(frames):
                inclusive[name] += n
            own[frames[-1]] += n
            if frames[-1] in REDIS_SOCKET:
                waiting += n
    if not total:
        return "no samples"

    def table(counter: Counter[str], limit: int) -> list[str]:
        return [f"  {100 * n / total:5.1f}%  {name[:120]}" for name, n in counter.most_common(limit)]

    lines = [f"{total} samples", "by part of the request:", *table(parts, len(parts))]
    lines.append(f"in Redis socket calls, across all parts: {100 * waiting / total:5.1f}%")
    lines += ["inclusive:", *table(inclusive, top), "self:", *table(own, top)]
    return "\n".join(lines)


def profile(stack: Stack, args: argparse.Namespace) -> list[Path]:
    generate(args.loadgen, stack.port, 1, WARMUP, args.concurrency).check(WARMUP)
    spy = Path(sys.executable).parent / "py-spy"
    RESULTS.mkdir(exist_ok=True)
    for old in RESULTS.glob("intake-profile-*.txt"):
        old.unlink()  # named by process id: an earlier run's would be summed in
    files, spies = [], []
    for proc in stack.server_processes():
        out = RESULTS / f"intake-profile-{proc.pid}.txt"
        argv = [str(spy), "record", "--pid", str(proc.pid), "--format", "raw", "--rate", str(args.rate),
                "--output", str(out), "--nonblocking", *(["--gil"] if args.gil else [])]  # fmt: skip
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        files.append(out)
    time.sleep(1)  # py-spy attaches
    if any(each.poll() is not None for each in spies):
        raise SystemExit(
            "py-spy could not attach: it needs ptrace (root, or CAP_SYS_PTRACE in a container, or "
            "kernel.yama.ptrace_scope=0)"
        )
    start = time.perf_counter()
    generate(args.loadgen, stack.port, WARMUP + 1, args.requests, args.concurrency).check(args.requests)
    wall = time.perf_counter() - start
    print(f"{args.requests / wall:.0f} requests/s while sampled")
    for each in spies:
        each.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    for each in spies:
        each.wait(timeout=30)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="`podci serve --workers`")
    parser.add_argument("--loadgen", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--rate", type=int, default=250, help="samples per second and process")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--top", type=int, default=40, help="functions listed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with running_stack(args.workers) as stack:
        files = profile(stack, args)
    print(summarise(files, args.top))


if __name__ == "__main__":
    main()
