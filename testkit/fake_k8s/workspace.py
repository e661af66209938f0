"""What the fake's pods do with their volume and their commands, as far as podci can tell the difference.

- The checkout init container. With a `MERGE_COMMIT` (bundle delivery) it waits for the git bundle an
  exec streams in, then checks that commit out of it with the real git, so a bundle that does not hold
  the build's merge fails the pod as git would; the checked-out text files become the build's simulated
  workspace (what `cat` of a JUnit report reads). Without one (clone delivery) it completes after a
  short while, as before. A volume checked out already (`.podci/checkout.done`, a relaunch) completes at
  once. A bundle that never comes fails it after `CODE_WAIT` seconds, as the real script does.
- Static volume directories: a pod mounting a hostPath or NFS claim with a `subPath` makes that
  directory (on its node, or on the NFS server); podci's cleanup pod removes one.
- What a real node would not run: a template container given a relative file (`service/counter.py`)
  with no `workingDir` runs in the image's `/` and exits as python does; a readiness probe on a port
  the container binds to 127.0.0.1 only (its arguments say so, or a test said so) is refused when the
  kubelet dials the pod's IP, so the container never becomes ready.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.backends.kubernetes.names import (
    BUNDLE,
    CHECKOUT_CONTAINER,
    CLEANUP_CONTAINER,
    STATE_DIR,
    WORKSPACE_VOLUME,
)
from workers.gitops import MERGE_REF

if TYPE_CHECKING:
    from .cluster import FakeCluster
    from .lifecycle import ContainerSim, PodSim

Obj = dict[str, Any]
_RELATIVE_FILE = re.compile(r"^[\w.-]+(/[\w.-]+)+$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_KEPT_FILE = 256 * 1024  # text files up to this size become readable through `cat` execs


def env_of(spec: Obj) -> dict[str, str]:
    return {str(v.get("name")): str(v.get("value", "")) for v in spec.get("env") or [] if isinstance(v, dict)}


def relative_file(spec: Obj) -> str | None:
    """The first argument naming a file by a relative path, when the container sets no `workingDir`."""
    if spec.get("workingDir"):
        return None
    words = [str(w) for w in (spec.get("command") or []) + (spec.get("args") or [])]
    return next((w for w in words[1:] if _RELATIVE_FILE.match(w) and "$(" not in w), None)


def binds_loopback(spec: Obj) -> bool:
    words = [str(w) for w in (spec.get("command") or []) + (spec.get("args") or [])]
    return any(w in _LOOPBACK or w.startswith(("127.0.0.1:", "localhost:")) for w in words)


def probed_port(spec: Obj) -> int | str | None:
    probe = spec.get("readinessProbe") or {}
    action = probe.get("tcpSocket") or probe.get("httpGet") or {}
    port = action.get("port")
    if isinstance(port, str):
        for declared in spec.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
    return port if isinstance(port, int | str) else None


# --- the checkout init container ---------------------------------------------------------------------


def checkout_mode(container: ContainerSim) -> str:
    """`done` (a relaunch on a checked-out volume), `bundle` (waits for the worker's code) or `clone`."""
    return "bundle" if "MERGE_COMMIT" in env_of(container.spec) else "clone"


def workspace_of(container: ContainerSim) -> str:
    return env_of(container.spec).get("PODCI_WORKSPACE", "/workspace").rstrip("/") or "/"


def already_checked_out(cluster: FakeCluster, sim: PodSim, container: ContainerSim) -> bool:
    files = cluster.files.setdefault(cluster.fs_key(sim), {})
    return f"{workspace_of(container)}/{STATE_DIR}/checkout.done" in files


def extract(cluster: FakeCluster, sim: PodSim, container: ContainerSim, bundle: bytes) -> str | None:
    """Check the merge commit out of `bundle` with the real git into the simulated workspace; the
    error text (git's) when that fails, None when it worked."""
    commit = env_of(container.spec).get("MERGE_COMMIT", "")
    workspace = workspace_of(container)
    files = cluster.files.setdefault(cluster.fs_key(sim), {})
    with tempfile.TemporaryDirectory(prefix="fake-k8s-checkout-") as tmp:
        path = Path(tmp) / "code.bundle"
        path.write_bytes(bundle)
        repo = Path(tmp) / "ws"
        steps = (
            ["git", "init", "-q", str(repo)],
            ["git", "-C", str(repo), "fetch", "-q", "--no-tags", str(path), f"+{MERGE_REF}:{MERGE_REF}"],
            ["git", "-C", str(repo), "checkout", "-q", "--detach", commit],
        )
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return done.stderr or f"{argv[3]} failed"
        for item in repo.rglob("*"):
            relative = item.relative_to(repo)
            if item.is_file() and relative.parts[0] != ".git" and item.stat().st_size <= _KEPT_FILE:
                try:
                    files[f"{workspace}/{relative.as_posix()}"] = item.read_text()
                except UnicodeDecodeError:
                    continue
    files.pop(f"{workspace}/{BUNDLE}", None)
    files[f"{workspace}/{STATE_DIR}/checkout.done"] = ""
    cluster.checkouts.append((sim.name, commit))
    return None


def receive(cluster: FakeCluster, sim: PodSim, path: str, data: bytes) -> None:
    """The receiving end of RECEIVE_SCRIPT: the bundle is on the volume; a waiting checkout takes it."""
    cluster.files.setdefault(cluster.fs_key(sim), {})[posixpath.normpath(path)] = "<git bundle>"
    cluster.bundles[cluster.fs_key(sim)] = data
    checkout = sim.container(CHECKOUT_CONTAINER)
    if checkout is not None and checkout.state == "running" and checkout_mode(checkout) == "bundle":
        cluster.sim.code_arrived(sim, checkout)


# --- static volume directories -----------------------------------------------------------------------


def _volume_root(cluster: FakeCluster, sim: PodSim, claim: str) -> tuple[str, str] | None:
    """(where the data lives: `node:<name>` or `nfs:<server>`, the root path) of a static claim."""
    pvc = cluster.store.get("persistentvolumeclaims", sim.namespace, claim)
    volume = ((pvc or {}).get("spec") or {}).get("volumeName")
    pv = cluster.store.get("persistentvolumes", "", volume) if volume else None
    spec = (pv or {}).get("spec") or {}
    if "hostPath" in spec:
        return f"node:{sim.node}", str(spec["hostPath"]["path"]).rstrip("/")
    if "nfs" in spec:
        return f"nfs:{spec['nfs']['server']}", str(spec["nfs"]["path"]).rstrip("/")
    return None


def _claim_of(pod: Obj, volume: str) -> str | None:
    for item in (pod.get("spec") or {}).get("volumes") or []:
        if item.get("name") == volume and item.get("persistentVolumeClaim"):
            return str(item["persistentVolumeClaim"]["claimName"])
    return None


def make_dirs(cluster: FakeCluster, sim: PodSim, pod: Obj) -> None:
    """The kubelet creates each `subPath` a container mounts from a static volume."""
    for spec in (pod.get("spec") or {}).get("initContainers", []) + (pod.get("spec") or {}).get(
        "containers", []
    ):
        for mount in spec.get("volumeMounts") or []:
            claim = _claim_of(pod, str(mount.get("name")))
            root = _volume_root(cluster, sim, claim) if claim and mount.get("subPath") else None
            if root is not None:
                cluster.volume_dirs.setdefault(root[0], set()).add(f"{root[1]}/{mount['subPath']}")


def clean(cluster: FakeCluster, sim: PodSim, pod: Obj, container: ContainerSim) -> None:
    """podci's cleanup container: `sh -c CLEANUP_SCRIPT podci-cleanup <mount>/<build>`."""
    words = [str(w) for w in container.spec.get("command") or []]
    target = words[-1] if words else ""
    for mount in container.spec.get("volumeMounts") or []:
        prefix = str(mount.get("mountPath", "")).rstrip("/") + "/"
        claim = _claim_of(pod, str(mount.get("name")))
        root = _volume_root(cluster, sim, claim) if claim and target.startswith(prefix) else None
        if root is not None:
            name = target[len(prefix) :]
            cluster.volume_dirs.get(root[0], set()).discard(f"{root[1]}/{name}")
            cluster.files.pop(name, None)  # the build's workspace content went with it
            cluster.bundles.pop(name, None)


def is_cleanup(container: ContainerSim) -> bool:
    return container.name == CLEANUP_CONTAINER


def uses_workspace(pod: Obj) -> bool:
    return any(v.get("name") == WORKSPACE_VOLUME for v in (pod.get("spec") or {}).get("volumes") or [])
