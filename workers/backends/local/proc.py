"""Start one command detached from the worker, the way a container outlives whoever created it.

Run as `python -m workers.backends.local.proc --pidfile P --exit-file E --log L --cwd W
--env-json J -- CMD...`. It forks; the child leads a new session (so teardown can kill the whole
group), starts CMD with exactly the environment in J, writes its own pid to P, then waits and writes
CMD's exit code to E. The parent returns as soon as CMD has started, printing `ok PID` or
`error MESSAGE`. Because the child is not the worker's, a worker killed mid-build leaves its builds'
processes running for the next worker to find. With `--wake-build ID` (and the Redis URL in
`PODCI_WAKE_REDIS`, with sentinels the master's name in `PODCI_WAKE_REDIS_MASTER`), the end of CMD
wakes the build (see `watcher`), so nobody polls for it; the launcher is non-dumpable, so the
build's processes cannot read that URL from its environment.

The child is a subreaper (Linux `PR_SET_CHILD_SUBREAPER`): a process of the build that leaves its
group (`setsid`) or its parent (a double fork) is still a descendant of the child, which stays until
the last of them has exited. So teardown finds every process the build started below the pid in P.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from workers.logfiles import write_atomic
from workers.private import keep_memory_private

PR_SET_CHILD_SUBREAPER = 36
WAKE_REDIS_ENV = "PODCI_WAKE_REDIS"  # the launcher's own environment only: never the command's
WAKE_MASTER_ENV = "PODCI_WAKE_REDIS_MASTER"  # with sentinel URLs: the master's name, beside the URL


def _become_subreaper() -> None:
    """Orphans below this process are re-parented to it instead of to init (Linux 3.4+); elsewhere the
    build's process group is all teardown finds."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap_all() -> None:
    """Wait for every descendant left behind (re-parented here): while one lives, this process is
    what teardown finds it under."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def _child(args: argparse.Namespace, report: int) -> None:
    os.setsid()
    _become_subreaper()
    env = json.loads(args.env_json)
    with open(args.log, "ab", buffering=0) as log:
        try:
            proc = subprocess.Popen(
                args.cmd,
                cwd=args.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            os.write(report, f"error cannot start {args.cmd[0]!r}: {exc.strerror}".encode())
            os._exit(127)
        write_atomic(Path(args.pidfile), str(os.getpid()))
        os.write(report, f"ok {os.getpid()}".encode())
        os.close(report)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        code = proc.wait()
    write_atomic(Path(args.exit_file), str(code))
    if args.wake_build and (url := os.environ.get(WAKE_REDIS_ENV)):
        wake(url, args.wake_build, os.environ.get(WAKE_MASTER_ENV))
    _reap_all()
    os._exit(0)


def wake(redis_url: str, build: str, master: str | None = None) -> None:
    """Tell the workers the build's state changed (a container or the tests ended), as a pod watch
    would; a worker wakes the build's parked step. Best effort: the build's safety look remains.
    Imported here: the launcher waits on the command for its whole life, without Redis in memory."""
    from redis import RedisError

    from store import keys
    from store.connection import connect

    try:
        connect(redis_url, timeout=5, master=master).rpush(keys.WAKES, build)
    except RedisError:
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="workers.backends.local.proc")
    for flag in ("--pidfile", "--exit-file", "--log", "--cwd", "--env-json"):
        parser.add_argument(flag, required=True)
    parser.add_argument(
        "--wake-build", default="", help=f"when the command ends, wake it (${WAKE_REDIS_ENV})"
    )
    parser.add_argument("cmd", nargs="+")
    args = parser.parse_args(argv)
    keep_memory_private()
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            _child(args, write)
        finally:
            os._exit(1)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    message = b"".join(chunks).decode() or "error the process launcher died before starting the command"
    print(message)
    return 0 if message.startswith("ok ") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
