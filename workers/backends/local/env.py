"""Pure helpers of the local backend: the environment a container sees and `$(VAR)` expansion."""

from __future__ import annotations

import re

from schemas.repo_config import Container
from workers.backends.ports import port_key

_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' rule for command/args: `$(VAR)` becomes VAR's value when VAR is defined, is left as
    written otherwise, and `$$` is a literal `$`. No shell is involved."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(one, text)


def container_env(container: Container, base: dict[str, str], podci: dict[str, str]) -> dict[str, str]:
    """Base (PATH, HOME, ...) < podci's variables < the template's own `env`, expanded in order like
    Kubernetes does (a value may refer to variables defined before it)."""
    env = {**base, **podci}
    for var in container.env:
        env[var.name] = expand(var.value or "", env)
    return env


def container_argv(container: Container, env: dict[str, str]) -> list[str]:
    return [expand(arg, env) for arg in container.argv()]


def resolve_probe_port(container: Container, port: int | str, ports: dict[str, int]) -> int:
    """A probe names a port by name or number; find the local port it was mapped to."""
    for declared in container.ports:
        key = port_key(container, declared.name, declared.container_port)
        if port in (declared.name, declared.container_port):
            return ports[key]
    raise ValueError(f"container `{container.name}` probes port {port!r}, which it does not declare")
