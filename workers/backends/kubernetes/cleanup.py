"""Removing a build's directory from a static volume (hostPath, NFS), which Kubernetes never does.

Deleting a PV leaves its data where it was, so podci runs a short pod (`objects.make_cleanup_pod`)
that mounts the volume's root through the build's own claim and removes the build's directory; only
then are the claim and the volume deleted. Teardown runs it after the build's pods are gone; the
garbage collector runs it for builds whose teardown could not (a kept failed pod, a crash).
"""

from __future__ import annotations

from redis import Redis

from schemas.settings import Settings
from store import keys
from store.connection import as_text
from workers.backends.kubernetes.api import KubeApi, Obj
from workers.backends.kubernetes.names import BUILD_LABEL
from workers.backends.kubernetes.objects import cleanup_pod_name, make_cleanup_pod
from workers.errors import TransientError
from workers.logfiles import first_error_line

_DAY = 24 * 3600


def _phase(pod: dict[str, object] | None) -> str | None:
    status = pod.get("status") if pod else None
    return str(status.get("phase")) if isinstance(status, dict) and status.get("phase") else None


def _failure(pod: dict[str, object]) -> str:
    status = pod.get("status")
    for entry in (status.get("containerStatuses") or []) if isinstance(status, dict) else []:
        terminated = (entry.get("state") or {}).get("terminated") or {}
        if terminated:
            return (
                first_error_line(str(terminated.get("message") or ""))
                or f"exit code {terminated.get('exitCode')}"
            )
    return "the cleanup pod failed"


def remember_node(redis: Redis, build: str, pods: list[Obj]) -> None:
    """Where the build's hostPath workspace lives, the node its pods ran on, kept for the cleanup pod
    (which runs after the pods are gone, and so could not ask them)."""
    nodes = [str(node) for pod in pods if (node := (pod.get("spec") or {}).get("nodeName"))]
    if nodes:
        redis.set(keys.teardown_node(build), nodes[-1], ex=7 * _DAY)


def remove_workspace(api: KubeApi, redis: Redis, settings: Settings, build: str) -> bool:
    """One look at the cleanup of `build`'s workspace; True once the directory is gone and the deletes
    of the claim and volume are sent. Call only when the build's own pods are gone. Safe to repeat."""
    done = keys.workspace_removed(build)
    if redis.get(done) is None:
        name = cleanup_pod_name(build)
        pod = next(
            (p for p in api.select("pods", f"{BUILD_LABEL}={build}") if p["metadata"]["name"] == name), None
        )
        phase = _phase(pod)
        if pod is None:
            node = redis.get(keys.teardown_node(build))
            api.create("pods", make_cleanup_pod(build, settings, as_text(node) if node else None))
            return False
        if phase == "Failed":
            api.delete("pods", name, grace_seconds=0)  # the next look tries again with a new pod
            raise TransientError(f"removing the workspace of {build} failed: {_failure(pod)}")
        if phase != "Succeeded":
            return False
        redis.set(done, "1", ex=_DAY)
        api.delete("pods", name, grace_seconds=0)
    api.delete("persistentvolumeclaims", build)
    api.delete("persistentvolumes", build)
    return True
