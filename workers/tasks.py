"""The Celery tasks a worker runs: `podci.<step>` for each pipeline step, `podci.notify`, `podci.gc` and
`podci.reconcile`.

Exactly one message per build is live at a time. It carries the record's `seq`; a task whose `seq`
no longer matches is a duplicate (redelivered after a worker died, or re-sent by the reconciler) and
does nothing. The step's effects are idempotent; moving the record on is a compare-and-set on `seq`,
and only the winner sends the next message. If a worker dies between the two, the record's due time
passes and the reconciler (`dispatch.reconcile`) sends the message again.
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

from dispatch.app import NOTIFY_TASK, REPORT_TASK, task_name
from dispatch.reconcile import reconcile
from dispatch.send import send, wake, wake_admitted
from schemas.record import BuildRecord, BuildState, Step, utcnow
from schemas.settings import Settings
from store import metrics
from store.builds import BuildStore, Sign
from workers import pipeline
from workers.errors import PermanentError, TransientError
from workers.gc import collect_garbage
from workers.lease import lease
from workers.notify import notify, notify_all, resend_reports
from workers.pipeline import Outcome, Relaunch, Stop, Wait, waited
from workers.process import ProcessResources
from workers.steps import STEP_FUNCTIONS

log = logging.getLogger("podci.pipeline")

# Redis unreachable (restarting, failing over, loading its file) in the middle of a step. The step's
# outcome could not be recorded anyway, and turning it into `error` would fail a build for an outage
# that a retry gets over: the task ends instead, leaving the record as it was, and the reconciler sends
# the step again once it is overdue (every step is safe to run twice).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def _attempt(proc: ProcessResources, step: Step, record: BuildRecord, task: Task) -> Outcome:
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
        so_far = waited(record, step, utcnow())
        if step is Step.teardown and so_far < proc.settings.teardown_timeout:
            # Objects left behind would outlive the build: look again later (a new round of retries).
            log.warning("build %s step %s: %s; looking again later", record.id, step, exc)
            return Wait(f"{exc}; trying again", proc.settings.teardown_timeout - so_far)
        return Stop(BuildState.error, f"{step} gave up after {tries + 1} tries: {exc}")
    except PermanentError as exc:
        return Stop(BuildState.error, str(exc))
    except REDIS_DOWN:
        raise  # not the build's fault, and nothing can be recorded now: see `REDIS_DOWN`
    except Exception as exc:
        log.exception("build %s step %s failed unexpectedly", record.id, step)
        return Stop(BuildState.error, f"{step} failed unexpectedly: {exc!r}")


def _admission(store: BuildStore, settings: Settings, record: BuildRecord) -> Wait | None:
    """A build waits in `queued` while its repository already runs `repo_concurrency` builds."""
    if record.state is not BuildState.queued:
        return None
    admitted, ahead = store.admitted(record, settings.repo_concurrency)
    if admitted:
        return None
    return Wait(f"queued: {ahead} earlier build(s) of {record.request.repo} first")


def run_step(app: Celery, proc: ProcessResources, step: Step, build_id: str, seq: int, task: Task) -> str:
    store, settings = proc.store, proc.settings
    seen = store.read(build_id)
    record = None if seen is None else seen.record
    if record is None or record.complete or record.seq != seq or record.step != step:
        return "stale"
    early: Outcome | None = pipeline.cancel_outcome(record, step) or _admission(store, settings, record)
    looked = utcnow()
    if early is None and record.state is BuildState.queued:
        # The build's first step: show it running while it runs (its INPROGRESS went out at intake).
        # Later steps are marked running by the write that records their outcome: one write a look.
        record = store.update(build_id, lambda r: pipeline.start(r, step, looked), expect_seq=seq, seen=seen)
        if record is None:
            return "stale"
        seen = None
        notify_all(app, proc, record)
    if early is not None:
        outcome: Outcome = early
    else:
        with lease(store, build_id, settings.stall_grace):
            outcome = _attempt(proc, step, record, task)
    # A waiting build is parked: no message is sent, what it waits for wakes it (the pod watch, the
    # local watcher, a slot freed in its repository); its due time is only the safety-net look.
    now, sign = time.time(), None
    if isinstance(outcome, Wait):
        due = now + pipeline.next_look(outcome.budget_left, settings.safety_look, outcome.within)
        ends = pipeline.budget_ends(outcome.budget_left)
        if outcome.sign is not None and ends is not None:
            sign = Sign(outcome.sign, now + ends)
    else:
        due = now + settings.stall_grace
    started = None if early is not None else looked
    moved = store.update(
        build_id,
        lambda r: pipeline.apply(r, step, outcome, utcnow(), started),
        expect_seq=seq,
        due=due,
        seen=seen,
        sign=sign,
    )
    if moved is None:
        if not isinstance(outcome, Wait):
            # A duplicate look (a wake-up during this one) parked the build first, and what this look
            # learned is lost with its compare-and-set: look again, or the build would wait for its
            # safety look. The step is idempotent, so the new look finds the same answer.
            wake(app, store, build_id)
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
        wake_admitted(app, store, moved.request.repo, settings.repo_concurrency)
    elif moved.step is not None and not moved.parked:
        send(app, moved.step, build_id, moved.seq, store=store)
    elif isinstance(outcome, Wait) and outcome.again:
        wake(app, store, build_id)  # the look kept what it learned; the next acts on it now
    elif (woken := store.unpark_if_woken(build_id)) is not None:
        send(app, woken[0], build_id, woken[1], store=store)
    return type(outcome).__name__.lower()


def register(app: Celery, settings: Settings) -> None:
    proc = ProcessResources(settings)

    def make_step(step: Step) -> None:
        def body(self: Task, build_id: str, seq: int) -> str:
            try:
                return run_step(app, proc, step, build_id, seq, self)
            except REDIS_DOWN as exc:
                log.warning("build=%s step=%s: Redis unavailable (%s); the reconciler sends it again",
                            build_id, step, exc)  # fmt: skip
                return "redis unavailable"

        body.__name__ = step.value
        body.__doc__ = f"Pipeline step `{step}` of one build."
        app.task(name=task_name(step), bind=True, ignore_result=True)(body)

    for step in Step:
        make_step(step)
    step_tasks = {task_name(step) for step in Step}

    def on_received(sender: object = None, request: Any = None, **_: object) -> None:
        """In the worker's main process, as each message arrives: it is no longer waiting in a queue."""
        if request is not None and request.name in step_tasks and request.args:
            proc.store.received(str(request.args[0]), time.time() + settings.stall_grace)

    task_received.connect(on_received, weak=False)

    @app.task(name=NOTIFY_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def notify_task(self: Task, build_id: str, reporter: str, retry: bool = True) -> str:
        return notify(proc, build_id, reporter, self, retry)

    @app.task(name=REPORT_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def report_task(build_id: str) -> int:
        """The receiver's request to post a build's state (waiting for approval, or stopped then)."""
        record = proc.store.get(build_id)
        if record is not None:
            notify_all(app, proc, record)
        return 0

    @app.task(name="podci.gc", ignore_result=True)  # type: ignore[untyped-decorator]
    def gc_task() -> int:
        gone = collect_garbage(settings, proc.store, dry_run=False)
        for item in gone:
            log.info("gc deleted %s", item)
        return len(gone)

    # No task events: beat runs it every few seconds, and its events would bury the builds' steps in
    # Flower's task list (a worker sends events only for tasks whose `send_events` is on).
    @app.task(name="podci.reconcile", ignore_result=True, send_events=False)  # type: ignore[untyped-decorator]
    def reconcile_task() -> int:
        return reconcile(app, proc.store, settings.stall_grace, settings.safety_look) + resend_reports(
            app, proc, settings.stall_grace
        )
