"""A running step's lease: while a step works, its build's due time keeps moving ahead of it.

The reconciler re-sends the step of a build whose due time passed, which is right when the worker
running it died, and wrong when the step is merely slow (a large checkout, a slow API server): a
second copy would run beside the first, and two checkouts into one directory destroy each other. So
the step's lease is renewed every third of the grace while it runs; only a lapsed lease, a worker that
stopped renewing, lets the reconciler act.

One keeper thread per worker process renews every lease it holds (most steps end long before their
first renewal, so holding one costs no Redis command at all).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from store.builds import BuildStore

log = logging.getLogger("podci.pipeline")


class _Keeper:
    """The leases of one process: build id -> (store, grace, when it was last renewed)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[BuildStore, float, float]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.pid = -1

    def _ensure_thread(self) -> None:
        if self.pid != os.getpid():  # a pool child after the fork: its own thread
            self.pid = os.getpid()
            threading.Thread(target=self._run, name="podci-leases", daemon=True).start()

    def hold(self, store: BuildStore, build_id: str, grace: float) -> None:
        with self.lock:
            self._ensure_thread()
            self.held[build_id] = (store, grace, time.monotonic())
            self.changed.notify()

    def release(self, build_id: str) -> None:
        with self.lock:
            self.held.pop(build_id, None)

    def _due(self) -> tuple[list[tuple[str, BuildStore, float]], float]:
        """The leases to renew now, and how long to sleep before the next one is due."""
        now, renew, sleep = time.monotonic(), [], 60.0
        for build_id, (store, grace, last) in self.held.items():
            left = last + grace / 3 - now
            if left <= 0:
                renew.append((build_id, store, grace))
                self.held[build_id] = (store, grace, now)
                left = grace / 3
            sleep = min(sleep, left)
        return renew, sleep

    def _run(self) -> None:
        while True:
            with self.lock:
                renew, sleep = self._due()
            for build_id, store, grace in renew:
                try:
                    store.push_due(build_id, time.time() + grace)
                except RedisError as exc:  # the next renewal may get through; the step goes on
                    log.warning("build=%s could not renew its lease: %s", build_id, exc)
            with self.lock:
                self.changed.wait(timeout=sleep)


_KEEPER = _Keeper()


@contextmanager
def lease(store: BuildStore, build_id: str, grace: float) -> Iterator[None]:
    """Hold the build's lease for the duration of the `with` block."""
    _KEEPER.hold(store, build_id, grace)
    try:
        yield
    finally:
        _KEEPER.release(build_id)
