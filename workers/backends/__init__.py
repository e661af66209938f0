"""The cluster backends, by name. Each is a subpackage (`local/`, `kubernetes/`) exporting `BACKEND`, a
`BackendType`; no backend imports another, and only the one a process uses is ever imported (a local
worker never loads the Kubernetes client)."""

from __future__ import annotations

from importlib import import_module

from redis import Redis

from schemas.settings import Settings
from workers.backends.base import BackendType, ClusterBackend

_PACKAGES = {"local": "workers.backends.local", "kubernetes": "workers.backends.kubernetes"}


def backend_type(name: str) -> BackendType:
    if name not in _PACKAGES:
        raise ValueError(f"no backend named {name!r}; choose one of: {', '.join(_PACKAGES)}")
    backend: BackendType = import_module(_PACKAGES[name]).BACKEND
    return backend


def make_backend(settings: Settings, redis: Redis) -> ClusterBackend:
    """The backend the settings name, for one worker process."""
    return backend_type(settings.backend).create(settings, redis)
