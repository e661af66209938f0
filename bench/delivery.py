"""What delivering the code to a pod costs: the worker's git bundle, streamed over exec into the checkout
container, for a repository of a given size.

A repository of `--megabytes` of incompressible files is made, merged and bundled as the checkout step
and the backend do it, then streamed into a waiting checkout container of the fake API server (in a
process of its own; it checks the commit out of the bundle with the real git). Printed: the bundle's
size, seconds to fetch and merge (the checkout step's own work, as before), to make the bundle and to
stream it, MB/s, and this process's peak memory growth while streaming (the file is sent in 1 MiB
chunks, so it does not grow with the repository). The fake's websocket end is Python on loopback: a
real cluster's path (API server, kubelet, container runtime) is slower; docs/kubernetes.md says more.

Usage: python -m bench.delivery [--megabytes N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from podci.embedded import free_port, stop_process_group
from schemas.request import Revision
from schemas.settings import Settings
from testkit.gitrepo import Repo
from workers import gitops
from workers.backends.kubernetes.api import KubeApi
from workers.backends.kubernetes.names import BUNDLE, CHECKOUT_CONTAINER, CHECKOUT_SCRIPT, RECEIVE_SCRIPT
from workers.backends.kubernetes.objects import PODCI_SECURITY

RESULTS = Path(__file__).parent / "results"
NAMESPACE = "podci-builds"


def make_repo(root: Path, megabytes: int) -> Repo:
    repo = Repo(root / "repo", {"README": "a repository to deliver\n"}, from_example=False)
    data = root / "repo" / "data"
    data.mkdir()
    for index in range(megabytes):
        (data / f"blob-{index:05d}.bin").write_bytes(os.urandom(1 << 20))
    repo.commit({}, "data")
    return repo


def waiting_pod(name: str, commit: str) -> dict[str, Any]:
    env = [{"name": "PODCI_WORKSPACE", "value": "/workspace"}, {"name": "MERGE_COMMIT", "value": commit},
           {"name": "CODE_WAIT", "value": "600"}]  # fmt: skip
    mounts = [{"name": "ws", "mountPath": "/workspace"}]
    labels = {"podci.io/build": name, "app.kubernetes.io/managed-by": "podci"}
    # The bench's namespace enforces Pod Security `restricted`, as podci's own pods meet it.
    checkout = {"name": CHECKOUT_CONTAINER, "image": "alpine/git:2.45.2", "securityContext": PODCI_SECURITY,
                "command": ["sh", "-c", CHECKOUT_SCRIPT], "env": env, "volumeMounts": mounts}  # fmt: skip
    tests = {
        "name": "tests",
        "image": "alpine:3.20",
        "command": ["sleep", "infinity"],
        "volumeMounts": mounts,
        "securityContext": PODCI_SECURITY,
    }
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "initContainers": [checkout], "containers": [tests],
                 "volumes": [{"name": "ws", "emptyDir": {}}]},
    }  # fmt: skip


def _checkout(core: Any, name: str) -> dict[str, Any] | None:
    pod = core.read_namespaced_pod(name, NAMESPACE, _preload_content=False)
    statuses = json.loads(pod.data)["status"].get("initContainerStatuses") or []
    return next((s["state"] for s in statuses if s["name"] == CHECKOUT_CONTAINER), None)


def _until(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def measure(megabytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podci-delivery-") as tmp:
        repo = make_repo(Path(tmp), megabytes)
        started = time.perf_counter()
        merged = gitops.prepare(Revision(clone_url=str(repo.path), ref="main"), None, Path(tmp) / "checkout",
                                datetime.now(UTC))  # fmt: skip
        assert merged.commit is not None
        fetched = time.perf_counter() - started
        started = time.perf_counter()
        bundle = gitops.bundle(Path(tmp) / "checkout", merged.commit)
        bundled = time.perf_counter() - started
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "testkit.fake_k8s", "--port", str(port)],
                                  start_new_session=True)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            api = KubeApi(
                Settings(kube_namespace=NAMESPACE), client.ApiClient(client.Configuration(host=url))
            )
            _until(lambda: _answers(api), "the fake API server did not start")
            api.create("pods", waiting_pod("delivery-1", merged.commit))
            _until(lambda: "running" in (_checkout(api.core, "delivery-1") or {}), "no checkout container")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            size = bundle.stat().st_size
            argv = ["sh", "-c", RECEIVE_SCRIPT, "podci-receive", str(size), f"/workspace/{BUNDLE}"]
            started = time.perf_counter()
            code, output = api.exec("delivery-1", CHECKOUT_CONTAINER, argv, timeout=600, stdin=bundle)
            streamed = time.perf_counter() - started
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            assert code == 0, output
            ended = _until(
                lambda: (_checkout(api.core, "delivery-1") or {}).get("terminated"), "never checked out"
            )
            assert ended["exitCode"] == 0, ended
        finally:
            stop_process_group(server, timeout=10)
    return {
        "repository_mb": megabytes,
        "bundle_mb": round(size / 1e6, 1),
        "fetch_and_merge_s": round(fetched, 2),
        "bundle_s": round(bundled, 2),
        "stream_s": round(streamed, 2),
        "stream_mb_per_s": round(size / 1e6 / streamed, 1),
        "worker_peak_rss_growth_mib_while_streaming": round(rss_growth / 1024, 1),
    }


def _answers(api: KubeApi) -> bool:
    try:
        api.version(2)
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    result = measure(parser.parse_args().megabytes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delivery.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>45}: {value}")


if __name__ == "__main__":
    main()
