"""What a command checks before it relies on a cluster: reachable, the namespace there, the rights
podci uses granted. Each failure is one sentence, and the whole check is bounded (a few seconds per
request), so `podci run --backend kubernetes` with no cluster ends at once instead of waiting forever.
"""

from __future__ import annotations

from schemas.settings import Settings
from workers.backends.kubernetes.api import KubeApi
from workers.errors import PermanentError

TIMEOUT = 4.0  # seconds per request; the check makes about fifteen, most answered in milliseconds

# (verb, resource, subresource): every request the backend, the pod watch and teardown make (reading
# events only explains a timeout, so it is not required). deploy/base/role.yaml grants exactly these.
RIGHTS: tuple[tuple[str, str, str], ...] = (
    ("create", "pods", ""), ("list", "pods", ""), ("watch", "pods", ""),
    ("delete", "pods", ""), ("create", "pods", "exec"), ("get", "pods", "log"),
    ("create", "services", ""), ("list", "services", ""), ("delete", "services", ""),
    ("create", "persistentvolumeclaims", ""), ("list", "persistentvolumeclaims", ""),
    ("delete", "persistentvolumeclaims", ""),
)  # fmt: skip
STATIC_RIGHTS: tuple[tuple[str, str, str], ...] = (
    ("create", "persistentvolumes", ""), ("list", "persistentvolumes", ""),
    ("delete", "persistentvolumes", ""),
)  # fmt: skip


def needed_rights(settings: Settings) -> tuple[tuple[str, str, str], ...]:
    return RIGHTS + (STATIC_RIGHTS if settings.kube_static_volumes != "none" else ())


def _shown(verb: str, resource: str, subresource: str) -> str:
    return f"{verb} {resource}/{subresource}" if subresource else f"{verb} {resource}"


def check(settings: Settings) -> str:
    """Raise PermanentError or TransientError with a sentence when the cluster cannot be used; return
    a short description of what was checked."""
    api = KubeApi(settings)
    version = api.version(TIMEOUT)
    missing = [_shown(*right) for right in needed_rights(settings) if not api.can_i(*right, timeout=TIMEOUT)]
    if missing:
        raise PermanentError(
            f"podci may not {', '.join(missing)} in namespace {api.namespace}: grant them to its identity "
            "(deploy/base/role.yaml lists exactly these)"
        )
    probe = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "podci-preflight"},
        "spec": {"clusterIP": "None", "selector": {"podci.io/build": "podci-preflight"}},
    }  # fmt: skip
    api.dry_run_create("services", probe, timeout=TIMEOUT)  # a missing namespace answers 404 here
    return f"Kubernetes {version}, namespace {api.namespace}"
