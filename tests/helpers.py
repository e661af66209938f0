"""Test helpers: real git repositories, a real worker process, and checks that nothing was left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from podci.embedded import stop_process_group
from schemas.record import BuildRecord
from workers.store import BuildStore

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "webapp"
# The shared payload corpus lives beside the checkout (`../shared/fixtures`), as in CI.
FIXTURES = Path(os.environ.get("PODCI_FIXTURES") or ROOT.parent / "shared" / "fixtures")
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid",
}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
    )
    return proc.stdout.strip()


class Repo:
    """A real git repository built file by file, branch by branch."""

    def __init__(self, path: Path, files: dict[str, str] | None = None, *, from_example: bool = True) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "--quiet", "--initial-branch=main")
        if from_example:
            shutil.copytree(EXAMPLE, path, dirs_exist_ok=True)
        self.commit(files or {}, "initial")

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def head(self, branch: str) -> str:
        return git(self.path, "rev-parse", branch)

    def commit_on(self, branch: str, files: dict[str, str]) -> str:
        git(self.path, "checkout", "--quiet", branch)
        sha = self.commit(files, f"more on {branch}")
        git(self.path, "checkout", "--quiet", "main")
        return sha

    def branch(self, name: str, files: dict[str, str], base: str = "main") -> str:
        git(self.path, "checkout", "--quiet", "-b", name, base)
        sha = self.commit(files, f"{name}")
        git(self.path, "checkout", "--quiet", "main")
        return sha


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


def wait_for(store: BuildStore, build_id: str, timeout: float = 90, until: str | None = None) -> BuildRecord:
    """Poll the record until the build completes (or reaches step `until`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.get(build_id)
        assert record is not None
        if record.complete or (until is not None and record.step == until):
            return record
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not get there within {timeout}s: {store.get(build_id)}")


def wait_until(check: Callable[[], T], timeout: float = 30) -> T:
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


def processes_of(build_name: str) -> list[int]:
    """A build's containers and test command carry PODCI_BUILD; their launchers name the build's
    directory on their command line."""
    return processes_mentioning(f"PODCI_BUILD={build_name}\0", f"/builds/{build_name}/")


def leftovers(state_dir: Path, record: BuildRecord) -> list[str]:
    """Everything of a finished build that should be gone: processes, directories, port leases."""
    left = [f"process {pid}" for pid in processes_of(record.name)]
    for path in (state_dir / "builds" / record.name, state_dir / "checkouts" / record.name):
        if path.exists():
            left.append(str(path))
    ports = state_dir / "ports"
    if ports.exists():
        left += [f"port lease {p.name}" for p in ports.iterdir() if p.read_text() == record.name]
    return left


class Server:
    """An ASGI app served by a real uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        from podci.embedded import free_port

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Recorder:
    """A stand-in HTTP endpoint (a Jenkins callback) that keeps every request it receives."""

    def __init__(self, status: int = 200) -> None:
        import http.server

        from podci.embedded import free_port

        received: list[tuple[str, dict[str, str], bytes]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
