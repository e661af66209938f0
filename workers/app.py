"""The Celery application of a worker: the shared configuration (`dispatch.app`), every task
registered, and the backend's own start-up (the Kubernetes pod watch) once the worker is ready."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from dispatch.app import make_app
from schemas.settings import Settings
from store.builds import BuildStore
from store.connection import connect_to
from workers.backends import backend_type, make_backend
from workers.live import start_live_logs
from workers.tasks import register


def make_worker_app(settings: Settings) -> Celery:
    app = make_app(settings)
    # Reconnects where Celery's own consumer gave up after a lost Redis connection (workers.consumer).
    app.conf.worker_consumer = "workers.consumer:ReconnectingConsumer"
    register(app, settings)
    kind = backend_type(settings.backend)

    def on_ready(sender: object = None, **_: object) -> None:
        # In the worker's main process, after the pool has forked: one watch per worker, not per child.
        if getattr(sender, "app", None) is app:
            kind.start_worker(app, settings)
            follow_live_logs(settings)

    worker_ready.connect(on_ready, weak=False)
    return app


def follow_live_logs(settings: Settings) -> None:
    """The threads that copy running tests' output to Redis for the build pages, with a backend of
    their own (the pool's children each have theirs)."""
    redis = connect_to(settings)
    start_live_logs(settings, make_backend(settings, redis), BuildStore(redis, settings.retention_seconds))
