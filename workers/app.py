"""The Celery application, configured from `Settings`.

Queues: `podci.steps` carries the steps of builds already running, `podci.new` the first step of new
builds. Workers read `podci.steps` first (fixed queue order), so a burst of new builds never delays the
next step of a running one.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from schemas.settings import Settings

QUEUE_STEPS = "podci.steps"
QUEUE_NEW = "podci.new"


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
        task_routes={"podci.checkout": {"queue": QUEUE_NEW}},
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
        },
        beat_schedule={
            "podci-reconcile": {"task": "podci.reconcile", "schedule": settings.reconcile_interval},
            **(
                {"podci-gc": {"task": "podci.gc", "schedule": 600.0}}
                if settings.backend == "kubernetes"
                else {}
            ),
        },
        worker_hijack_root_logger=False,
    )
    from workers.tasks import register  # the tasks need the app; the app does not need them to exist

    register(app, settings)
    if settings.backend == "kubernetes":
        _watch_pods_when_ready(app, settings)
    return app


def _watch_pods_when_ready(app: Celery, settings: Settings) -> None:
    """One pod watch per worker, in its main process (started after the pool has forked)."""

    def on_ready(sender: object = None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            from workers.pod_watch import start_pod_watch

            start_pod_watch(app, settings)

    worker_ready.connect(on_ready, weak=False)
