"""The Celery tasks: `podci.<step>` for each pipeline step, `podci.notify` and `podci.reconcile`.

Exactly one message per build is live at a time. It carries the record's `seq`; a task whose `seq`
no longer matches is a duplicate (redelivered after a worker died, or re-sent by the reconciler) and
does nothing. The step's effects are idempotent; moving the record on is a compare-and-set on `seq`,
and only the winner sends the next message. If a worker dies between the two, the record's due time
passes and `podci.reconcile` sends the message again.

A build whose message is still waiting in a queue behind a backlog is overdue too, but nothing is
lost: `send` marks the build as queued until a worker receives the message, and the reconciler leaves
such builds alone. Re-sending them would add one more message per build on every pass, growing the
backlog it was caused by (1,000 queued builds grew `podci.new` to 4,400 messages in three minutes).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, Task
from celery.signals import task_received
from celery.utils.time import get_exponential_backoff_interval

from schemas.record import BuildRecord, BuildState, StepState, utcnow
from schemas.settings import Settings
from workers import metrics, pipeline
from workers.errors import PermanentError, TransientError
from workers.notify import notify, notify_all, resend_reports
from workers.pipeline import STEPS, Outcome, Relaunch, Stop, Wait
from workers.process import ProcessResources
from workers.steps import STEP_FUNCTIONS
from workers.store import BuildStore

log = logging.getLogger("podci.pipeline")


# How long a queued-mark holds the reconciler back at most: a mark can outlive its message only if a
# process died between marking and publishing, or a worker between fetching and receiving.
QUEUED_MARK_TTL = 600.0


def send(
    app: Celery, step: str, build_id: str, seq: int, countdown: float = 0, *, store: BuildStore | None = None
) -> None:
    """Send the build's step; with `store`, mark it queued (a message with a countdown is taken by a
    worker at once, and held there, so only immediate ones are marked)."""
    marked = store is not None and not countdown
    if marked:
        assert store is not None
        store.mark_queued(build_id, step, seq, QUEUED_MARK_TTL)
    try:
        app.send_task(f"podci.{step}", args=[build_id, seq], countdown=countdown or None)
    except Exception:
        if marked:
            assert store is not None
            store.received(build_id)
        raise


def _attempt(proc: ProcessResources, step: str, record: BuildRecord, task: Task) -> Outcome:
    try:
        return STEP_FUNCTIONS[step](proc.runtime, record)
    except TransientError as exc:
        tries = task.request.retries
        if tries < proc.settings.transient_retries:
            countdown = max(
                get_exponential_backoff_interval(1, tries, 60, full_jitter=True), exc.retry_after or 0
            )
            log.warning("build %s step %s: %s; retry %d in %ss", record.id, step, exc, tries + 1, countdown)
            raise task.retry(
                exc=exc, countdown=countdown, max_retries=proc.settings.transient_retries
            ) from exc
        return Stop(BuildState.error, f"{step} gave up after {tries + 1} tries: {exc}")
    except PermanentError as exc:
        return Stop(BuildState.error, str(exc))
    except Exception as exc:
        log.exception("build %s step %s failed unexpectedly", record.id, step)
        return Stop(BuildState.error, f"{step} failed unexpectedly: {exc!r}")


def _admission(store: BuildStore, settings: Settings, record: BuildRecord, step: str) -> Wait | None:
    """A build waits in `queued` while its repository already runs `repo_concurrency` builds."""
    if record.state is not BuildState.queued:
        return None
    admitted, ahead = store.admitted(record, settings.repo_concurrency)
    if admitted:
        return None
    return Wait(f"queued: {ahead} earlier build(s) of {record.request.repo} first")


def run_step(app: Celery, proc: ProcessResources, step: str, build_id: str, seq: int, task: Task) -> str:
    store, settings = proc.store, proc.settings
    record = store.get(build_id)
    if record is None or record.complete or record.seq != seq or record.step != step:
        return "stale"
    early: Outcome | None = pipeline.cancel_outcome(record, step) or _admission(store, settings, record, step)
    if early is None and record.step_record(step).state is StepState.pending:
        was_queued = record.state is BuildState.queued
        record = store.update(build_id, lambda r: pipeline.start(r, step, utcnow()), expect_seq=seq)
        if record is None:
            return "stale"
        if was_queued:
            notify_all(app, proc, record)  # INPROGRESS
    outcome = early or _attempt(proc, step, record, task)
    delay = 0.0
    if isinstance(outcome, Wait):
        since = record.step_record(step).started or record.created
        waited = (utcnow() - since).total_seconds()
        delay = pipeline.recheck_delay(waited, settings.recheck_min, settings.recheck_max)
    moved = store.update(
        build_id,
        lambda r: pipeline.apply(r, step, outcome, utcnow()),
        expect_seq=seq,
        due=time.time() + delay + settings.stall_grace,
    )
    if moved is None:
        return "superseded"
    if isinstance(outcome, Relaunch):
        metrics.count(store.redis, "pod_losses", settings.backend)
        log.warning("build=%s pod lost, relaunching: %s", build_id, outcome.reason)
    if not isinstance(outcome, Wait):
        entry = moved.step_record(step)
        log.info(
            "build=%s step=%s state=%s seconds=%.3f build_state=%s detail=%s",
            build_id, step, entry.state.value, entry.seconds or 0.0, moved.state.value, entry.detail[:200],
        )  # fmt: skip
    if moved.complete:
        metrics.record_completion(store.redis, moved, settings.backend)
        notify_all(app, proc, moved)  # the final state
    else:
        send(app, moved.step, build_id, moved.seq, delay, store=store)
    return type(outcome).__name__.lower()


def reconcile(app: Celery, store: BuildStore, grace: float) -> int:
    """Re-send the current step of every build whose next step is overdue; returns how many."""
    now = time.time()
    sent = 0
    for build_id in store.overdue(now):
        record = store.update(build_id, lambda r: None, due=now + grace)
        if record is None or record.complete:
            store.drop_due(build_id)
            continue
        if store.waiting_in_queue(record):
            continue  # behind a backlog, not lost
        log.warning("build=%s step=%s overdue; sending it again", build_id, record.step)
        send(app, record.step, build_id, record.seq, store=store)
        sent += 1
    return sent


def register(app: Celery, settings: Settings) -> None:
    proc = ProcessResources(settings)

    def make_step(step: str) -> None:
        def body(self: Task, build_id: str, seq: int) -> str:
            return run_step(app, proc, step, build_id, seq, self)

        body.__name__ = step
        body.__doc__ = f"Pipeline step `{step}` of one build."
        app.task(name=f"podci.{step}", bind=True, ignore_result=True)(body)

    for step in STEPS:
        make_step(step)
    step_tasks = {f"podci.{step}" for step in STEPS}

    def on_received(sender: object = None, request: Any = None, **_: object) -> None:
        """In the worker's main process, as each message arrives: it is no longer waiting in a queue."""
        if request is not None and request.name in step_tasks and request.args:
            proc.store.received(str(request.args[0]))

    task_received.connect(on_received, weak=False)

    @app.task(name="podci.notify", bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def notify_task(self: Task, build_id: str, reporter: str, retry: bool = True) -> str:
        return notify(proc, build_id, reporter, self, retry)

    @app.task(name="podci.gc", ignore_result=True)  # type: ignore[untyped-decorator]
    def gc_task() -> int:
        from workers.backends.k8s_api import KubeApi
        from workers.gc import collect

        gone = collect(KubeApi(settings), proc.store, settings, dry_run=False)
        for item in gone:
            log.info("gc deleted %s", item)
        return len(gone)

    @app.task(name="podci.reconcile", ignore_result=True)  # type: ignore[untyped-decorator]
    def reconcile_task() -> int:
        return reconcile(app, proc.store, settings.stall_grace) + resend_reports(
            app, proc, settings.stall_grace
        )
