"""The Celery application as every process sees it: broker, queues, routes, the reconciler's schedule.

Queues, in the order workers read them: `podci.notify` (status posts: a pull request shows
INPROGRESS at once, whatever backlog the pipeline has), `podci.steps` (the steps of builds already
running), `podci.new` (the first step of new builds). So a burst of new builds never delays the next
step of a running one, and neither delays a status. Tasks are sent by name: the receiver and the CLI
publish with this app alone, and only a worker registers the tasks (`workers.app`).
"""

from __future__ import annotations

from celery import Celery

from schemas.record import Step
from schemas.settings import Settings

QUEUE_NOTIFY = "podci.notify"
QUEUE_STEPS = "podci.steps"
QUEUE_NEW = "podci.new"
QUEUES = (QUEUE_NOTIFY, QUEUE_STEPS, QUEUE_NEW)  # a worker's queues, most urgent first
FIRST_STEP = Step.checkout  # the only step routed to `podci.new`
GC_INTERVAL = 600.0  # seconds between garbage-collector passes (`podci.gc`)
NOTIFY_TASK = "podci.notify"  # (build id, reporter): post the build's current state with one reporter
REPORT_TASK = "podci.report"  # (build id): the same with every reporter that has something to say


def task_name(step: Step) -> str:
    return f"podci.{step.value}"


def make_app(settings: Settings, publish_timeout: float | None = None) -> Celery:
    """With `publish_timeout` (the receiver's), sending a message gives up after that many seconds
    and is not retried: the receiver answers 503 and the sender redelivers, rather than both waiting
    on a hung Redis. Workers keep Celery's defaults."""
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
        task_routes={
            task_name(FIRST_STEP): {"queue": QUEUE_NEW},
            NOTIFY_TASK: {"queue": QUEUE_NOTIFY},
            REPORT_TASK: {"queue": QUEUE_NOTIFY},
        },
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
            **_sentinel_options(settings),
        },
        result_backend_transport_options=_sentinel_options(settings),
        beat_schedule={
            "podci-reconcile": {"task": "podci.reconcile", "schedule": settings.reconcile_interval},
            "podci-gc": {"task": "podci.gc", "schedule": GC_INTERVAL},
        },
        worker_hijack_root_logger=False,
    )
    if publish_timeout is None:
        # A worker's only job is the queue: after `broker_connection_max_retries` failed reconnects
        # (Celery's default: 100, a third of that in time with three sentinel URLs, tried in turn)
        # Celery gives up with an "Unrecoverable error", and the worker is gone for good once Redis
        # is back. It keeps trying instead; whoever runs it decides when a worker is dead.
        app.conf.broker_connection_max_retries = None
    else:
        app.conf.broker_transport_options.update(
            socket_timeout=publish_timeout, socket_connect_timeout=publish_timeout, max_retries=0
        )
        app.conf.update(task_publish_retry=False, broker_connection_timeout=publish_timeout)
    return app


def _sentinel_options(settings: Settings) -> dict[str, str]:
    """With sentinel URLs, broker and result backend ask the sentinels for this master (kombu and
    Celery take `sentinel://...;sentinel://...` as they are, and the name as a transport option)."""
    master = settings.redis_sentinel_master
    return {"master_name": master} if master else {}


def queue_of(step: Step) -> str:
    """The Celery queue a step's message waits in."""
    return QUEUE_NEW if step is FIRST_STEP else QUEUE_STEPS
