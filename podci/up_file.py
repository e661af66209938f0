"""Where a running `podci up` keeps its Redis, so `podci run` and `podci status` on the same state
directory join it instead of refusing to share its embedded Redis.

`podci up` writes `STATE_DIR/up.json` (the Redis URL, its own pid, the pages' address) once its stack
has started and removes it when it stops. A file left by an `up` that was killed is ignored: its pid is
gone, or its Redis does not answer. The file can hold a Redis password, so only its owner may read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from redis.exceptions import RedisError

from store.connection import connect

FILE_NAME = "up.json"


@dataclass(frozen=True)
class UpStack:
    redis_url: str
    pid: int
    pages: str  # the build pages' base URL, e.g. http://127.0.0.1:8080
    sentinel_master: str | None = None

    def page_of(self, build_id: str) -> str:
        return f"{self.pages}/builds/{build_id}"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process has the pid: alive, but not an `up` of ours to trust
    return True


def write(state_dir: Path, stack: UpStack) -> Path:
    """Atomically, so a reader never sees half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(stack), handle)
    os.replace(tmp, path)
    return path


def remove(state_dir: Path, pid: int) -> None:
    """Only our own file: an `up` that lost a race for the state directory leaves the winner's alone."""
    found = _read(state_dir / FILE_NAME)
    if found is not None and found.pid == pid:
        (state_dir / FILE_NAME).unlink(missing_ok=True)


def running(state_dir: Path) -> UpStack | None:
    """The `podci up` serving this state directory now, or None (no file, or a stale one)."""
    found = _read(state_dir / FILE_NAME)
    if found is None or not found.alive() or found.pid == os.getpid():
        return None
    try:
        client = connect(found.redis_url, master=found.sentinel_master, timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (RedisError, OSError, ValueError):
        return None
    return found


def _read(path: Path) -> UpStack | None:
    try:
        data = json.loads(path.read_text())
        return UpStack(
            redis_url=str(data["redis_url"]),
            pid=int(data["pid"]),
            pages=str(data["pages"]),
            sentinel_master=data.get("sentinel_master"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
