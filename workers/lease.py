"""A running step's lease: while a step works, its build's due time keeps moving ahead of it.

The reconciler re-sends the step of a build whose due time passed, which is right when the worker
running it died, and wrong when the step is merely slow (a large checkout, a slow API server): a
second copy would run beside the first, and two checkouts into one directory destroy each other. So
the step renews its build's due time every third of the grace while it runs; only a lapsed lease,
a worker that stopped renewing, lets the reconciler act.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from store.builds import BuildStore

log = logging.getLogger("podci.pipeline")


@contextmanager
def lease(store: BuildStore, build_id: str, grace: float) -> Iterator[None]:
    """Hold the build's lease for the duration of the `with` block."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(grace / 3):
            try:
                store.push_due(build_id, time.time() + grace)
            except RedisError as exc:  # the next renewal may get through; the step goes on regardless
                log.warning("build=%s could not renew its lease: %s", build_id, exc)

    renewer = threading.Thread(target=renew, name=f"podci-lease-{build_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
