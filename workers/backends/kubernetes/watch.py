"""One watch on the build pods per worker, feeding a Redis cache and waking the builds they belong to.

Pool processes read pod state from the cache instead of asking the API server, so the requests a
build costs do not grow with how long it runs, and a pod event (ready, agent finished, evicted)
wakes the build's waiting step at once instead of at its next timed look.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from redis import Redis

from dispatch.send import wake
from schemas.settings import Settings
from store import keys
from store.builds import BuildStore
from store.connection import as_text, connect_to
from workers.backends.kubernetes.names import BUILD_LABEL, SELECTOR
from workers.backends.kubernetes.pod_state import sign_of, wake_signal

log = logging.getLogger("podci.k8s.watch")
GONE = "gone"
_TTL = 2 * 24 * 3600


class PodCache:
    """`keys.pod(name)` holds the pod's last JSON from the watch, or `gone` once deleted.

    `keys.PODS_LIVE` is the set of pods cached as existing. A DELETED event can be missed (every
    watcher down, or Redis down when it came), and a list shows only the pods that exist; the set lets
    a watcher that lists again find the pods that went meanwhile, which would otherwise stay "running"
    in the cache for good and leave their builds waiting on them."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def put(self, pod: dict[str, Any], signal: tuple[Any, ...]) -> None:
        """Cache the pod, and its build's sign from the pod's `signal` (in the same transaction: a
        look that read this JSON and the sign a safety look compares against always agree)."""
        name = pod["metadata"]["name"]
        with self.redis.pipeline() as pipe:
            pipe.set(keys.pod(name), json.dumps(pod), ex=_TTL)
            pipe.sadd(keys.PODS_LIVE, name)
            if build := _build_of(pod):
                pipe.set(keys.wait_sign(build), f"{name}:{sign_of(signal)}", ex=_TTL)
            pipe.execute()

    def gone(self, name: str, build: str | None = None, last: dict[str, Any] | None = None) -> None:
        """Mark the pod deleted, keeping its `last` state when the DELETED event carried it: a pod
        whose node went away is often deleted before a look reads the cache, and only that state
        says it was a node loss (the relaunch then avoids spot nodes)."""
        with self.redis.pipeline() as pipe:
            pipe.set(keys.pod(name), GONE if last is None else json.dumps({GONE: last}), ex=_TTL)
            pipe.srem(keys.PODS_LIVE, name)
            if build:
                pipe.set(keys.wait_sign(build), f"{name}:{GONE}", ex=_TTL)
            pipe.execute()

    def live(self) -> set[str]:
        """The pods cached as existing."""
        return {as_text(m) for m in self.redis.smembers(keys.PODS_LIVE)}

    def _read(self, name: str) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        raw = self.redis.get(keys.pod(name))
        if raw is None:
            return False, None, None
        text = as_text(raw)
        if text == GONE:
            return True, None, None
        pod = json.loads(text)
        return (True, None, pod[GONE]) if GONE in pod else (True, pod, None)

    def get(self, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, pod): known False means the watch has not seen it yet; pod None means deleted."""
        known, pod, _ = self._read(name)
        return known, pod

    def last_state(self, name: str) -> dict[str, Any] | None:
        """A deleted pod's state as its DELETED event showed it, when the watch saw that event."""
        return self._read(name)[2]


def _build_of(pod: dict[str, Any]) -> str | None:
    build = (pod["metadata"].get("labels") or {}).get(BUILD_LABEL)
    return build if isinstance(build, str) else None


class PodWatcher:
    """List, then watch from the list's resourceVersion; on 410 or any error, list again."""

    def __init__(self, api: Any, cache: PodCache, wake: Callable[[str], None], timeout: int = 300) -> None:
        self.api, self.cache, self.wake, self.timeout = api, cache, wake, timeout
        self.stopped = threading.Event()
        self.signals: dict[str, tuple[Any, ...]] = {}  # pod name -> its last wake_signal

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="podci-pod-watch", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        pause, last = 1.0, ""
        while not self.stopped.is_set():
            try:
                self._list_and_watch()
                pause, last = 1.0, ""
            except Exception as exc:  # the watch must outlive any API trouble
                said = f"{type(exc).__name__}: {exc}"
                if said != last:  # one line per new trouble, not one a second for as long as it lasts
                    log.warning("pod watch interrupted (%s); listing again", said)
                    last = said
                # A watcher thread, not a task: pausing here holds no worker slot.
                self.stopped.wait(pause)
                pause = min(pause * 2, 30.0)

    def _list_and_watch(self) -> None:
        # Read before listing: a pod cached as existing was created before this read, so if the list
        # (a consistent read, made after) lacks it, it was deleted while no watch saw it. A pod created
        # after this read is in neither, and may be in the list: the order is what makes this safe with
        # other workers' watchers writing the same cache.
        cached = self.cache.live()
        pods, version = self.api.list_with_version("pods", SELECTOR)
        listed = {pod["metadata"]["name"] for pod in pods}
        self.signals = {name: signal for name, signal in self.signals.items() if name in listed}
        for name in cached - listed:
            self._vanished(name)
        for pod in pods:
            self._seen("MODIFIED", pod)
        while not self.stopped.is_set():
            for kind, obj in self.api.watch_pods(SELECTOR, version, self.timeout):
                if kind == "ERROR":
                    return  # too old (410): list again
                version = obj["metadata"].get("resourceVersion", version)
                self._seen(kind, obj)

    def _vanished(self, name: str) -> None:
        """A pod deleted while nobody watched: as its DELETED event would have, mark it gone and wake
        its build (named by the labels of the pod as last cached)."""
        _, last = self.cache.get(name)
        metadata = (last or {}).get("metadata") or {"name": name}
        log.info("pod %s was deleted while no watch saw it", name)
        self._seen("DELETED", {"metadata": {**metadata, "name": name}})

    def _seen(self, kind: str, pod: dict[str, Any]) -> None:
        """Cache every event; wake the build only when the pod's wake signal changed (or it is gone)."""
        name, build = pod["metadata"]["name"], _build_of(pod)
        if kind == "DELETED":
            self.cache.gone(name, build, pod if "status" in pod else None)
            self.signals.pop(name, None)
            changed = True
        else:
            signal = wake_signal(pod)
            self.cache.put(pod, signal)
            changed = self.signals.get(name) != signal
            self.signals[name] = signal
        if build and changed:
            self.wake(build)


def start_pod_watch(app: Celery, settings: Settings) -> PodWatcher:
    """One watch per worker, in its main process (started after the pool has forked), waking builds
    whose pods changed."""
    from workers.backends.kubernetes.api import KubeApi

    redis = connect_to(settings)
    store = BuildStore(redis, settings.retention_seconds)

    def wake_build(build_id: str) -> None:
        wake(app, store, build_id)

    watcher = PodWatcher(KubeApi(settings), PodCache(redis), wake_build)
    watcher.start()
    log.info("watching build pods in namespace %s", settings.kube_namespace)
    return watcher
