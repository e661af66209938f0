"""The local backend: a build's pod as process groups on this machine.

Kubernetes object -> what it becomes here:
- Service: a free local port per declared container port, leased by a file in `ports/` so two builds
  never get the same one; containers find them in `PODCI_PORT_<NAME>` (use `$(PODCI_PORT_<NAME>)` in
  `args`, as Kubernetes expands it too).
- PV/PVC: the directory `builds/<name>/volume`, holding a clone of the merge commit: the workspace.
- Pod: one detached process group per container (see `proc`); images are not pulled.
Everything of a build is found again by its name, so teardown works after any crash.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath

import psutil

from schemas.record import BuildState
from schemas.repo_config import Container, Probe
from workers.backends.base import BuildContext, SetupStatus, TestStatus, WaitHint
from workers.backends.local.env import container_argv, container_env, resolve_probe_port
from workers.backends.local.listening import port_scope
from workers.backends.local.proc import WAKE_MASTER_ENV, WAKE_REDIS_ENV
from workers.backends.ports import port_env, port_key
from workers.environ import for_children
from workers.errors import PermanentError
from workers.gitops import git
from workers.logfiles import first_error_line, log_files, mask_file, write_atomic
from workers.logfiles import tail as last_lines

log = logging.getLogger(__name__)
_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
TESTS = "tests"  # the test command's process key; containers are keyed `containers/<name>`
RERUN = "rerun"  # the rerun of known-flaky failed tests (`.podci.yml` `flaky.rerun`)
_FOLLOW_EVERY = 0.5  # seconds between two reads of a running test log (the live log)
_FOLLOW_CHUNK = 64 * 1024
WATCHER = "watcher"  # the process that wakes the build when its setup is decided (see `watcher`)


class LocalBackend:
    name = "local"

    def __init__(
        self,
        state_dir: Path,
        teardown_grace: float = 3.0,
        log_tail_lines: int = 40,
        redis_url: str | None = None,
        secrets: tuple[str, ...] = (),
        redis_master: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.root = state_dir / "builds"
        self.leases = state_dir / "ports"
        self.redis_url = redis_url  # where the build's processes say that something changed
        self.redis_master = redis_master  # the master's name, when `redis_url` names sentinels
        self.grace = teardown_grace
        self.tail_lines = log_tail_lines
        self.secrets = secrets  # masked in every log kept
        self._warned_images = False

    # --- paths -----------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / name

    def _volume(self, name: str) -> Path:
        return self._dir(name) / "volume"

    def _pidfile(self, name: str, key: str) -> Path:
        return self._dir(name) / "proc" / f"{key}.pid"

    def _exitfile(self, name: str, key: str) -> Path:
        return self._dir(name) / "proc" / f"{key}.exit"

    @staticmethod
    def _container_key(container: Container) -> str:
        return f"containers/{container.name}"

    # --- Service ---------------------------------------------------------------------------------
    def _ports(self, name: str) -> dict[str, int]:
        path = self._dir(name) / "service.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _lease_port(self, name: str) -> int:
        self.leases.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            try:
                fd = os.open(self.leases / str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.write(fd, name.encode())
            os.close(fd)
            return port
        raise PermanentError("no free local port could be leased after 100 tries")

    def create_service(self, ctx: BuildContext) -> str:
        if not (ports := self._ports(ctx.name)):
            for container in ctx.pod.containers:
                for declared in container.ports:
                    ports[port_key(container, declared.name, declared.container_port)] = self._lease_port(
                        ctx.name
                    )
            self._dir(ctx.name).mkdir(parents=True, exist_ok=True)
            write_atomic(self._dir(ctx.name) / "service.json", json.dumps(ports))
        shown = ", ".join(f"{k}=127.0.0.1:{p}" for k, p in ports.items()) or "no ports declared"
        return f"service {ctx.name}: {shown}"

    # --- volume ----------------------------------------------------------------------------------
    def create_volume(self, ctx: BuildContext) -> str:
        volume = self._volume(ctx.name)
        if not (volume / ".git").exists():
            shutil.rmtree(volume, ignore_errors=True)
            volume.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "clone", "--quiet", "--no-checkout", "--", str(ctx.checkout_dir), str(volume)],
                check=True,
                capture_output=True,
            )
        git(volume, "checkout", "--quiet", "--force", "--detach", ctx.merge_commit)
        return f"volume {ctx.name}: {volume} at {ctx.merge_commit[:12]}"

    # --- pod -------------------------------------------------------------------------------------
    def _podci_env(self, ctx: BuildContext) -> dict[str, str]:
        return {
            "PODCI_BUILD": ctx.name,
            "PODCI_WORKSPACE": str(self._volume(ctx.name)),
            "PODCI_HOST": "127.0.0.1",
            "JOB_NAME": ctx.job,
            "BUILD_NUMBER": str(ctx.number),
            **port_env(self._ports(ctx.name)),
        }

    def _base_env(self) -> dict[str, str]:
        base = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "/usr/bin:/bin")])
        return base

    def _env(self, ctx: BuildContext, container: Container) -> dict[str, str]:
        return container_env(container, self._base_env(), self._podci_env(ctx))

    def _cwd(self, ctx: BuildContext, container: Container) -> Path:
        """Where a container's commands run: the workspace, as on a cluster where the template names no
        `workingDir` (podci fills in the workspace there too), or the template's directory inside it."""
        volume = self._volume(ctx.name)
        if container.working_dir is None:
            return volume
        mount = PurePosixPath(ctx.config.volume.mount_path)
        wanted = PurePosixPath(container.working_dir)
        if wanted != mount and mount not in wanted.parents:
            raise PermanentError(
                f"container `{container.name}` names `workingDir: {container.working_dir}`, outside the "
                f"workspace ({mount}): the local backend can only run commands inside the workspace, so "
                "point it there or leave it out (it then defaults to the workspace on both backends)"
            )
        return volume / wanted.relative_to(mount)

    def _launcher_env(self) -> dict[str, str]:
        """The launcher and what it starts hold none of podci's settings nor the log store's
        credentials: they stay in the worker. The launcher alone gets the Redis it wakes the build
        through (in its environment, which it hides: see `proc`), never the command it starts."""
        return {**for_children(os.environ), **self._wake_env()}

    def _wake_env(self) -> dict[str, str]:
        """How a launcher or the watcher reaches the workers' Redis (its sentinels, after a failover)."""
        env = {WAKE_REDIS_ENV: self.redis_url} if self.redis_url else {}
        if self.redis_url and self.redis_master:
            env[WAKE_MASTER_ENV] = self.redis_master
        return env

    def _launch(
        self,
        ctx: BuildContext,
        key: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path | None = None,
        *,
        log: Path | None = None,
        wake: bool = True,
    ) -> None:
        if self._pidfile(ctx.name, key).exists():
            return
        self._pidfile(ctx.name, key).parent.mkdir(parents=True, exist_ok=True)
        (ctx.log_dir / key).parent.mkdir(parents=True, exist_ok=True)
        waking = ["--wake-build", ctx.build_id] if wake and self.redis_url else []
        proc = subprocess.run(
            [
                sys.executable, "-m", "workers.backends.local.proc",
                "--pidfile", str(self._pidfile(ctx.name, key)),
                "--exit-file", str(self._exitfile(ctx.name, key)),
                "--log", str(log or ctx.log_dir / f"{key}.log"),
                "--cwd", str(cwd or self._volume(ctx.name)),
                "--env-json", json.dumps(env),
                *waking,
                "--", *argv,
            ],
            capture_output=True, text=True, check=False, env=self._launcher_env(),
        )  # fmt: skip
        if proc.returncode != 0:
            reason = proc.stdout.strip().removeprefix("error ") or first_error_line(proc.stderr)[:300]
            raise PermanentError(f"`{key}` of pod {ctx.name} did not start: {reason}")

    def create_pod(self, ctx: BuildContext) -> str:
        if not self._warned_images:
            log.warning("local backend: container images are not pulled; commands run on this machine")
            self._warned_images = True
        for container in ctx.pod.containers:
            env = self._env(ctx, container)
            argv = container_argv(container, env)
            self._launch(ctx, self._container_key(container), argv, env, self._cwd(ctx, container))
        if self.redis_url:
            watcher = [sys.executable, "-m", "workers.backends.local.watcher",
                       "--build", ctx.build_id, "--state-dir", str(self.state_dir)]  # fmt: skip
            env = {**self._base_env(), **self._wake_env()}
            here = self._dir(ctx.name)
            self._launch(ctx, WATCHER, watcher, env, here, log=here / "watcher.log", wake=False)
        names = ", ".join(c.name for c in ctx.pod.containers)
        return f"pod {ctx.name}: started {names} (local processes; images not pulled)"

    # --- waiting ---------------------------------------------------------------------------------
    def _exit_code(self, name: str, key: str) -> int | None:
        path = self._exitfile(name, key)
        return int(path.read_text()) if path.exists() else None

    def _probe(self, ctx: BuildContext, container: Container, probe: Probe) -> bool:
        if probe.tcp_socket is not None:
            port = resolve_probe_port(container, probe.tcp_socket.port, self._ports(ctx.name))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=probe.timeout_seconds):
                    return True
            except OSError:
                return False
        if probe.exec_ is not None:
            env = self._env(ctx, container)
            try:
                done = subprocess.run(
                    probe.exec_.command, cwd=self._volume(ctx.name), env=env, capture_output=True,
                    timeout=probe.timeout_seconds, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                return False
            return done.returncode == 0
        return True  # httpGet and others: not checked locally, counted as passing

    def setup_status(self, ctx: BuildContext) -> SetupStatus:
        for container in ctx.pod.containers:
            key = self._container_key(container)
            code = self._exit_code(ctx.name, key)
            if code is not None:
                tail = last_lines(ctx.log_dir / f"{key}.log", self.tail_lines, self.secrets)
                return SetupStatus(False, "", f"container `{container.name}` exited with code {code} "
                                   f"before setup completed; its last output:\n{tail}")  # fmt: skip
        setup = ctx.config.setup
        if setup.file is not None:
            ready = (self._volume(ctx.name) / setup.file).exists()
            return SetupStatus(ready, f"waiting for {setup.file}" if not ready else f"{setup.file} exists")
        waiting = [
            c.name
            for c in ctx.pod.containers
            if c.readiness_probe and not self._probe(ctx, c, c.readiness_probe)
        ]
        if (unreachable := self._loopback_only(ctx)) is not None:
            return SetupStatus(False, "", unreachable)
        if waiting:
            return SetupStatus(False, "not ready yet: " + ", ".join(waiting))
        return SetupStatus(True, "all containers ready")

    def _loopback_only(self, ctx: BuildContext) -> str | None:
        """A container probed on a port it listens on at 127.0.0.1 only: ready here, but on a cluster
        the kubelet dials the pod's IP and setup would never complete. Said now, on both backends."""
        for container in ctx.pod.containers:
            probe = container.readiness_probe
            if probe is None or probe.tcp_socket is None:
                continue
            port = resolve_probe_port(container, probe.tcp_socket.port, self._ports(ctx.name))
            if port_scope(port) == "loopback":
                return (
                    f"container `{container.name}` listens on 127.0.0.1 only (port {port}), but a cluster "
                    "probes the pod's IP address: its readiness probe would never pass there. Make it "
                    "listen on 0.0.0.0 (all addresses)."
                )
        return None

    def explain(self, ctx: BuildContext) -> str:
        """The last line each container has logged so far."""
        lines = []
        for container in ctx.pod.containers:
            last = last_lines(ctx.log_dir / f"{self._container_key(container)}.log", 1)
            if last:
                lines.append(f"`{container.name}` last said: {last}")
        return "; ".join(lines)

    def start_tests(self, ctx: BuildContext) -> None:
        container = ctx.pod.container(ctx.config.test.container)
        assert container is not None  # checked when the config was loaded
        self._launch(ctx, TESTS, ctx.config.test.argv(), self._env(ctx, container))

    def test_status(self, ctx: BuildContext) -> TestStatus | None:
        return self._command_status(ctx, TESTS)

    def start_rerun(self, ctx: BuildContext, argv: list[str]) -> None:
        """Like the tests: the same container's environment, the workspace, a launcher that wakes."""
        container = ctx.pod.container(ctx.config.test.container)
        assert container is not None  # checked when the config was loaded
        self._launch(ctx, RERUN, argv, self._env(ctx, container))

    def rerun_status(self, ctx: BuildContext) -> TestStatus | None:
        return self._command_status(ctx, RERUN)

    def _command_status(self, ctx: BuildContext, key: str) -> TestStatus | None:
        code = self._exit_code(ctx.name, key)
        if code is not None:
            return TestStatus(code, ctx.log_dir / f"{key}.log")
        pidfile = self._pidfile(ctx.name, key)
        if (
            pidfile.exists()
            and not _group_alive(int(pidfile.read_text()))
            and self._exit_code(ctx.name, key) is None
        ):
            raise PermanentError(f"the {key} process vanished without an exit code (killed from outside?)")
        return None

    def follow_tests(self, ctx: BuildContext, skip: int) -> Iterator[bytes]:
        """The test log file as the command writes it, read every `_FOLLOW_EVERY` seconds, until its
        exit code is there (looked at before the last read, so nothing written before it is missed)
        or teardown removed the build."""
        path = ctx.log_dir / f"{TESTS}.log"
        while self._dir(ctx.name).is_dir():
            finished = self._exit_code(ctx.name, TESTS) is not None
            if path.is_file():
                with open(path, "rb") as handle:
                    handle.seek(skip)
                    while data := handle.read(_FOLLOW_CHUNK):
                        skip += len(data)
                        yield data
            if finished:
                return
            time.sleep(_FOLLOW_EVERY)  # a follower thread of the worker's main process, not a task

    def wait_hint(self, ctx: BuildContext) -> WaitHint:
        """No sign: every safety look runs, since the answer rests on processes and probes, and the
        watcher or launcher that would wake the build may have died with nothing to tell."""
        return WaitHint()

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        volume = self._volume(ctx.name).resolve()
        target = (volume / path).resolve()
        if not target.is_relative_to(volume) or not target.is_file():
            return None
        return target.read_bytes()

    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        """Containers and the test command wrote straight into `log_dir`; what is kept is masked."""
        found = log_files(log_dir)
        for path in found.values():
            mask_file(path, self.secrets)
        return found

    # --- teardown --------------------------------------------------------------------------------
    def kept_until(self, state: BuildState, now: datetime) -> datetime | None:
        """Never: a kept process group would hold its ports, and the workspace is a plain directory."""
        return None

    def leftover_names(self) -> list[str]:
        """Builds that still have a directory here (teardown removes it)."""
        return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []

    def teardown(self, name: str, keep_pods: bool = False) -> str:
        """Every process the build started ends: its process groups, what left them (`setsid`, a double
        fork: still below the launcher, a subreaper) and whatever else carries its PODCI_BUILD and
        PODCI_WORKSPACE (the workspace, not the name alone: another podci on this machine, with its
        own state directory, may run a build of the same name)."""
        groups = [int(p.read_text()) for p in (self._dir(name) / "proc").rglob("*.pid")]
        live = [g for g in groups if _group_alive(g)]
        marks = {"PODCI_BUILD": name, "PODCI_WORKSPACE": str(self._volume(name))}
        found = build_processes(marks, groups)
        _signal(found, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while build_processes(marks, groups) and time.monotonic() < deadline:
            time.sleep(0.05)  # a short, bounded grace for processes to exit cleanly
        killed = [g for g in live if _group_alive(g)]
        for _ in range(3):  # a process forking while it is killed leaves a new one: look again
            if not (left := build_processes(marks, groups)):
                break
            _signal(left, signal.SIGKILL)
        released = 0
        for lease in self.leases.glob("*") if self.leases.exists() else []:
            if lease.read_text() == name:
                lease.unlink(missing_ok=True)
                released += 1
        shutil.rmtree(self._dir(name), ignore_errors=True)
        return f"stopped {len(live)} process group(s) ({len(killed)} killed), released {released} port(s)"


def _group_alive(group: int) -> bool:
    """Any process of the group still running (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def build_processes(marks: dict[str, str], groups: list[int]) -> list[psutil.Process]:
    """The build's live processes: the members of its launchers' process groups, every descendant of a
    launcher (a subreaper: what left its group is still below it) and any process whose environment
    holds all of `marks` (inherited by whatever a container starts)."""
    found: dict[int, psutil.Process] = {}
    wanted = set(groups)
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if os.getpgid(proc.pid) in wanted or _carries(proc.environ(), marks):
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            continue
    for group in groups:
        try:
            below = psutil.Process(group).children(recursive=True)
        except psutil.Error:
            continue
        found.update((p.pid, p) for p in below if _running(p))
    return list(found.values())


def _carries(environ: dict[str, str], marks: dict[str, str]) -> bool:
    return all(environ.get(key) == value for key, value in marks.items())


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(processes: list[psutil.Process], sig: signal.Signals) -> None:
    for proc in processes:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
