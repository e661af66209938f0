"""What a worker process holds for its tasks: Redis, the backend, the reporters, made once per process."""

from __future__ import annotations

import os

from schemas.settings import Settings
from store.builds import BuildStore
from store.connection import connect_to
from store.flaky import OutcomeHistory
from store.live import LiveLogs
from store.logstore import open_log_store
from workers.backends import make_backend
from workers.reporters import make_reporters
from workers.reporters.base import Reporter
from workers.steps import Runtime


class ProcessResources:
    """Per-process connections: a prefork child must not share its parent's Redis socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid = -1
        self._store: BuildStore | None = None
        self._runtime: Runtime | None = None
        self._reporters: dict[str, Reporter] = {}

    def _ensure(self) -> None:
        if self._pid != os.getpid():
            redis = connect_to(self.settings)
            self._store = BuildStore(redis, self.settings.retention_seconds)
            logs = open_log_store(self.settings.log_store_url, self.settings.s3_endpoint_url)
            live = LiveLogs(redis, self.settings.retention_seconds)
            history = OutcomeHistory(redis, self.settings.retention_seconds)
            self._runtime = Runtime(self.settings, make_backend(self.settings, redis), logs, live, history)
            self._reporters = {r.name: r for r in make_reporters(self.settings)}
            self._pid = os.getpid()

    @property
    def store(self) -> BuildStore:
        self._ensure()
        assert self._store is not None
        return self._store

    @property
    def runtime(self) -> Runtime:
        self._ensure()
        assert self._runtime is not None
        return self._runtime

    @property
    def reporters(self) -> dict[str, Reporter]:
        self._ensure()
        return self._reporters
