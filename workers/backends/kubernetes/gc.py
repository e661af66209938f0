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
from workers.backends.kubernetes.names import BUILD_LABEL, SELECTOR

if TYPE_CHECKING:
    from workers.backends.kubernetes.api import KubeApi


@dataclass(frozen=True)
class Found:
    kind: str
    name: str
    build: str
    created: datetime


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
                found.append(Found(kind, meta["name"], build, _parse_time(meta["creationTimestamp"])))
    return found


def collect(
    api: KubeApi, store: BuildStore, settings: Settings, *, dry_run: bool, now: datetime
) -> list[str]:
    """Find and (unless `dry_run`) delete; returns `kind/name` of what is (or would be) deleted."""
    kinds = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")
    ttl = timedelta(hours=settings.kube_gc_ttl_hours)
    keep = timedelta(minutes=settings.kube_keep_failed_pod_minutes)
    records: dict[str, BuildRecord | None] = {}
    gone = []
    for found in find(api, kinds):
        if found.build not in records:
            records[found.build] = store.get(found.build)
        if doomed(found, records[found.build], now, ttl, keep):
            gone.append(f"{found.kind}/{found.name}")
            if not dry_run:
                api.delete(found.kind, found.name)
    return gone
