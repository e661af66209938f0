"""The garbage collector (Prow's sinker): what finished builds left behind, on the cluster and on the
worker's own disk. Runs on beat every `dispatch.app.GC_INTERVAL` and as `podci gc`.

Teardown removes everything of a build; this pass catches what a crash, a bug or a lost Redis made it
miss. A build that is still running is never touched.
"""

from __future__ import annotations

import shutil
import time

from schemas.settings import Settings
from store.builds import BuildStore
from workers.backends import backend_type


def stale_checkouts(settings: Settings, store: BuildStore) -> list[str]:
    """Build names with a checkout on this worker's disk whose build is complete or unknown."""
    root = settings.checkouts_dir
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [name for name in names if (record := store.get(name)) is None or record.complete]


def expired_logs(settings: Settings, store: BuildStore, now: float) -> list[str]:
    """Build names whose logs outlived PODCI_RETENTION_DAYS: untouched that long, and no record left
    (it expires after the same time) or a complete one."""
    root = settings.logs_dir
    old = now - settings.retention_seconds
    names = (
        sorted(p.name for p in root.iterdir() if p.is_dir() and p.stat().st_mtime < old)
        if root.is_dir()
        else []
    )
    return [name for name in names if (record := store.get(name)) is None or record.complete]


def collect_garbage(settings: Settings, store: BuildStore, *, dry_run: bool) -> list[str]:
    """Delete (unless `dry_run`) and return what would be deleted, one line each."""
    gone = backend_type(settings.backend).collect_garbage(settings, store, dry_run=dry_run)
    for name in stale_checkouts(settings, store):
        gone.append(f"checkout {settings.checkouts_dir / name}")
        if not dry_run:
            shutil.rmtree(settings.checkouts_dir / name, ignore_errors=True)
    for name in expired_logs(settings, store, time.time()):
        gone.append(f"logs {settings.logs_dir / name}")
        if not dry_run:
            shutil.rmtree(settings.logs_dir / name, ignore_errors=True)
    return gone
