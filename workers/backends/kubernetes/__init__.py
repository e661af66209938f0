"""The Kubernetes backend: each build's Service, PV/PVC and Pod, created through the official client.

`backend` runs the steps, `objects` builds what is sent (pure), `policy` refuses what a template may
not ask for, `pod_state` says what a pod's status means (pure), `watch` keeps a Redis cache of the
build pods fed by one watch per worker, `gc` collects what teardown missed, and `api` is the one module
that imports the `kubernetes` package.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from redis import Redis

from schemas.settings import Settings
from workers.backends.base import ClusterBackend

if TYPE_CHECKING:
    from celery import Celery

    from store.builds import BuildStore


def resolved(settings: Settings) -> Settings:
    """The settings with the build namespace filled in as kubectl would choose it (see
    `api.resolve_namespace`), once per process, before any object is built."""
    from workers.backends.kubernetes.api import resolve_namespace

    return settings.model_copy(update={"kube_namespace": resolve_namespace(settings)})


class KubernetesType:
    name = "kubernetes"

    def create(self, settings: Settings, redis: Redis) -> ClusterBackend:
        from workers.backends.kubernetes.api import KubeApi
        from workers.backends.kubernetes.backend import KubernetesBackend
        from workers.backends.kubernetes.watch import PodCache

        settings = resolved(settings)
        return KubernetesBackend(settings, KubeApi(settings), PodCache(redis))

    def check(self, settings: Settings) -> str:
        from workers.backends.kubernetes.preflight import check

        return check(resolved(settings))

    def start_worker(self, app: Celery, settings: Settings) -> None:
        from workers.backends.kubernetes.watch import start_pod_watch

        start_pod_watch(app, resolved(settings))

    def collect_garbage(self, settings: Settings, store: BuildStore, *, dry_run: bool) -> list[str]:
        from workers.backends.kubernetes.api import KubeApi
        from workers.backends.kubernetes.gc import collect

        settings = resolved(settings)
        return collect(KubeApi(settings), store, settings, dry_run=dry_run, now=datetime.now(UTC))

    def local_repo_url(self, settings: Settings, repo: Path) -> str:
        """The worker fetches a local repository and delivers the code (`bundle`); only a pod that
        clones the code itself (`clone`) needs a URL it can reach: the repository's `origin`."""
        if settings.kube_code_delivery == "bundle":
            return str(repo)
        proc = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
        print(f"warning: {repo} has no `origin` remote; the cluster must be able to clone {repo} itself",
              file=sys.stderr)  # fmt: skip
        return str(repo)


BACKEND = KubernetesType()
