"""Start a build: write its record, then send its first step. Used by the CLI and the webhook receiver."""

from __future__ import annotations

import time
from collections.abc import Sequence

from celery import Celery

from dispatch.app import FIRST_STEP
from dispatch.send import send
from schemas.record import BuildRecord
from schemas.request import BuildRequest
from schemas.settings import Settings
from store.builds import BuildStore


def submit(
    app: Celery, store: BuildStore, settings: Settings, request: BuildRequest, dedupe: Sequence[str] = ()
) -> BuildRecord:
    """Raises `store.builds.DuplicateBuild` (and sends nothing) when a `dedupe` key was seen before."""
    # The record is written first and is due at once plus the grace: if this process dies before the
    # message is sent, the reconciler sends it; if both happen, the duplicate is fenced out.
    record = store.create(
        request,
        log_root=str(settings.logs_dir),
        due=time.time() + settings.stall_grace,
        dedupe=dedupe,
        dedupe_ttl=settings.delivery_ttl,
    )
    send(app, FIRST_STEP, record.id, record.seq, store=store)
    return record
