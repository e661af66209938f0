"""What a worker process holds for its tasks: Redis, the backend, the reporters, made once per process."""

from __future__ import annotations

import os

from redis import Redis

from schemas.settings import Settings
from workers.backends.select import make_backend
from workers.reporters.base import Reporter
from workers.reporters.bitbucket import make_reporters
from workers.steps import Runtime
from workers.store import BuildStore


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
            self._store = BuildStore(Redis.from_url(self.settings.require_redis_url()))
            self._runtime = Runtime(self.settings, make_backend(self.settings))
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
