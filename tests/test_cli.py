"""The `podci` command as a user runs it: embedded Redis, a child worker, exit codes, JSON, status."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from podci.embedded import free_port
from testkit.gitrepo import GitServer, Repo
from tests.helpers import processes_mentioning, wait_until


def podci(*args: str, state: Path, extra_env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env.update(PODCI_STATE_DIR=str(state), **(extra_env or {}))
    return subprocess.run(
        [sys.executable, "-m", "podci", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-state")


def test_run_builds_the_example_and_exits_0(state: Path) -> None:
    proc = podci("run", state=state)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the embedded Redis, the worker and the build's processes are all gone
    assert processes_mentioning(str(state)) == []
    assert "build example-1 succeeded" in proc.stdout
    assert "tests passed\ntest log: " in proc.stdout
    for step in ("checkout", "create_pod", "wait_setup", "run_tests", "teardown"):
        assert step in proc.stdout


def test_run_json_on_the_failing_branch_exits_1_and_status_reads_it_back(state: Path) -> None:
    proc = podci("run", "--source", "failing", "--target", "main", "--json", state=state)
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)
    assert record["state"] == "failed"
    assert record["id"] == "example-2"  # numbers continue across runs: the embedded Redis persists
    assert [s["name"] for s in record["steps"]][:2] == ["checkout", "create_service"]
    assert record["tests"]["exit_code"] == 1

    again = podci("status", record["id"], "--json", state=state)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["finished"] == record["finished"]


def test_run_refuses_a_directory_that_is_not_a_repository(state: Path, tmp_path: Path) -> None:
    proc = podci("run", "--repo", str(tmp_path), state=state)
    assert proc.returncode == 2
    assert f"{tmp_path} is not a git repository" in proc.stderr


def test_run_refuses_a_bad_branch_name_before_queueing(state: Path) -> None:
    proc = podci("run", "--source", "-rf", state=state)
    assert proc.returncode == 2
    assert "'-rf' is not a usable git ref name" in proc.stderr


def test_worker_without_redis_url_says_what_to_set(state: Path) -> None:
    proc = podci("worker", state=state, timeout=30)
    assert proc.returncode != 0
    assert "PODCI_REDIS_URL is not set" in proc.stderr


def test_bad_setting_is_named(state: Path) -> None:
    proc = podci("status", "x", state=state, extra_env={"PODCI_WORKER_CONCURRENCY": "zero"})
    assert proc.returncode == 2
    assert "`worker_concurrency`" in proc.stderr


def test_up_runs_the_whole_stack_until_stopped(git_server: GitServer, tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env.update(PODCI_STATE_DIR=str(tmp_path / "state"))
    # The Jenkins token and a page token are given; the Bitbucket secrets are made up and printed.
    env.update(PODCI_JENKINS_TOKEN="jenkins-token-for-up", PODCI_UI_TOKENS="page-token-for-up")
    env.update(PODCI_CLONE_HOSTS=git_server.host)
    up = subprocess.Popen([sys.executable, "-m", "podci", "up", "--port", str(port), "--flower-port",
                           str(flower_port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(base + "/healthz") and _answers(f"http://127.0.0.1:{flower_port}/healthcheck")
        )
        body = {
            "job": "up",
            "build_number": 1,
            "clone_url": git_server.add(repo, "up"),
            "source_branch": "main",
        }
        assert httpx.post(base + "/hooks/jenkins", json=body).status_code == 401
        token = {"X-Podci-Token": "jenkins-token-for-up"}
        assert httpx.post(base + "/hooks/jenkins", json=body, headers=token).status_code == 202
        record = wait_until(lambda: _finished(base + "/builds/up-1"), timeout=60)
        assert record["state"] == "succeeded"
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=60)[0].decode()
    assert "stopping" in output
    for product in ("bitbucket-cloud", "bitbucket-server"):
        assert re.search(
            rf"^{product} webhook: {base}/hooks/bitbucket +secret: [0-9a-f]{{32}}$", output, re.M
        )
    assert f"jenkins: {base}/hooks/jenkins   X-Podci-Token: (your PODCI_JENKINS_TOKEN)" in output
    assert "jenkins-token-for-up" not in output and "page-token-for-up" not in output
    assert processes_mentioning(str(tmp_path / "state")) == []  # Redis, worker, receiver, Flower all gone


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _finished(url: str) -> dict | None:  # type: ignore[type-arg]
    login = {"Authorization": "Bearer page-token-for-up"}
    record = httpx.get(url, headers={"Accept": "application/json", **login}).json()
    return record if record.get("finished") else None


def test_podci_processes_are_not_dumpable(state: Path) -> None:
    """A local build runs as the worker's user: it must not read the worker's /proc/<pid>/environ."""
    code = (
        "import ctypes, sys\n"
        "from click.testing import CliRunner\n"
        "from podci.cli import cli\n"
        "CliRunner().invoke(cli, ['event', '--help'])\n"
        "sys.exit(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"  # PR_GET_DUMPABLE: 0 once podci ran
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
