"""Start the pod watch in a Kubernetes worker's main process, waking builds when their pods change."""

from __future__ import annotations

import logging

from celery import Celery
from redis import Redis

from schemas.settings import Settings
from workers.store import BuildStore
from workers.tasks import send

log = logging.getLogger("podci.k8s.watch")
WAKEABLE = ("wait_setup", "run_tests", "teardown")


def start_pod_watch(app: Celery, settings: Settings) -> None:
    from workers.backends.k8s_api import KubeApi
    from workers.backends.k8s_watch import PodCache, PodWatcher

    redis = Redis.from_url(settings.require_redis_url())
    store = BuildStore(redis)

    def wake(build_id: str) -> None:
        # Sending the current step with the current seq is safe: if a timed look is also queued,
        # both run, one wins the compare-and-set, the other finds the build moved on.
        record = store.get(build_id)
        if record is not None and not record.complete and record.step in WAKEABLE:
            send(app, record.step, build_id, record.seq, store=store)

    PodWatcher(KubeApi(settings), PodCache(redis), wake).start()
    log.info("watching build pods in namespace %s", settings.kube_namespace)
