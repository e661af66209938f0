"""Start a build: write its record, then send its first step. Used by the CLI and the webhook receiver."""

from __future__ import annotations

import time
from collections.abc import Sequence

from celery import Celery

from dispatch.app import FIRST_STEP
from dispatch.send import send, send_report
from schemas.record import BuildRecord
from schemas.request import BuildRequest
from schemas.settings import Settings
from store.builds import BuildStore

# The providers whose builds get a status at once: their reporters are named after them.
STATUS_REPORTERS = ("bitbucket-cloud", "bitbucket-server")


def submit(
    app: Celery, store: BuildStore, settings: Settings, request: BuildRequest, dedupe: Sequence[str] = ()
) -> BuildRecord:
    """Raises `store.builds.DuplicateBuild` (and sends nothing) when a `dedupe` key was seen before.

    An untrusted pull request's build (`request.trusted` false) waits for approval: it is recorded,
    and its "waiting for approval" status is posted, but no step is sent (`start_approved`)."""
    # The record is written first and is due at once plus the grace: if this process dies before the
    # message is sent, the reconciler sends it (a waiting build's report, its report due time).
    waiting = not request.trusted
    record = store.create(
        request,
        log_root=settings.log_store_url,
        due=time.time() + settings.stall_grace,
        dedupe=dedupe,
        dedupe_ttl=settings.delivery_ttl,
        waiting=waiting,
    )
    if waiting:
        send_report(app, record.id)
    else:
        send(app, FIRST_STEP, record.id, record.seq, store=store)
    return record


def start_approved(app: Celery, store: BuildStore, settings: Settings, build_id: str, by: str) -> bool:
    """Start a build that waited for approval; False when it was not waiting (any more)."""
    record = store.approve(build_id, by, due=time.time() + settings.stall_grace)
    if record is None:
        return False
    send(app, FIRST_STEP, record.id, record.seq, store=store)
    return True
