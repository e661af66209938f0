"""The command line's contract (README, "Running builds"): exit codes, a worker that dies, what it
prints where nobody watches a terminal, uncommitted changes, misspelt settings, joining `podci up`."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import httpx
from rich.console import Console

from podci.cli import cli
from podci.embedded import free_port
from podci.progress import print_summary
from schemas.record import BuildRecord, Step, StepRecord, StepState
from schemas.record import TestResult as _TestOutcome
from schemas.request import BuildRequest, Revision
from testkit.gitrepo import Repo
from tests.helpers import ROOT, processes_mentioning, processes_of, wait_until
from tests.test_cli import podci

EXAMPLE_CONFIG = (ROOT / "examples" / "webapp" / ".podci.yml").read_text()


def clean_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    return {**env, "PODCI_STATE_DIR": str(state), **extra}


def start_podci(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "podci", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, bufsize=1, start_new_session=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 120) -> list[str]:
    """Lines of stdout up to the first that matches, as they arrive (readline blocks, hence a pipe
    that the child must flush for this to return before it exits)."""
    assert proc.stdout is not None
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"stdout ended before {pattern!r}: {''.join(lines)}")
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no {pattern!r} within {timeout}s: {''.join(lines)}")


def rest(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    """The rest of stdout and stderr once the process ends (communicate() would skip what readline
    already buffered)."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout)
    return out, err


# --- exit codes -------------------------------------------------------------------------------------


def test_a_second_run_on_the_same_state_directory_exits_2(tmp_path: Path) -> None:
    lock = tmp_path / "redis" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as handle:  # what a first `podci run` holds while it runs
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = podci("run", state=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "another podci process is using the embedded Redis" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_worker_killed_mid_build_ends_the_build_and_exits_2(tmp_path: Path) -> None:
    """The embedded worker is the build's only one: killed, its build is ended and torn down by
    `podci run` itself, not left queued for the next run's worker to finish silently."""
    repo = Repo(tmp_path / "slow", {".podci.yml": EXAMPLE_CONFIG.replace(
        "python3 -m unittest discover -s tests -v", "sleep 600")})  # fmt: skip
    state = tmp_path / "state"
    run = start_podci("run", "--repo", str(repo.path), "--job", "slow", env=clean_env(state))
    try:
        read_until(run, r"run_tests: running")
        workers = [pid for pid in processes_mentioning(str(state)) if _is_worker_leader(pid)]
        assert workers, "no embedded worker found"
        os.killpg(workers[0], signal.SIGKILL)
        out, err = rest(run)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2, out + err
    assert "the worker exited with code -9" in out
    status = podci("status", "slow-1", "--json", state=state)
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["state"] == "error" and record["finished"], record
    assert "the worker exited with code -9" in record["reason"]
    assert processes_of(state, record["name"]) == []  # the sleeping tests were torn down
    assert not (state / "builds" / record["name"]).exists()
    # The next run's worker finds nothing of it to finish: the record stays as it was ended.
    again = podci("run", "--source", "main", state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    after = json.loads(podci("status", "slow-1", "--json", state=state).stdout)
    assert after["finished"] == record["finished"] and after["state"] == "error"


def _is_worker_leader(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return b"worker" in argv and b"podci" in argv and os.getpgid(pid) == pid
    except OSError:
        return False


# --- what is printed ---------------------------------------------------------------------------------


def test_progress_lines_arrive_while_the_build_runs_when_stdout_is_not_a_terminal(tmp_path: Path) -> None:
    run = start_podci("run", env=clean_env(tmp_path))
    try:
        lines = read_until(run, r"^build example-1 checkout: succeeded")
        assert run.poll() is None, "the first step's line came only when the run ended"
        out, err = rest(run)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err
    text = "".join(lines) + out
    for step in Step:
        assert re.search(rf"^build example-1 {step.value}: succeeded in [0-9.]+s", text, re.M), text
    assert "build example-1 succeeded" in text
    paths = re.findall(r"^(?:test log|  \S+): (/\S+\.log)$", text, re.M)
    assert len(paths) == 3, text  # the tests' and both containers'
    for path in paths:
        assert Path(path).is_file(), path


def test_uncommitted_changes_are_named_and_logs_never_made_are_not_shown(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "dirty", {".podci.yml": EXAMPLE_CONFIG.replace("tests: 120", "tests: soon")})
    (repo.path / "service" / "new_file.py").write_text("edited, not committed\n")
    proc = podci("run", "--repo", str(repo.path), state=tmp_path / "state")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # the committed .podci.yml is bad: error
    assert f"warning: {repo.path} has uncommitted changes" in proc.stderr
    assert "not in the build" in proc.stderr
    assert "containers/" not in proc.stdout and "logs of every container" not in proc.stdout
    assert not (tmp_path / "state" / "logs" / "dirty-1" / "containers").exists()


def test_the_table_never_breaks_a_path_at_80_columns() -> None:
    long = "/var/lib/podci/state/builds/a-very-long-build-name-for-a-repository-1/volume/reports"
    record = BuildRecord(
        id="example-12", job="example", number=12, name="example-12",
        request=BuildRequest(job="example", repo="example", source=Revision(clone_url="/r", ref="main")),
        steps=[StepRecord(name=s, state=StepState.succeeded, started=datetime.now(UTC),
                          finished=datetime.now(UTC), detail=f"volume at {long}") for s in Step],
        tests=_TestOutcome(exit_code=0, log_path=f"{long}/tests.log"),
        logs={"tests": f"{long}/tests.log", "containers/web": f"{long}/containers/web.log"},
    )  # fmt: skip
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    print_summary(console, record)
    text = console.export_text()
    for path in (f"{long}/tests.log", f"{long}/containers/web.log"):
        assert path in text  # whole, on one line
    for line in text.splitlines():
        for fragment in re.findall(r"(?<!\S)/\S+", line):  # in the table: a prefix, cut with …
            assert long.startswith(fragment.rstrip("…│ ")) or fragment.startswith(long), line
    assert all(step.value in text for step in Step)


# --- settings ----------------------------------------------------------------------------------------


def test_unknown_podci_variables_are_named_with_the_setting_meant(tmp_path: Path) -> None:
    extra = {
        "PODCI_REDIS_ULR": "redis://nowhere", "PODCI_WORKSPACE": "/w", "PODCI_BUILD": "b-1",
        "PODCI_PORT_HTTP": "8080", "PODCI_WAKE_REDIS": "redis://x", "PODCI_FLOWER_BASIC_AUTH": "a:b",
        "PODCI_ZZZ_NOTHING_LIKE_IT": "1",
    }  # fmt: skip
    proc = podci("event", "--help", state=tmp_path, extra_env=extra)
    assert proc.returncode == 0
    proc = podci("status", "nothing-1", state=tmp_path, extra_env=extra)
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [
        "warning: PODCI_REDIS_ULR is not a podci setting and is ignored; did you mean PODCI_REDIS_URL?",
        "warning: PODCI_ZZZ_NOTHING_LIKE_IT is not a podci setting and is ignored",
    ]
    assert proc.returncode == 2 and "no build 'nothing-1'" in proc.stderr


# --- podci up ----------------------------------------------------------------------------------------


def test_run_and_status_join_a_running_up_on_the_same_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port, flower_port = free_port(), free_port()
    env = clean_env(state, PODCI_UI_TOKENS="page-token-for-up-join", PODCI_HOOKS="jenkins",
                    PODCI_JENKINS_TOKEN="jenkins-token-for-up-join")  # fmt: skip
    up = subprocess.Popen(
        [sys.executable, "-m", "podci", "up", "--port", str(port), "--flower-port", str(flower_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: (state / "up.json").exists() and _answers(base + "/healthz"), timeout=90)
        run = podci("run", state=state, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "embedded Redis" not in run.stdout
        assert f"build page: {base}/builds/example-1" in run.stdout
        login = {"Authorization": "Bearer page-token-for-up-join", "Accept": "application/json"}
        page = httpx.get(f"{base}/builds/example-1", headers=login, timeout=10).json()
        assert page["state"] == "succeeded"
        status = podci("status", "example-1", "--json", state=state)
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "succeeded"
        assert not (state / "worker.log").exists()  # up's worker ran it, none of run's own
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=60)
    assert not (state / "up.json").exists()
    assert processes_mentioning(str(state)) == []
    # A file left by an `up` that was killed is ignored: status uses the embedded Redis again.
    (state / "up.json").write_text(json.dumps({"redis_url": f"redis://127.0.0.1:{free_port()}/0",
                                               "pid": 2**22 + 7, "pages": base}))  # fmt: skip
    stale = podci("status", "example-1", "--json", state=state)
    assert stale.returncode == 0, stale.stderr
    assert json.loads(stale.stdout)["state"] == "succeeded"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# --- README ------------------------------------------------------------------------------------------


def test_the_readme_documents_every_command_and_option() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = []
    for name, command in cli.commands.items():
        if f"podci {name}" not in readme:
            missing.append(f"podci {name}")
        for param in command.params:
            if isinstance(param, click.Option):
                opts = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
                if opts and not any(o in readme for o in opts) and param.name != "help":
                    missing.append(f"podci {name} {'/'.join(opts)}")
    assert missing == [], f"not in README.md: {missing}"
