"""What a pod template may not ask for: refused with a sentence before any object is created.

The policy applies to every build; for a fork's pull request the template already comes from the
target branch (see `workers.steps.checkout`), so a fork cannot bring its own.
"""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from workers.backends.base import BuildContext
from workers.backends.kubernetes.names import AGENT_CONTAINER, CHECKOUT_CONTAINER, WORKSPACE_VOLUME
from workers.errors import PermanentError

Json = dict[str, Any]


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _container_problems(kind: str, container: Json) -> list[str]:
    name = container.get("name", "?")
    who = f"{kind} `{name}`"
    problems: list[str] = []
    if name in (AGENT_CONTAINER, CHECKOUT_CONTAINER):
        problems.append(f"{who} uses a name podci reserves for its own containers; rename it")
    security = _mapping(container.get("securityContext"))
    if security.get("privileged") is True:
        problems.append(f"{who} asks for `securityContext.privileged: true`")
    if security.get("allowPrivilegeEscalation") is True:
        problems.append(f"{who} asks for `securityContext.allowPrivilegeEscalation: true`")
    added = _mapping(security.get("capabilities")).get("add")
    if added:
        shown = ", ".join(str(cap) for cap in added) if isinstance(added, list) else str(added)
        problems.append(f"{who} adds capabilities ({shown}) in `securityContext.capabilities.add`")
    for port in _items(container.get("ports")):
        if port.get("hostPort"):
            problems.append(
                f"{who} asks for `hostPort: {port['hostPort']}`; builds share nodes, so use the "
                "containerPort (reached through $(PODCI_PORT_<NAME>))"
            )
    for mount in _items(container.get("volumeMounts")):
        if mount.get("name") == WORKSPACE_VOLUME:
            problems.append(
                f"{who} mounts `{WORKSPACE_VOLUME}` itself; podci mounts the workspace in every container "
                "at `volume.mount_path` of .podci.yml"
            )
    return problems


def policy_problems(ctx: BuildContext, settings: Settings) -> list[str]:
    """Every reason the template may not run here, each naming the container or volume at fault."""
    spec = ctx.pod.as_written()
    problems: list[str] = []
    groups = (("container", "containers"), ("init container", "initContainers"))
    for kind, key in groups:
        for container in _items(spec.get(key)):
            problems.extend(_container_problems(kind, container))
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            problems.append(f"the pod asks for `{field}: true`")
    for volume in _items(spec.get("volumes")):
        name = volume.get("name", "?")
        if name == WORKSPACE_VOLUME:
            problems.append(f"volume `{name}` uses a name podci reserves for the workspace; rename it")
        if "hostPath" in volume and not settings.kube_allow_host_path:
            problems.append(f"volume `{name}` is a hostPath volume, which this cluster does not allow")
    for field in ("serviceAccountName", "serviceAccount"):
        account = spec.get(field)
        if account and account != settings.kube_service_account:
            problems.append(
                f"the pod names service account `{account}` in `{field}`, but builds may only run as "
                f"`{settings.kube_service_account}`"
            )
    return problems


def check_policy(ctx: BuildContext, settings: Settings) -> None:
    """Refuse, before anything is created, a template that would reach beyond its own pod.

    It applies to every build, not only to forks (whose template already comes from the target branch):
    a privileged container or a host namespace is a way out of the pod for anyone who can push a branch.
    """
    problems = policy_problems(ctx, settings)
    if problems:
        raise PermanentError(
            f"the pod template `{ctx.config.pod_template}` asks for what podci does not allow: "
            f"{'; '.join(problems)}. Remove these fields from the template and push again."
        )
