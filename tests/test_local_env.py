"""workers/backends/local_env.py: Kubernetes' `$(VAR)` rules and the environment a container sees."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.repo_config import Container
from workers.backends.local.env import container_env, expand, resolve_probe_port
from workers.backends.ports import port_env

ENV = {"A": "1", "PORT": "8080", "HOME": "/home/ci", "B": "$(A)"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("$(A)", "1"), ("x$(A)y$(A)z", "x1y1z"), ("--port=$(PORT)", "--port=8080"),
     ("$(MISSING)", "$(MISSING)"), ("$(A)-$(MISSING)", "1-$(MISSING)"),
     ("$$", "$"), ("cost: $$5", "cost: $5"), ("$$(A)", "$(A)"), ("$$$(A)", "$1"),
     ("$HOME", "$HOME"), ("${HOME}", "${HOME}"), ("`id`", "`id`"), ("$(id -u)", "$(id -u)"),
     ("$(A", "$(A"), ("a $ b", "a $ b"), ("$(B)", "$(A)"), ("", "")],
)  # fmt: skip
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


@pytest.mark.parametrize(
    ("ports", "expected"),
    [({}, {}), ({"http": 41234}, {"PODCI_PORT_HTTP": "41234"}),
     ({"http-alt": 1, "app-9090": 2}, {"PODCI_PORT_HTTP_ALT": "1", "PODCI_PORT_APP_9090": "2"})],
)  # fmt: skip
def test_port_env(ports: dict[str, int], expected: dict[str, str]) -> None:
    assert port_env(ports) == expected


def container(**fields: Any) -> Container:
    return Container.model_validate({"name": "app", "image": "python", "command": ["run"], **fields})


BASE = {"PATH": "/usr/bin", "HOME": "/home/ci", "PODCI_BUILD": "from-base"}
PODCI = {"PODCI_BUILD": "web-1", "PODCI_PORT_HTTP": "41234"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [([], {"PATH": "/usr/bin", "PODCI_BUILD": "web-1"}),
     ([{"name": "URL", "value": "http://localhost:$(PODCI_PORT_HTTP)/"}], {"URL": "http://localhost:41234/"}),
     ([{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-2"}], {"A": "1", "B": "1-2"}),
     ([{"name": "B", "value": "$(A)-2"}, {"name": "A", "value": "1"}], {"A": "1", "B": "$(A)-2"}),
     ([{"name": "HOME", "value": "/workspace"}], {"HOME": "/workspace"}),
     ([{"name": "PODCI_BUILD", "value": "mine"}], {"PODCI_BUILD": "mine"}),
     ([{"name": "A", "value": "1"}, {"name": "A", "value": "$(A)2"}], {"A": "12"}),
     ([{"name": "EMPTY"}], {"EMPTY": ""}),
     ([{"name": "SH", "value": "$HOME $$(A)"}], {"SH": "$HOME $(A)"})],
)  # fmt: skip
def test_container_env(env: list[dict[str, str]], expected: dict[str, str]) -> None:
    result = container_env(container(env=env), dict(BASE), dict(PODCI))
    assert {k: result.get(k) for k in expected} == expected


def test_container_env_does_not_change_its_inputs() -> None:
    base, podci = dict(BASE), dict(PODCI)
    container_env(container(env=[{"name": "HOME", "value": "/w"}]), base, podci)
    assert (base, podci) == (BASE, PODCI)


PORTS = [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090}]
MAPPED = {"http": 41000, "app-9090": 42000}


@pytest.mark.parametrize(("port", "expected"), [("http", 41000), (8080, 41000), (9090, 42000)])
def test_resolve_probe_port(port: int | str, expected: int) -> None:
    assert resolve_probe_port(container(ports=PORTS), port, MAPPED) == expected


@pytest.mark.parametrize("port", ["grpc", 7000, "app-9090"])
def test_resolve_unknown_probe_port(port: int | str) -> None:
    with pytest.raises(ValueError, match=rf"`app` probes port {port!r}"):
        resolve_probe_port(container(ports=PORTS), port, MAPPED)
