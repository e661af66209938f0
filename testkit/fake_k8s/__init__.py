"""A fake Kubernetes API server for the tests, spoken to by the official `kubernetes` client unchanged.

Why: the Kubernetes backend must be tested end to end (create, watch, exec, logs, faults such as
eviction or an unschedulable pod) without a cluster. The fake serves the real REST paths and shapes,
validates what it is sent with kubernetes_validate (strict), and simulates scheduler and kubelet.

Use::

    from testkit.fake_k8s import FakeCluster, make_app, serve, core_v1

    cluster = FakeCluster()                      # namespaces default, kube-system, podci-builds
    with serve(cluster) as url:                  # uvicorn in a thread (tests.helpers.Server)
        v1 = core_v1(url)                        # CoreV1Api on Configuration(host=url)
        cluster.configure(test_exit_code=1)      # or configure("job-7", ...) for one build
        cluster.unschedulable("job-7")
        ...
        assert cluster.self_check() == []        # the fake produced only valid objects

Modules: store.py (objects, resourceVersions, history, watchers), lifecycle.py (the pod simulation),
cluster.py (FakeCluster: API semantics and controls), nodes.py (labels, taints, the scheduler's filters),
app.py (routes), exec_ws.py (pods/exec).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .app import make_app
from .cluster import ExecRecord, FakeCluster, RequestRecord
from .errors import ApiError
from .lifecycle import SimSettings

__all__ = [
    "ApiError",
    "ExecRecord",
    "FakeCluster",
    "RequestRecord",
    "SimSettings",
    "core_v1",
    "make_app",
    "serve",
    "write_kubeconfig",
]


@contextmanager
def serve(cluster: FakeCluster) -> Iterator[str]:
    """Run `make_app(cluster)` on a free port; yield its URL; close the cluster (ending open watches,
    which uvicorn would otherwise wait for) before stopping the server."""
    from testkit.servers import Server

    with Server(make_app(cluster)) as server:
        try:
            yield server.url
        finally:
            cluster.close()


def write_kubeconfig(path: Path, server: str, namespace: str | None) -> Path:
    """A kubeconfig whose one context points at the fake at `server` (with `namespace`, if any)."""
    context = {"cluster": "fake", "user": "podci", **({"namespace": namespace} if namespace else {})}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "podci", "user": {"token": "unused"}}],
        "contexts": [{"name": "fake", "context": context}],
    }))  # fmt: skip
    return path


def core_v1(url: str, **config: Any) -> Any:
    """`kubernetes.client.CoreV1Api` for the fake at `url`; `config` sets Configuration attributes
    (e.g. `retries=False` to see a 429 at once instead of urllib3 retrying it)."""
    from kubernetes import client

    configuration = client.Configuration(host=url)
    for key, value in config.items():
        setattr(configuration, key, value)
    return client.CoreV1Api(client.ApiClient(configuration))
