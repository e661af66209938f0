"""The garbage collector (Prow's sinker): delete build objects nobody will tear down any more.

Only objects labelled `app.kubernetes.io/managed-by=podci` with a `podci.io/build` label are ever
considered. One is deleted when its build is complete (teardown missed it: a crash, a bug), or when
it is older than the TTL whatever the record says (a record lost with its Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schemas.record import BuildRecord
from schemas.settings import Settings
from store.builds import BuildStore
from workers.backends.kubernetes.cleanup import remember_node, remove_workspace
from workers.backends.kubernetes.names import BUILD_LABEL, SELECTOR
from workers.backends.kubernetes.objects import cleanup_pod_name

if TYPE_CHECKING:
    from workers.backends.kubernetes.api import KubeApi


@dataclass(frozen=True)
class Found:
    kind: str
    name: str
    build: str
    created: datetime
    node: str | None = None  # a pod's node: where a hostPath workspace is


def doomed(found: Found, record: BuildRecord | None, now: datetime, ttl: timedelta, keep: timedelta) -> bool:
    """Pure: whether GC deletes this object."""
    if now - found.created > ttl:
        return True
    if record is None or not record.complete:
        return False  # running, or not ours to judge yet
    if keep and found.kind == "pods" and record.state.value == "failed" and record.finished is not None:
        return now - record.finished > keep  # kept for debugging a while
    return True


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def find(api: KubeApi, kinds: tuple[str, ...]) -> list[Found]:
    """Every object of ours, with its build label (objects without one are left alone)."""
    found = []
    for kind in kinds:
        for obj in api.select(kind, SELECTOR):
            meta = obj["metadata"]
            build = (meta.get("labels") or {}).get(BUILD_LABEL)
            if build:
                node = (obj.get("spec") or {}).get("nodeName") if kind == "pods" else None
                created = _parse_time(meta["creationTimestamp"])
                found.append(Found(kind, meta["name"], build, created, str(node) if node else None))
    return found


def collect(
    api: KubeApi, store: BuildStore, settings: Settings, *, dry_run: bool, now: datetime
) -> list[str]:
    """Find and (unless `dry_run`) delete; returns `kind/name` of what is (or would be) deleted.

    On static volumes a doomed build's claim and volume go only after its workspace directory did
    (`cleanup.remove_workspace`, over as many passes as that takes), and its cleanup pod is left to
    that function."""
    kinds = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")
    static = settings.kube_static_volumes != "none"
    ttl = timedelta(hours=settings.kube_gc_ttl_hours)
    keep = timedelta(minutes=settings.kube_keep_failed_pod_minutes)
    records: dict[str, BuildRecord | None] = {}
    gone: list[str] = []
    workspaces: set[str] = set()
    pods_left: set[str] = set()
    for found in find(api, kinds):
        if found.kind == "pods" and found.name == cleanup_pod_name(found.build):
            continue
        if found.build not in records:
            records[found.build] = store.get(found.build)
        if found.kind == "pods":
            pods_left.add(found.build)
        if not doomed(found, records[found.build], now, ttl, keep):
            continue
        if static and found.kind in ("persistentvolumeclaims", "persistentvolumes"):
            workspaces.add(found.build)
            continue
        gone.append(f"{found.kind}/{found.name}")
        if not dry_run:
            if static and found.node:
                remember_node(store.redis, found.build, [{"spec": {"nodeName": found.node}}])
            api.delete(found.kind, found.name)
    for build in sorted(workspaces - pods_left):  # a build's pods go first; the next pass cleans up
        gone.append(f"the workspace of {build}, then its claim and volume")
        if not dry_run:
            remove_workspace(api, store.redis, settings, build)
    return gone
