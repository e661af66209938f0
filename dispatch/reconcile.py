"""The reconciler (`podci.reconcile`, on Celery beat): re-send the step of every build that is overdue.

A build is overdue when its due time passed and nothing moved it on: its message was lost, or the
worker running its step died (its lease lapsed), or it is parked and its safety-net look is due (a
wake-up that never came, a budget that ended). Re-sending is safe because every message is fenced by
the record's `seq`.

A build whose message still waits in a queue behind a backlog is overdue too, but nothing is lost:
`send` marks the build as queued until a worker receives the message, and the reconciler leaves such
builds alone while the queue shows the message can still be in it (`_still_queued`). Re-sending them
would add one more message per build on every pass, growing the backlog it was caused by (1,000
queued builds grew `podci.new` to 4,400 messages in three minutes).
"""

from __future__ import annotations

import logging
import time

from celery import Celery

from dispatch.app import queue_of
from dispatch.send import send
from schemas.record import BuildRecord
from store.builds import BuildStore

log = logging.getLogger("podci.pipeline")
_BATCH = 500  # overdue builds read at a time
_MOST_BATCHES = 40  # a pass ends after this many, however many are overdue: the next pass goes on


def _still_queued(store: BuildStore, record: BuildRecord, heads: dict[str, tuple[bool, int | None]]) -> bool:
    """Is the build's marked message still waiting in its queue?

    The mark alone cannot say: a worker that took the message off the queue and was killed before
    receiving it (a few milliseconds, but SIGKILL finds them) never clears it, and the build would sit
    out the mark's whole TTL. A queue hands out its messages oldest first, and a marked message carries
    its ticket (handed out in sending order): so when the queue is empty, or its oldest message was
    marked after this one, this one has left the queue. `heads`: the oldest message of each queue, read
    once per reconcile pass. A message sent out of ticket order only makes a duplicate (fenced out), or
    a wait until the queue has moved on."""
    ticket = store.queued_ticket(record)
    if ticket is None or record.step is None:
        return False
    queue = queue_of(record.step)
    if queue not in heads:
        heads[queue] = store.oldest_waiting(queue)
    waiting, oldest = heads[queue]
    return waiting and (oldest is None or oldest <= ticket)


def _take_overdue(store: BuildStore, build_id: str, due: float) -> tuple[BuildRecord | None, bool]:
    """The overdue build's record, moved to its next due time and no longer parked (the message sent
    now is in flight: a wake-up meanwhile must not send another); and whether it was parked."""
    parked: list[bool] = []

    def unpark(record: BuildRecord) -> None:
        parked.append(record.parked)
        record.parked = False

    record = store.update(build_id, unpark, due=due)
    return record, bool(parked and parked[-1])


def reconcile(app: Celery, store: BuildStore, grace: float, safety: float = 60.0) -> int:
    """Re-send the current step of every build whose next step is overdue; returns how many.

    A parked build's safety look is first asked of Redis (`BuildStore.look_quietly`): when what its
    last look rested on is unchanged, the look would decide the same and no message is sent, so a
    build waiting an hour costs a few Redis commands a minute, not a task. Overdue builds come in
    batches; a pass goes on while a batch moved every build on (a batch of builds left alone, still
    queued, ends it)."""
    now, sent = time.time(), 0
    heads: dict[str, tuple[bool, int | None]] = {}
    for _ in range(_MOST_BATCHES):
        overdue = store.overdue(now, _BATCH)
        quiet = store.look_quietly(overdue, now, safety)
        loud = [build_id for build_id in overdue if build_id not in quiet]
        resent, left = _resend(app, store, loud, now + grace, heads)
        sent += resent
        if len(overdue) < _BATCH or left:
            break
    return sent


def _resend(
    app: Celery, store: BuildStore, overdue: list[str], due: float, heads: dict[str, tuple[bool, int | None]]
) -> tuple[int, int]:
    """Send each overdue build's step again; returns how many were sent and how many were left alone
    (still queued behind a backlog)."""
    sent = left = 0
    for build_id in overdue:
        record, parked = _take_overdue(store, build_id, due)
        if record is None or record.complete or record.step is None:
            store.drop_due(build_id)
            continue
        if _still_queued(store, record, heads):
            left += 1
            continue  # behind a backlog, not lost
        if parked:
            log.info("build=%s step=%s parked: looking on its own", build_id, record.step)
        else:
            log.warning("build=%s step=%s overdue; sending it again", build_id, record.step)
        send(app, record.step, build_id, record.seq, store=store)
        sent += 1
    return sent, left
