"""Test helpers: real git repositories, a real worker process, and checks that nothing was left."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from celery import Celery

from podci.embedded import stop_process_group
from schemas.record import BuildRecord
from store.builds import BuildStore

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """`podci worker --beat` as a real child process group, which a test may SIGKILL and restart."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 2) -> None:
        self.env, self.log, self.concurrency = env, log, concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "podci", "worker", "--beat", "--concurrency", str(self.concurrency),
                 "--loglevel", "INFO"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the whole worker (main process, pool children, beat): no chance to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout=20)


def wait_for(store: BuildStore, build_id: str, timeout: float = 120, until: str | None = None) -> BuildRecord:
    """Poll the record until the build completes (or reaches step `until`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.get(build_id)
        assert record is not None
        if until is not None and record.step == until:
            return record
        if record.complete:
            assert until is None, f"build {build_id} finished before it was seen at step {until}: {record}"
            return record
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not get there within {timeout}s: {store.get(build_id)}")


def wait_until(check: Callable[[], T], timeout: float = 60) -> T:
    """Poll `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"nothing after {timeout}s"
        time.sleep(0.1)
    return value


def processes_mentioning(*markers: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line or environment contains a marker."""
    wanted = [m.encode() for m in markers]
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cmdline").read_bytes() + b"\0" + (proc / "environ").read_bytes()
            if (
                any(m in text for m in wanted)
                and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def processes_of(state_dir: Path, build_name: str) -> list[int]:
    """A build's containers and test command carry its workspace in PODCI_WORKSPACE; their launchers
    name the build's directory on their command line. Both name this state directory, so builds of
    the same name run by another podci on the machine are not mistaken for this one's."""
    build_dir = state_dir / "builds" / build_name
    return processes_mentioning(f"PODCI_WORKSPACE={build_dir}/volume\0", f"{build_dir}/")


def leftovers(state_dir: Path, record: BuildRecord) -> list[str]:
    """Everything of a finished build that should be gone: processes, directories, port leases."""
    left = [f"process {pid}" for pid in processes_of(state_dir, record.name)]
    for path in (state_dir / "builds" / record.name, state_dir / "checkouts" / record.name):
        if path.exists():
            left.append(str(path))
    ports = state_dir / "ports"
    if ports.exists():
        left += [f"port lease {p.name}" for p in ports.iterdir() if p.read_text() == record.name]
    return left


class TaskMessages:
    """Every task event the workers send (`task-received`, `-started`, `-succeeded`...), as Celery
    reports them to Flower: what a build cost in messages, counted by the worker, not by podci."""

    def __init__(self, app: Celery) -> None:
        self.app, self.lock = app, threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.ready, self.thread = threading.Event(), threading.Thread(target=self._capture, daemon=True)
        self.receiver: Any = None

    def __enter__(self) -> TaskMessages:
        self.thread.start()
        assert self.ready.wait(30), "the event receiver did not start"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)

    def _capture(self) -> None:
        messages = self

        class Receiver(self.app.events.Receiver):  # type: ignore[misc, name-defined]
            def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
                super().on_consume_ready(*args, **kwargs)
                messages.ready.set()

        with self.app.connection_for_read() as connection:
            self.receiver = Receiver(connection, handlers={"*": self._seen})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _seen(self, event: dict[str, Any]) -> None:
        if str(event.get("type", "")).startswith("task-"):
            with self.lock:
                self.events.append(event)

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def received(self) -> list[dict[str, Any]]:
        """The `task-received` events: one per message a worker took."""
        return [e for e in self.all() if e["type"] == "task-received"]

    def of(self, build_id: str) -> Counter[str]:
        """Messages per task name whose first argument is the build."""
        prefix = f"['{build_id}'"
        return Counter(str(e.get("name")) for e in self.received() if str(e.get("args")).startswith(prefix))


def slow_git(bin_dir: Path, log: Path, seconds: float) -> Path:
    """A directory holding a `git` that notes every fetch in `log` and waits `seconds` before it, then
    runs the real one: a checkout over a slow link. Put it first on the worker's PATH."""
    real = shutil.which("git")
    assert real is not None
    bin_dir.mkdir(parents=True)
    script = bin_dir / "git"
    fetching = f"echo fetch >> {log}; sleep {seconds}; break"
    script.write_text(
        "#!/bin/sh\n"
        f'for word in "$@"; do if [ "$word" = fetch ]; then {fetching}; fi; done\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir
