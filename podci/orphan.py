"""Ending a build whose only worker died under `podci run`.

The embedded worker is the only one on its Redis: once it is gone nobody moves the build on. Left
`queued` or `running`, with its message still unacknowledged, the build would be finished silently by
the next `podci run`'s worker, long after its user was told it failed. So the command ends it itself:
`error`, with the worker's exit in the reason, its `seq` moved on (a redelivered message of it is then
a duplicate and dropped), and its processes and directories removed from here.
"""

from __future__ import annotations

import shutil
import time

from schemas.record import BuildRecord, BuildState, StepState, utcnow
from schemas.settings import Settings
from store.builds import BuildStore


def end_orphaned(settings: Settings, store: BuildStore, build_id: str, reason: str) -> BuildRecord | None:
    """Mark the build `error` with `reason` and tear it down; the final record, or None when it had
    completed meanwhile (the worker died after the build ended) or is gone."""
    ended = store.update(build_id, lambda record: _end(record, reason))
    if ended is None or ended.finished is None or ended.reason != reason:
        return store.get(build_id)
    removed = tear_down(settings, store, ended)
    return store.update(build_id, lambda record: _torn_down(record, removed))


def _end(record: BuildRecord, reason: str) -> None:
    if record.complete:
        return
    now = utcnow()
    for entry in record.steps:
        if entry.state is StepState.running:
            entry.state, entry.finished, entry.detail = StepState.failed, now, reason
        elif entry.state is StepState.pending:
            entry.state = StepState.skipped
    record.state, record.reason = BuildState.error, reason
    record.finished, record.step, record.parked = now, None, False
    record.seq += 1


def _torn_down(record: BuildRecord, removed: str) -> None:
    record.reason = f"{record.reason}; {removed}"


def tear_down(settings: Settings, store: BuildStore, record: BuildRecord) -> str:
    """Remove what the build left on this machine (or cluster), as the teardown step would; a sentence
    saying what happened, never an exception: the user is being told the build failed already."""
    from workers.backends import make_backend

    deadline = time.monotonic() + settings.teardown_grace + 60
    try:
        backend = make_backend(settings, store.redis)
        while backend.teardown(record.name) is None:
            if time.monotonic() > deadline:
                return "its objects were still being deleted: `podci gc` removes the rest"
            time.sleep(0.5)  # the CLI's own wait for a deletion, not a worker's
    except Exception as exc:  # any backend failure: say what is left, never a traceback
        return f"could not remove everything ({exc}): `podci gc` will"
    finally:
        shutil.rmtree(settings.checkouts_dir / record.name, ignore_errors=True)
        shutil.rmtree(settings.scratch_log_dir(record.name), ignore_errors=True)
    return "podci run tore it down"
