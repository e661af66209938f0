"""How a pod template's declared ports are named and found, the same way on every backend.

A container finds its sidecars' ports in `PODCI_PORT_<NAME>`: on Kubernetes they are the declared
ports themselves (all containers share the pod's network), on the local backend the free ports leased
for them. Both backends use these helpers, so one template works on both.
"""

from __future__ import annotations

from schemas.names import env_suffix
from schemas.repo_config import Container


def port_key(container: Container, port_name: str | None, container_port: int) -> str:
    return port_name or f"{container.name}-{container_port}"


def port_env(ports: dict[str, int]) -> dict[str, str]:
    """`{"http": 41234}` -> `{"PODCI_PORT_HTTP": "41234"}`: how a container finds its sidecars' ports."""
    return {f"PODCI_PORT_{env_suffix(key)}": str(port) for key, port in ports.items()}
