"""The local backend: a build's pod as process groups on this machine, its volume a directory.

`backend` runs the steps, `env` computes what a container sees (pure), `proc` starts one command
detached from the worker, the way a container outlives whoever created it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from redis import Redis

from schemas.settings import Settings
from workers.backends.base import ClusterBackend
from workers.backends.local.backend import LocalBackend

if TYPE_CHECKING:
    from celery import Celery

    from store.builds import BuildStore


class LocalType:
    name = "local"

    def create(self, settings: Settings, redis: Redis) -> ClusterBackend:
        return LocalBackend(
            settings.state_dir,
            settings.teardown_grace,
            settings.log_tail_lines,
            settings.redis_url,
            settings.secret_values(),
            settings.redis_sentinel_master,
        )

    def check(self, settings: Settings) -> str:
        return f"processes on this machine, state in {settings.state_dir}"

    def start_worker(self, app: Celery, settings: Settings) -> None:
        """The waker: builds' processes push what changed onto a list; a thread of the worker's main
        process wakes each build's parked step (what the pod watch does on Kubernetes)."""
        from workers.backends.local.waker import start_waker

        start_waker(app, settings)

    def collect_garbage(self, settings: Settings, store: BuildStore, *, dry_run: bool) -> list[str]:
        """Builds whose processes or directories outlived them: complete, or no record at all (a
        state directory whose Redis was replaced). A build still running is left alone."""
        backend = LocalBackend(settings.state_dir, settings.teardown_grace, settings.log_tail_lines)
        gone = []
        for name in backend.leftover_names():
            record = store.get(name)
            if record is not None and not record.complete:
                continue
            gone.append(f"local build {name}")
            if not dry_run:
                backend.teardown(name)
        return gone

    def local_repo_url(self, settings: Settings, repo: Path) -> str:
        return str(repo)


BACKEND = LocalType()
