"""`podci run --backend kubernetes` of the bundled example on its own local repository, against a fake
API server set up like a plain cluster: no dynamic provisioner, static hostPath volumes, the build
namespace named only by the kubeconfig's context, and nodes that behave as real ones (an image's
working directory is `/`; a probe dials the pod's IP). Each run is a real `podci run`: its own embedded
Redis, its own worker, the official client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from podci.embedded import free_port
from testkit.fake_k8s import FakeCluster, serve, write_kubeconfig
from testkit.gitrepo import Repo
from workers.backends.kubernetes.names import BUILD_LABEL, CHECKOUT_CONTAINER

NAMESPACE = "ci-builds"  # only the kubeconfig's context names it
KINDS = ("pods", "services", "persistentvolumeclaims")


@dataclass
class Plain:
    cluster: FakeCluster
    url: str
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def plain(worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    tmp = tmp_path_factory.mktemp("plain")
    cluster = FakeCluster(dynamic_provisioning=False, namespaces=("default", "kube-system", NAMESPACE))
    with serve(cluster) as url:
        env = {k: v for k, v in worker_env.items() if k not in ("PODCI_REDIS_URL", "PODCI_STATE_DIR")}
        env |= {
            "KUBECONFIG": str(write_kubeconfig(tmp / "kubeconfig", url, NAMESPACE)),
            "PODCI_KUBE_STATIC_VOLUMES": "hostpath", "PODCI_KUBE_HOSTPATH_ROOT": "/var/lib/podci",
            "PODCI_STALL_GRACE": "10",
        }  # fmt: skip
        yield Plain(cluster, url, env, tmp)


def podci(plain: Plain, *args: str, state: str, **env: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "podci", *args], capture_output=True, text=True, timeout=300, check=False,
        env={**plain.env, "PODCI_STATE_DIR": str(plain.tmp / state), **env},
    )  # fmt: skip
    print(f"podci {' '.join(args)}: exit {done.returncode} after {time.monotonic() - started:.1f} s")
    return done


@contextmanager
def failing_tests(cluster: FakeCluster, build: str = "example-1") -> Iterator[None]:
    """The fake runs no code: it is told that this build's tests fail (every `podci run` below has a
    state directory, and so a build numbering, of its own: its build is `example-1`)."""
    cluster.configure(build, test_exit_code=1, test_output="FAIL: test_counts_twice (AssertionError: 1 != 2)")
    try:
        yield
    finally:
        cluster.build_settings.pop(build, None)


def leftovers(cluster: FakeCluster, build: str, deadline: float = 30) -> list[str]:
    """What is left of the build once deletions it had accepted (a claim still terminating) are done."""
    until = time.monotonic() + deadline
    while True:
        found = [f"{kind}/{o['metadata']['name']}" for kind in KINDS
                 for o in cluster.objects(kind, NAMESPACE, f"{BUILD_LABEL}={build}")]  # fmt: skip
        found += [f"persistentvolumes/{o['metadata']['name']}" for o in cluster.objects("persistentvolumes")
                  if (o["metadata"].get("labels") or {}).get(BUILD_LABEL) == build]  # fmt: skip
        if not found or time.monotonic() > until:
            return found
        time.sleep(0.1)


def finished(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stdout, done.stderr[-3000:]
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def test_the_example_passes_with_the_code_from_the_worker_and_leaves_nothing(plain: Plain) -> None:
    done = podci(plain, "run", "--backend", "kubernetes", "--json", state="pass")
    record = finished(done)
    assert done.returncode == 0, record["reason"]
    assert record["state"] == "succeeded"
    name = record["name"]
    # the pod checked the worker's merge out of the bundle it was sent: it fetched nothing itself
    assert (name, record["merge_commit"]) in plain.cluster.checkouts
    pod = next(o for o in plain.cluster.validated if o["kind"] == "Pod" and o["metadata"]["name"] == name)
    checkout = next(c for c in pod["spec"]["initContainers"] if c["name"] == CHECKOUT_CONTAINER)
    assert {v["name"] for v in checkout["env"]} == {"PODCI_WORKSPACE", "MERGE_COMMIT", "CODE_WAIT"}
    assert pod["metadata"]["namespace"] == NAMESPACE  # the kubeconfig context's, PODCI_KUBE_NAMESPACE unset
    assert {c["name"]: c["workingDir"] for c in pod["spec"]["containers"] if c.get("workingDir")} == {
        "tests": "/workspace",
        "counter": "/workspace",
    }
    assert leftovers(plain.cluster, name) == []
    assert plain.cluster.workspace_dirs() == {}, "the hostPath workspace directory stayed on the node"


def test_the_failing_branch_fails_and_leaves_nothing(plain: Plain) -> None:
    with failing_tests(plain.cluster):
        done = podci(plain, "run", "--backend", "kubernetes", "--source", "failing", "--json", state="fail")
    record = finished(done)
    assert done.returncode == 1, record["reason"]
    assert record["state"] == "failed" and record["reason"] == "tests failed with exit code 1"
    assert leftovers(plain.cluster, record["name"]) == []
    assert plain.cluster.workspace_dirs() == {}


def test_a_kept_failed_pod_and_its_workspace_are_collected_later(plain: Plain) -> None:
    state = "kept"
    with failing_tests(plain.cluster):
        done = podci(plain, "run", "--backend", "kubernetes", "--source", "failing", "--json", state=state,
                     PODCI_KUBE_KEEP_FAILED_POD_MINUTES="1")  # fmt: skip
    record = finished(done)
    assert done.returncode == 1 and record["pod_kept_until"] is not None
    name = record["name"]
    assert f"pods/{name}" in leftovers(plain.cluster, name, deadline=0)
    kept = plain.cluster.get("pods", name, NAMESPACE)
    assert kept is not None
    assert plain.cluster.workspace_dirs() == {f"node:{kept['spec']['nodeName']}": {f"/var/lib/podci/{name}"}}
    deadline = time.monotonic() + 120
    while leftovers(plain.cluster, name, deadline=0) or plain.cluster.workspace_dirs():
        assert time.monotonic() < deadline, (
            leftovers(plain.cluster, name, 0),
            plain.cluster.workspace_dirs(),
        )
        gc = podci(plain, "gc", "--delete", state=state, PODCI_BACKEND="kubernetes",
                   PODCI_KUBE_KEEP_FAILED_POD_MINUTES="0")  # fmt: skip
        assert gc.returncode == 0, gc.stderr[-2000:]
        plain.cluster.settle(0.5)
    assert plain.cluster.problems == []


def test_a_claim_no_provisioner_binds_is_named(plain: Plain, tmp_path: Path) -> None:
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    repo = Repo(
        tmp_path / "unbound", {".podci.yml": config.replace("timeouts:\n", "timeouts:\n  unscheduled: 3\n")}
    )
    done = podci(plain, "run", "--backend", "kubernetes", "--repo", str(repo.path), "--source", "main",
                 "--json", state="unbound", PODCI_KUBE_STATIC_VOLUMES="none")  # fmt: skip
    record = finished(done)
    assert done.returncode == 2
    assert f"the workspace claim `{record['name']}` is not bound" in record["reason"]
    assert "pod has unbound immediate PersistentVolumeClaims" in record["reason"]
    assert leftovers(plain.cluster, record["name"]) == []


def test_a_service_bound_to_loopback_fails_setup_naming_the_refused_probe(
    plain: Plain, tmp_path: Path
) -> None:
    example = Path(__file__).parent.parent / "examples/webapp"
    pod = (
        (example / ".podci/pod.yaml")
        .read_text()
        .replace("args: [--port,", "args: [--host, 127.0.0.1, --port,")
    )
    config = (example / ".podci.yml").read_text().replace("setup: 60", "setup: 4")
    repo = Repo(tmp_path / "loopback", {".podci/pod.yaml": pod, ".podci.yml": config})
    done = podci(plain, "run", "--backend", "kubernetes", "--repo", str(repo.path), "--source", "main",
                 "--json", state="loopback")  # fmt: skip
    record = finished(done)
    assert done.returncode == 2
    assert "setup did not complete within 4 s" in record["reason"]
    assert "Readiness probe failed: dial tcp" in record["reason"] and "connection refused" in record["reason"]
    # the local backend says so before any cluster does
    local = podci(plain, "run", "--backend", "local", "--repo", str(repo.path), "--source", "main", "--json",
                  state="loopback-local")  # fmt: skip
    assert local.returncode == 2
    assert "listens on 127.0.0.1 only" in finished(local)["reason"]


# --- commands that need a cluster check it first, and say why they cannot go on -----------------------


def test_no_cluster_configured_exits_2_with_a_sentence(plain: Plain, tmp_path: Path) -> None:
    done = podci(plain, "run", "--backend", "kubernetes", state="none", KUBECONFIG=str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "no Kubernetes cluster is configured" in done.stderr and "Traceback" not in done.stderr
    gc = podci(plain, "gc", state="none", PODCI_BACKEND="kubernetes", KUBECONFIG=str(tmp_path / "missing"))
    assert gc.returncode == 2 and "Traceback" not in gc.stderr


def test_an_unreachable_cluster_exits_2(plain: Plain, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}", NAMESPACE)
    done = podci(plain, "run", "--backend", "kubernetes", state="unreachable", KUBECONFIG=str(config))
    assert done.returncode == 2
    assert "cannot reach the Kubernetes API at http://127.0.0.1:" in done.stderr


def test_a_missing_namespace_exits_2(plain: Plain, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", plain.url, "nowhere")
    done = podci(plain, "run", "--backend", "kubernetes", state="nowhere", KUBECONFIG=str(config))
    assert done.returncode == 2
    assert 'namespaces "nowhere" not found' in done.stderr


def test_missing_rights_exit_2_naming_them(plain: Plain) -> None:
    plain.cluster.deny("create", "pods", "exec")
    plain.cluster.deny("delete", "persistentvolumeclaims")
    try:
        done = podci(
            plain,
            "worker",
            state="rights",
            PODCI_BACKEND="kubernetes",
            PODCI_REDIS_URL="redis://127.0.0.1:1/0",
        )
    finally:
        plain.cluster.denied.clear()
    assert done.returncode == 2
    assert (
        f"podci may not create pods/exec, delete persistentvolumeclaims in namespace {NAMESPACE}"
        in done.stderr
    )


def test_namespace_resolution_follows_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.settings import Settings
    from workers.backends.kubernetes import api

    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1", "from-context")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setattr(api, "IN_CLUSTER_NAMESPACE", tmp_path / "not-in-a-pod")
    assert api.resolve_namespace(Settings()) == "from-context"
    assert api.resolve_namespace(Settings(kube_namespace="set")) == "set"
    (tmp_path / "sa-namespace").write_text("own\n")
    monkeypatch.setattr(api, "IN_CLUSTER_NAMESPACE", tmp_path / "sa-namespace")
    assert api.resolve_namespace(Settings()) == "own"
    monkeypatch.setattr(api, "IN_CLUSTER_NAMESPACE", tmp_path / "not-in-a-pod")
    bare = yaml.safe_load(config.read_text())
    del bare["contexts"][0]["context"]["namespace"]
    config.write_text(yaml.safe_dump(bare))
    assert api.resolve_namespace(Settings()) == "default"
    with pytest.raises(api.PermanentError, match="no context named 'other'"):
        api.resolve_namespace(Settings(kube_context="other"))
