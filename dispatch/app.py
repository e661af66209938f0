"""The Celery application as every process sees it: broker, queues, routes, the reconciler's schedule.

Queues: `podci.steps` carries the steps of builds already running, `podci.new` the first step of new
builds. Workers read `podci.steps` first (fixed queue order), so a burst of new builds never delays the
next step of a running one. Tasks are sent by name: the receiver and the CLI publish with this app
alone, and only a worker registers the tasks (`workers.app`).
"""

from __future__ import annotations

from celery import Celery

from schemas.record import Step
from schemas.settings import Settings

QUEUE_STEPS = "podci.steps"
QUEUE_NEW = "podci.new"
FIRST_STEP = Step.checkout  # the only step routed to `podci.new`
GC_INTERVAL = 600.0  # seconds between garbage-collector passes (`podci.gc`)


def task_name(step: Step) -> str:
    return f"podci.{step.value}"


def make_app(settings: Settings) -> Celery:
    url = settings.require_redis_url()
    app = Celery("podci", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # a step is acknowledged only once done: a killed worker's step runs again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # state lives in the build record; nobody reads step results
        result_expires=3600,
        worker_send_task_events=True,  # Flower sees every task the workers receive, start and finish
        task_default_queue=QUEUE_STEPS,
        task_routes={task_name(FIRST_STEP): {"queue": QUEUE_NEW}},
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
        },
        beat_schedule={
            "podci-reconcile": {"task": "podci.reconcile", "schedule": settings.reconcile_interval},
            "podci-gc": {"task": "podci.gc", "schedule": GC_INTERVAL},
        },
        worker_hijack_root_logger=False,
    )
    return app


def queue_of(step: Step) -> str:
    """The Celery queue a step's message waits in."""
    return QUEUE_NEW if step is FIRST_STEP else QUEUE_STEPS
