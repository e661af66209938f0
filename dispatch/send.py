"""One message per build step: `send` publishes it by name and marks it queued until a worker takes it.

A build whose message waits in a queue behind a backlog is overdue, but not lost: the mark (with a
ticket handed out in sending order) lets the reconciler tell the two apart (`dispatch.reconcile`).
"""

from __future__ import annotations

from celery import Celery

from dispatch.app import NOTIFY_TASK, REPORT_TASK, task_name
from schemas.record import Step
from store.builds import TICKET_HEADER, BuildStore

# How long a queued-mark holds the reconciler back at most: a mark can outlive its message if a
# process died between marking and publishing. (A worker that took the message off the queue and died
# before receiving it leaves a mark too, but the reconciler sees through that one.)
QUEUED_MARK_TTL = 600.0


def send(
    app: Celery, step: Step, build_id: str, seq: int, countdown: float = 0, *, store: BuildStore | None = None
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
            task_name(step), args=[build_id, seq], countdown=countdown or None, headers=headers,
            ignore_result=True,
        )  # fmt: skip
    except Exception:
        if marked:
            assert store is not None
            store.received(build_id)
        raise


def notify(app: Celery, build_id: str, reporter: str, *, retry: bool = True) -> None:
    """Ask a worker to post the build's current state with `reporter` (the `podci.notify` queue)."""
    kwargs = {} if retry else {"retry": False}
    app.send_task(NOTIFY_TASK, args=[build_id, reporter], kwargs=kwargs, ignore_result=True)


def wake(app: Celery, store: BuildStore, build_id: str) -> bool:
    """Send a parked build's current step now, because what it waits for may have happened. Returns
    whether a message was sent.

    A build whose look is running right now is not parked: the wake-up is left as a mark that the
    look takes as it parks (and then looks again at once), so it is never lost between a look and its
    parking. One wake-up sends at most one message, and many send one (`BuildStore.wake`)."""
    parked = store.wake(build_id)
    if parked is None:
        return False
    step, seq = parked
    send(app, step, build_id, seq, store=store)
    return True


def wake_admitted(app: Celery, store: BuildStore, repo: str, limit: int) -> int:
    """A build of `repo` completed: the builds now among its first `limit` may start at once."""
    return sum(wake(app, store, build_id) for build_id in store.first_in_line(repo, limit))


def send_report(app: Celery, build_id: str) -> None:
    """Ask a worker to post the build's current state with every reporter that has something to say
    (`podci.report`): a build the receiver decided about without a step (waiting for approval, or
    stopped while waiting) still gets its status on the pull request."""
    app.send_task(REPORT_TASK, args=[build_id], ignore_result=True)
