"""Pick the cluster backend the settings name."""

from __future__ import annotations

from redis import Redis

from schemas.settings import Settings
from workers.backends.base import ClusterBackend
from workers.backends.local import LocalBackend


def make_backend(settings: Settings) -> ClusterBackend:
    if settings.backend == "local":
        return LocalBackend(settings.state_dir, settings.teardown_grace, settings.log_tail_lines)
    from workers.backends.k8s_api import KubeApi  # only a Kubernetes worker loads the client
    from workers.backends.k8s_watch import PodCache
    from workers.backends.kubernetes import KubernetesBackend

    cache = PodCache(Redis.from_url(settings.require_redis_url()))
    return KubernetesBackend(settings, KubeApi(settings), cache)
