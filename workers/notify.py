"""`podci.notify`: post a build's current state with one reporter, apart from the pipeline.

Sent when a build is accepted (by the receiver: INPROGRESS at once), when it starts and when it
completes. What each post said is remembered in `record.reported`, so nothing is said twice (queued
and running are both INPROGRESS on Bitbucket: one post), and a lock per (build, reporter) keeps a
slow retry and a newer message from posting at once. An old retry that runs after the build finished
posts the final state, never a stale INPROGRESS. Failures are retried with backoff up to
`PODCI_REPORT_RETRIES`, and never touch the build's own state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import Celery, Task
from celery.utils.time import get_exponential_backoff_interval

from dispatch.send import notify as send_notify
from schemas.record import BuildRecord, BuildState, utcnow
from store import keys, metrics
from store.builds import Snapshot
from store.connection import as_text
from workers.errors import TransientError
from workers.process import ProcessResources

log = logging.getLogger("podci.notify")


def notify_all(app: Celery, proc: ProcessResources, record: BuildRecord) -> None:
    """One `podci.notify` per reporter with something to say now (no message for the others)."""
    for name in pending_reports(proc, record):
        send_notify(app, record.id, name)


def _remember(name: str, state: str) -> Callable[[BuildRecord], None]:
    def change(record: BuildRecord) -> None:
        record.reported[name] = state

    return change


def pending_reports(proc: ProcessResources, record: BuildRecord) -> list[str]:
    """Reporters that have something to say about the record's state and have not said it yet."""
    return [
        name
        for name, reporter in proc.reporters.items()
        if reporter.applies(record) and record.reported.get(name) != reporter.says(record)
    ]


# How long a (build, reporter) lock holds at most. It must outlast any post (each reporter's HTTP
# timeout is 10 s per phase: connect, send, answer), and it is all a worker killed mid-post leaves
# behind: the build's next report waits it out, so it is not longer than that.
LOCK_SECONDS = 45
# How long a post whose outcome is unknown is remembered (`keys.report_sending`): a re-sent report comes
# within minutes (`resend_reports`), a retry within `PODCI_REPORT_BACKOFF_MAX`.
_SENDING_TTL = 24 * 3600


def resend_reports(app: Celery, proc: ProcessResources, grace: float) -> int:
    """The final reports of completed builds, sent again when a worker died before sending them or
    they are still failing. Re-sent messages try once (`retry=False`): this look repeats them, a
    minute later, or as soon as the reporter's lock expires when one is held (likely by a worker
    killed mid-post: a message sent now would only find it busy, and the next look is a minute off)."""
    now, sent = time.time(), 0
    redis = proc.store.redis
    for build_id in proc.store.reports_overdue(now):
        record = proc.store.get(build_id)
        names = [] if record is None else pending_reports(proc, record)
        when: float | None = None
        for name in names:
            held = int(redis.pttl(keys.report_lock(build_id, name)))
            if held > 0:
                again = now + held / 1000 + 0.5
            else:
                send_notify(app, build_id, name, retry=False)
                sent += 1
                again = now + max(grace, 60)
            when = again if when is None else min(when, again)
        proc.store.reports_due_at(build_id, when)
    return sent


def notify(proc: ProcessResources, build_id: str, name: str, task: Task, retry: bool = True) -> str:
    reporter, store = proc.reporters.get(name), proc.store
    if reporter is None:
        return "no such reporter"
    lock = store.redis.lock(keys.report_lock(build_id, name), timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        if not retry:
            return "busy"
        raise task.retry(countdown=1, max_retries=None)
    try:
        seen = store.read(build_id)
        if (
            seen is None
            or not reporter.applies(seen.record)
            or seen.record.reported.get(name) == reporter.says(seen.record)
        ):
            return "nothing new"
        return _post(proc, seen, name, task, retry)
    finally:
        lock.release()


def _post(proc: ProcessResources, seen: Snapshot, name: str, task: Task, retry: bool) -> str:
    settings, redis, record = proc.settings, proc.store.redis, seen.record
    reporter, state = proc.reporters[name], proc.reporters[name].says(record)
    # Mark what this post sends, learning what the last one sent, in one round trip.
    earlier = redis.set(keys.report_sending(record.id, name), state, ex=_SENDING_TTL, get=True)
    if as_text(earlier or b"") == state and reporter.shows(record):
        # An earlier post of this very state may have been taken with its answer lost (its worker
        # killed before the record said so): the other end shows it, so it is not posted twice.
        proc.store.update(record.id, _remember(name, state), seen=seen)
        log.info("build=%s reporter=%s state=%s shown already", record.id, name, state)
        return f"{name}: {state} shown already"
    try:
        note = reporter.report(record)
    except TransientError as exc:
        if exc.answered:  # refused for now: nothing was shown, the retry need not ask first
            redis.delete(keys.report_sending(record.id, name))
        metrics.count(redis, "reporter_failures", name)
        tries = task.request.retries
        if retry and tries < settings.report_retries:
            countdown = get_exponential_backoff_interval(
                2, tries, settings.report_backoff_max, full_jitter=True
            )
            log.warning(
                "build=%s reporter=%s %s; retry %d in %ss", record.id, name, exc, tries + 1, countdown
            )
            raise task.retry(countdown=countdown, max_retries=settings.report_retries) from None
        log.error("build=%s reporter=%s gave up after %d tries: %s", record.id, name, tries + 1, exc)
        return "gave up"
    started = record.state in (BuildState.queued, BuildState.running)
    proc.store.update(record.id, _remember(name, state), seen=seen)
    # From webhook to INPROGRESS: podci's own delay, so not for a build that waited for a person's approval.
    if started and record.request.provider != "manual" and not record.approved_by:
        waited = (utcnow() - record.created).total_seconds()
        metrics.observe(redis, "webhook_to_inprogress_seconds", name, waited)
    log.info("build=%s reporter=%s state=%s note=%s", record.id, name, state, note)
    return note
