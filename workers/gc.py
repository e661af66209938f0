"""The garbage collector (Prow's sinker): what finished builds left behind, on the cluster, in the
log store and on the worker's own disk. Runs on beat every `dispatch.app.GC_INTERVAL` and as `podci gc`.

Teardown removes everything of a build; this pass catches what a crash, a bug or a lost Redis made it
miss. A build that is still running is never touched.
"""

from __future__ import annotations

import logging
import shutil
import time

from schemas.settings import Settings
from store.builds import BuildStore
from store.logstore import LogStore, LogStoreUnavailable, open_log_store
from workers.backends import backend_type

log = logging.getLogger(__name__)


def stale_checkouts(settings: Settings, store: BuildStore) -> list[str]:
    """Build names with a checkout on this worker's disk whose build is complete or unknown."""
    root = settings.checkouts_dir
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [name for name in names if (record := store.get(name)) is None or record.complete]


def stale_scratch(settings: Settings, store: BuildStore) -> list[str]:
    """Build names whose logs were left on this worker's disk by a teardown that never finished."""
    root = settings.scratch_logs_dir
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [name for name in names if (record := store.get(name)) is None or record.complete]


def expired_logs(settings: Settings, store: BuildStore, logs: LogStore, now: float) -> list[str]:
    """Build names whose logs outlived PODCI_RETENTION_DAYS: untouched that long, and no record left
    (it expires after the same time) or a complete one."""
    old = now - settings.retention_seconds
    names = sorted(name for name, written in logs.builds().items() if written < old)
    return [name for name in names if (record := store.get(name)) is None or record.complete]


def collect_garbage(
    settings: Settings,
    store: BuildStore,
    *,
    dry_run: bool,
    logs: LogStore | None = None,
    now: float | None = None,
) -> list[str]:
    """Delete (unless `dry_run`) and return what would be deleted, one line each. A log store that
    does not answer leaves its logs for the next pass; the rest is collected all the same."""
    gone = backend_type(settings.backend).collect_garbage(settings, store, dry_run=dry_run)
    for name in stale_checkouts(settings, store):
        gone.append(f"checkout {settings.checkouts_dir / name}")
        if not dry_run:
            shutil.rmtree(settings.checkouts_dir / name, ignore_errors=True)
    for name in stale_scratch(settings, store):
        gone.append(f"unsaved logs {settings.scratch_log_dir(name)}")
        if not dry_run:
            shutil.rmtree(settings.scratch_log_dir(name), ignore_errors=True)
    logs = logs or open_log_store(settings.log_store_url, settings.s3_endpoint_url)
    try:
        for name in expired_logs(settings, store, logs, time.time() if now is None else now):
            gone.append(f"logs {logs.location.rstrip('/')}/{name}")
            if not dry_run:
                logs.delete(name)
    except LogStoreUnavailable as exc:
        log.warning("expired logs not deleted this time: %s", exc)
    return gone
