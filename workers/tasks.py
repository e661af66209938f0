"""The Celery tasks: `podci.<step>` for each pipeline step, `podci.notify` and `podci.reconcile`.

Exactly one message per build is live at a time. It carries the record's `seq`; a task whose `seq`
no longer matches is a duplicate (redelivered after a worker died, or re-sent by the reconciler) and
does nothing. The step's effects are idempotent; moving the record on is a compare-and-set on `seq`,
and only the winner sends the next message. If a worker dies between the two, the record's due time
passes and `podci.reconcile` sends the message again.

A build whose message is still waiting in a queue behind a backlog is overdue too, but nothing is
lost: `send` marks the build as queued until a worker receives the message, and the reconciler leaves
such builds alone while the queue shows the message can still be in it (`_still_queued`). Re-sending
them would add one more message per build on every pass, growing the backlog it was caused by (1,000
queued builds grew `podci.new` to 4,400 messages in three minutes).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from celery import Celery, Task
from celery.signals import task_received
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.record import BuildRecord, BuildState, StepState, utcnow
from schemas.settings import Settings
from workers import metrics, pipeline
from workers.errors import PermanentError, TransientError
from workers.notify import notify, notify_all, resend_reports
from workers.pipeline import STEPS, Outcome, Relaunch, Stop, Wait
from workers.process import ProcessResources
from workers.steps import STEP_FUNCTIONS
from workers.store import TICKET_HEADER, BuildStore

log = logging.getLogger("podci.pipeline")


# How long a queued-mark holds the reconciler back at most: a mark can outlive its message if a
# process died between marking and publishing. (A worker that took the message off the queue and died
# before receiving it leaves a mark too, but `_still_queued` sees through that one: see there.)
QUEUED_MARK_TTL = 600.0


def send(
    app: Celery, step: str, build_id: str, seq: int, countdown: float = 0, *, store: BuildStore | None = None
) -> None:
    """Send the build's step; with `store`, mark it queued (a message with a countdown is taken by a
    worker at once, and held there, so only immediate ones are marked)."""
    marked = store is not None and not countdown
    headers = None
    if marked:
        assert store is not None
        headers = {TICKET_HEADER: store.mark_queued(build_id, step, seq, QUEUED_MARK_TTL)}
    try:
        # ignore_result: nobody reads a step's result, and without it each send subscribes to a
        # result channel whose replies the receiver never reads (two round trips, a growing buffer)
        app.send_task(
            f"podci.{step}", args=[build_id, seq], countdown=countdown or None, headers=headers,
            ignore_result=True,
        )  # fmt: skip
    except Exception:
        if marked:
            assert store is not None
            store.received(build_id)
        raise


# Redis unreachable (restarting, failing over, loading its file) in the middle of a step. The step's
# outcome could not be recorded anyway, and turning it into `error` would fail a build for an outage
# that a retry gets over: the task ends instead, leaving the record as it was, and the reconciler sends
# the step again once it is overdue (every step is safe to run twice).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def _waited(record: BuildRecord, step: str) -> float:
    started = record.step_record(step).started
    return 0.0 if started is None else (utcnow() - started).total_seconds()


def _attempt(proc: ProcessResources, step: str, record: BuildRecord, task: Task) -> Outcome:
    try:
        return STEP_FUNCTIONS[step](proc.runtime, record)
    except TransientError as exc:
        tries = task.request.retries
        if tries < proc.settings.transient_retries:
            spread = random.random()  # noqa: S311 - jitter, not a secret
            countdown = round(pipeline.retry_delay(tries, exc.retry_after, spread), 2)
            log.warning("build %s step %s: %s; retry %d in %ss", record.id, step, exc, tries + 1, countdown)
            # The retry is this step's next look: the build is not overdue before it. Else the reconciler
            # would start a second retry chain beside this one (then a third...) whenever the retries
            # outlast the grace, more requests to an API server already failing, more tries to lose.
            proc.store.push_due(record.id, time.time() + countdown + proc.settings.stall_grace)
            raise task.retry(
                exc=exc, countdown=countdown, max_retries=proc.settings.transient_retries
            ) from exc
        if step == "teardown" and _waited(record, step) < proc.settings.teardown_timeout:
            # Objects left behind would outlive the build: look again later (a new round of retries).
            log.warning("build %s step %s: %s; looking again later", record.id, step, exc)
            return Wait(f"{exc}; trying again")
        return Stop(BuildState.error, f"{step} gave up after {tries + 1} tries: {exc}")
    except PermanentError as exc:
        return Stop(BuildState.error, str(exc))
    except REDIS_DOWN:
        raise  # not the build's fault, and nothing can be recorded now: see `REDIS_DOWN`
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


def _queue_of(app: Celery, step: str) -> str:
    route = app.conf.task_routes.get(f"podci.{step}") or {}
    return str(route.get("queue") or app.conf.task_default_queue)


def _still_queued(
    app: Celery, store: BuildStore, record: BuildRecord, heads: dict[str, tuple[bool, int | None]]
) -> bool:
    """Is the build's marked message still waiting in its queue?

    The mark alone cannot say: a worker that took the message off the queue and was killed before
    receiving it (a few milliseconds, but SIGKILL finds them) never clears it, and the build would sit
    out the mark's whole TTL. A queue hands out its messages oldest first, and a marked message carries
    its ticket (handed out in sending order): so when the queue is empty, or its oldest message was
    marked after this one, this one has left the queue. `heads`: the oldest message of each queue, read
    once per reconcile pass. A message sent out of ticket order only makes a duplicate (fenced out), or
    a wait until the queue has moved on."""
    ticket = store.queued_ticket(record)
    if ticket is None:
        return False
    queue = _queue_of(app, record.step)
    if queue not in heads:
        heads[queue] = store.oldest_waiting(queue)
    waiting, oldest = heads[queue]
    return waiting and (oldest is None or oldest <= ticket)


def reconcile(app: Celery, store: BuildStore, grace: float) -> int:
    """Re-send the current step of every build whose next step is overdue; returns how many."""
    now = time.time()
    sent = 0
    heads: dict[str, tuple[bool, int | None]] = {}
    for build_id in store.overdue(now):
        record = store.update(build_id, lambda r: None, due=now + grace)
        if record is None or record.complete:
            store.drop_due(build_id)
            continue
        if _still_queued(app, store, record, heads):
            continue  # behind a backlog, not lost
        log.warning("build=%s step=%s overdue; sending it again", build_id, record.step)
        send(app, record.step, build_id, record.seq, store=store)
        sent += 1
    return sent


def register(app: Celery, settings: Settings) -> None:
    proc = ProcessResources(settings)

    def make_step(step: str) -> None:
        def body(self: Task, build_id: str, seq: int) -> str:
            try:
                return run_step(app, proc, step, build_id, seq, self)
            except REDIS_DOWN as exc:
                log.warning("build=%s step=%s: Redis unavailable (%s); the reconciler sends it again",
                            build_id, step, exc)  # fmt: skip
                return "redis unavailable"

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
