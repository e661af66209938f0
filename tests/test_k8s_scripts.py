"""The fixed scripts the Kubernetes backend runs in containers, run here by a real `sh` and `git`.

The fake API server only simulates containers; these tests show the scripts themselves do their job,
and that hostile branch names and test arguments stay data (positional parameters, env vars).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from schemas.request import Revision
from testkit.gitrepo import Repo, git
from workers import gitops
from workers.backends.kubernetes.names import (
    AGENT_SCRIPT,
    BUNDLE,
    CHECKOUT_SCRIPT,
    CLEANUP_SCRIPT,
    CLONE_SCRIPT,
    EXIT_MARK,
    RECEIVE_SCRIPT,
    START_TESTS_SCRIPT,
)


def run_checkout(workspace: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The clone delivery's script: the pod fetches and merges itself."""
    workspace.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(workspace.parent), "PODCI_WORKSPACE": str(workspace),
            "TARGET_URL": "", "TARGET_REF": "", "TARGET_COMMIT": "", **env}  # fmt: skip
    return subprocess.run(
        ["sh", "-c", CLONE_SCRIPT, "podci-checkout"], env=full, capture_output=True, text=True
    )


def test_the_worker_bundle_reaches_the_workspace_through_stdin_and_is_checked_out(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", {"a.txt": "a\n"}, from_example=False)
    source = repo.branch("feature", {"b.txt": "b\n"})
    checkout = tmp_path / "worker-checkout"
    when = datetime(2026, 1, 1, tzinfo=UTC)
    merged = gitops.prepare(Revision(clone_url=str(repo.path), ref="feature", commit=source),
                            Revision(clone_url=str(repo.path), ref="main"), checkout, when)  # fmt: skip
    assert merged.commit is not None
    bundle = gitops.bundle(checkout, merged.commit)
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PODCI_WORKSPACE": str(ws),
           "MERGE_COMMIT": merged.commit, "CODE_WAIT": "60"}  # fmt: skip
    waiting = subprocess.Popen(["sh", "-c", CHECKOUT_SCRIPT, "podci-checkout"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    data = bundle.read_bytes()
    received = subprocess.run(
        ["sh", "-c", RECEIVE_SCRIPT, "podci-receive", str(len(data)), str(ws / BUNDLE)],
        input=data + b"bytes after the bundle are not read", capture_output=True, timeout=60,
    )  # fmt: skip
    assert received.returncode == 0, received.stderr
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert git(ws, "rev-parse", "HEAD") == merged.commit
    assert (ws / "b.txt").read_text() == "b\n" and not (ws / BUNDLE).exists()
    # made again elsewhere from the same inputs, the merge is the same commit
    sides = (Revision(clone_url=str(repo.path), ref="feature", commit=source),
             Revision(clone_url=str(repo.path), ref="main"))  # fmt: skip
    again = gitops.prepare(*sides, tmp_path / "other", when)
    assert again.commit == merged.commit


def test_a_short_delivery_is_refused_and_a_bundle_that_never_comes_fails_the_checkout(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    short = subprocess.run(
        ["sh", "-c", RECEIVE_SCRIPT, "podci-receive", "100", str(ws / BUNDLE)], input=b"x" * 10,
        capture_output=True, text=False, timeout=60,
    )  # fmt: skip
    assert short.returncode == 1 and b"fatal: received 10 of 100 bytes" in short.stderr
    assert not (ws / BUNDLE).exists()
    env = {"PATH": os.environ["PATH"], "PODCI_WORKSPACE": str(ws), "MERGE_COMMIT": "0" * 40, "CODE_WAIT": "1"}
    done = subprocess.run(["sh", "-c", CHECKOUT_SCRIPT, "podci-checkout"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("fatal: the code did not arrive from the podci worker within 1 s")


def test_the_cleanup_script_removes_one_build_directory(tmp_path: Path) -> None:
    (tmp_path / "web-7" / ".podci").mkdir(parents=True)
    (tmp_path / "web-7" / ".podci" / "tests.log").write_text("x")
    (tmp_path / "web-8").mkdir()
    done = subprocess.run(["sh", "-c", CLEANUP_SCRIPT, "podci-cleanup", str(tmp_path / "web-7")], timeout=60)
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web-8"]


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
    agent = subprocess.Popen(  # stderr too: the container's log is both
        ["sh", "-c", AGENT_SCRIPT, "podci-agent", str(ws)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
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


def test_the_agent_prints_the_test_log_while_the_tests_run(tmp_path: Path) -> None:
    """A worker follows the agent's log for the build page: lines appear before the tests end."""
    ws, gate = tmp_path / "ws", tmp_path / "gate"
    ws.mkdir()
    agent = subprocess.Popen(
        ["sh", "-c", AGENT_SCRIPT, "podci-agent", str(ws)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in agent.stdout or ()], daemon=True).start()
    argv = ["sh", "-c", 'echo first; while [ ! -e "$0" ]; do sleep 0.05; done; echo second', str(gate)]
    subprocess.run(["sh", "-c", START_TESTS_SCRIPT, "podci-tests", str(ws), *argv], timeout=60, check=True)
    assert lines.get(timeout=60) == "first\n"  # the tests are still waiting at the gate
    gate.touch()
    assert agent.wait(timeout=60) == 0
    assert [lines.get(timeout=10) for _ in range(2)] == ["second\n", f"{EXIT_MARK} 0\n"]


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
