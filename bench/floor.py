"""The floor podci's orchestration is measured against: a bare chain of no-op Celery tasks.

Same broker, same serializer and the same reliability settings as `dispatch.app.make_app` (late acks,
prefetch 1, task events on, results ignored, priority queue order), run by `celery worker` with the
same flags `podci worker` passes. What a build costs beyond this is podci's own doing.

Run by bench/overhead.py as: `celery -A bench.floor worker ...` with FLOOR_REDIS_URL set.
"""

from __future__ import annotations

import os

from celery import Celery, chain

QUEUE = "floor"
DONE_KEY = "floor:done"


def make_floor_app(url: str) -> Celery:
    app = Celery("floor", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_send_task_events=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"queue_order_strategy": "priority"},
        worker_hijack_root_logger=False,
    )

    @app.task(name="floor.noop")  # type: ignore[untyped-decorator]
    def noop() -> None:
        """One step that does nothing."""

    @app.task(name="floor.done")  # type: ignore[untyped-decorator]
    def done() -> None:
        """The chain's last step: counts finished chains, so the run knows when to stop."""
        with app.connection_for_write() as conn:
            conn.default_channel.client.incr(DONE_KEY)

    return app


def send_chains(app: Celery, chains: int, length: int) -> None:
    """`chains` chains of `length` tasks each (the last one counts)."""
    noop, done = app.tasks["floor.noop"], app.tasks["floor.done"]
    for _ in range(chains):
        chain(*[noop.si() for _ in range(length - 1)], done.si()).apply_async()


def __getattr__(name: str) -> Celery:
    """`celery -A bench.floor` looks up `app`: made on demand, so importing this module is free."""
    if name != "app":
        raise AttributeError(name)
    if "FLOOR_REDIS_URL" not in os.environ:
        raise SystemExit("set FLOOR_REDIS_URL to the Redis the floor run may use (bench/overhead.py does)")
    return make_floor_app(os.environ["FLOOR_REDIS_URL"])
