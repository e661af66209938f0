"""The fixed scripts the Kubernetes backend runs in containers, run here by a real `sh` and `git`.

The fake API server only simulates containers; these tests show the scripts themselves do their job,
and that hostile branch names and test arguments stay data (positional parameters, env vars).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testkit.gitrepo import Repo, git
from workers.backends.kubernetes.names import AGENT_SCRIPT, CHECKOUT_SCRIPT, EXIT_MARK, START_TESTS_SCRIPT


def run_checkout(workspace: Path, **env: str) -> subprocess.CompletedProcess[str]:
    workspace.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(workspace.parent), "PODCI_WORKSPACE": str(workspace),
            "TARGET_URL": "", "TARGET_REF": "", "TARGET_COMMIT": "", **env}  # fmt: skip
    return subprocess.run(
        ["sh", "-c", CHECKOUT_SCRIPT, "podci-checkout"], env=full, capture_output=True, text=True
    )


def test_checkout_merges_source_into_target_and_runs_once(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {"a.txt": "a\n"}, from_example=False)
    source = repo.branch("feature/$(touch${IFS}pwned)", {"b.txt": "b\n"})
    target = repo.commit({"c.txt": "c\n"})
    ws = tmp_path / "ws"
    url = str(repo.path)
    env = {"SOURCE_URL": url, "SOURCE_REF": "feature/$(touch${IFS}pwned)", "SOURCE_COMMIT": source,
           "TARGET_URL": url, "TARGET_REF": "main", "TARGET_COMMIT": target}  # fmt: skip
    done = run_checkout(ws, **env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in ws.iterdir() if not p.name.startswith(".")) == ["a.txt", "b.txt", "c.txt"]
    assert git(ws, "rev-parse", "HEAD^1") == target and git(ws, "rev-parse", "HEAD^2") == source
    assert not (ws / "pwned").exists() and not (tmp_path / "pwned").exists()
    again = run_checkout(ws, SOURCE_URL="/nowhere", SOURCE_REF="x", SOURCE_COMMIT="0" * 40)
    assert again.returncode == 0  # a relaunched pod finds the volume checked out already


def test_checkout_without_target_builds_the_source(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {"a.txt": "a\n"}, from_example=False)
    done = run_checkout(
        tmp_path / "ws", SOURCE_URL=str(repo.path), SOURCE_REF="main", SOURCE_COMMIT=repo.head("main")
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ws" / "a.txt").read_text() == "a\n"


def test_tests_run_detached_and_the_agent_reports_their_exit(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    agent = subprocess.Popen(
        ["sh", "-c", AGENT_SCRIPT, "podci-agent", str(ws)], stdout=subprocess.PIPE, text=True
    )
    # The tests wait for a gate this test opens only after the start script has returned: a script that
    # waited for the tests would never return (and time out), so returning proves they run detached.
    gate = tmp_path / "gate"
    argv = ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.05; done; echo "running $1"; exit 3', str(gate),
            "$(touch pwned)"]  # fmt: skip
    start = subprocess.run(["sh", "-c", START_TESTS_SCRIPT, "podci-tests", str(ws), *argv], timeout=60)
    assert start.returncode == 0
    again = subprocess.run(["sh", "-c", START_TESTS_SCRIPT, "podci-tests", str(ws), "false"], timeout=60)
    assert again.returncode == 0  # started once only
    gate.touch()
    out, _ = agent.communicate(timeout=60)
    lines = out.strip().splitlines()
    assert lines == ["running $(touch pwned)", f"{EXIT_MARK} 3"]
    assert not (ws / "pwned").exists()


def in_pod(pod: str) -> dict[str, str]:
    """A pod's name is its HOSTNAME; the scripts keep their state per pod."""
    return {"PATH": os.environ["PATH"], "HOSTNAME": pod}


def test_a_relaunched_pod_on_the_same_volume_runs_the_tests_again(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    for pod, code in (("b-1", "1"), ("b-1-a2", "0")):
        agent = subprocess.Popen(
            ["sh", "-c", AGENT_SCRIPT, "podci-agent", str(ws)],
            stdout=subprocess.PIPE,
            text=True,
            env=in_pod(pod),
        )
        start = ["sh", "-c", START_TESTS_SCRIPT, "podci-tests", str(ws), "sh", "-c", f"exit {code}"]
        subprocess.run(start, timeout=10, env=in_pod(pod), check=True)
        out, _ = agent.communicate(timeout=15)
        assert out.strip().splitlines()[-1] == f"{EXIT_MARK} {code}"
