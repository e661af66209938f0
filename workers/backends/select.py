"""Pick the cluster backend the settings name."""

from __future__ import annotations

from schemas.settings import Settings
from workers.backends.base import ClusterBackend
from workers.backends.local import LocalBackend


def make_backend(settings: Settings) -> ClusterBackend:
    if settings.backend == "local":
        return LocalBackend(settings.state_dir, settings.teardown_grace, settings.log_tail_lines)
    raise SystemExit(
        f"the {settings.backend!r} backend is not available in this version of podci; "
        "set PODCI_BACKEND=local (or pass --backend local)"
    )
