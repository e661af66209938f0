"""The other end of the local backend's wake-ups: a thread in the worker's main process that takes
build ids from `store.keys.WAKES` (pushed by the build's launchers and watcher) and wakes their parked
steps, as the pod watch does on Kubernetes."""

from __future__ import annotations

import logging
import threading

from celery import Celery
from redis.exceptions import RedisError

from dispatch.send import wake
from schemas.settings import Settings
from store import keys
from store.builds import BuildStore
from store.connection import as_text, connect_to

log = logging.getLogger("podci.local.waker")


def start_waker(app: Celery, settings: Settings) -> threading.Thread:
    store = BuildStore(connect_to(settings))
    stopped = threading.Event()

    def run() -> None:
        pause = 1.0
        while not stopped.is_set():
            try:
                item = store.redis.blpop([keys.WAKES], timeout=5)
                pause = 1.0
            except RedisError as exc:  # Redis restarting: the builds' safety looks cover the gap
                log.warning("waker: %s; trying again in %.0f s", exc, pause)
                stopped.wait(pause)
                pause = min(pause * 2, 30.0)
                continue
            if item is not None:
                wake(app, store, as_text(item[1]))

    thread = threading.Thread(target=run, name="podci-local-waker", daemon=True)
    thread.start()
    return thread
