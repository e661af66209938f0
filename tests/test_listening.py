"""workers/backends/local/listening.py: which addresses a port listens on, from /proc/net/tcp text."""

from __future__ import annotations

import socket

import pytest

from workers.backends.local.listening import listen_scope, port_scope

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def row(address: str, port: int, state: str = "0A") -> str:
    return f"   0: {address}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000 0 0 1\n"


@pytest.mark.parametrize(
    ("tables", "port", "scope"),
    [
        ([HEAD + row("0100007F", 8080)], 8080, "loopback"),  # 127.0.0.1
        ([HEAD + row("0101007F", 8080)], 8080, "loopback"),  # 127.0.1.1
        ([HEAD + row("00000000", 8080)], 8080, "all"),  # 0.0.0.0
        ([HEAD + row("0100007F", 8080) + row("0A00000A", 8080)], 8080, "all"),  # also 10.0.0.10
        ([HEAD, HEAD + row("00000000000000000000000001000000", 8080)], 8080, "loopback"),  # ::1
        ([HEAD, HEAD + row("00000000000000000000000000000000", 8080)], 8080, "all"),  # ::
        ([HEAD + row("0100007F", 8080, state="01")], 8080, "none"),  # an established connection
        ([HEAD + row("0100007F", 8081)], 8080, "none"),
        ([], 8080, "none"),
    ],
    ids=["v4-loopback", "v4-loopback-other", "v4-any", "v4-both", "v6-loopback", "v6-any",
         "not-listening", "other-port", "nothing"],
)  # fmt: skip
def test_listen_scope(tables: list[str], port: int, scope: str) -> None:
    assert listen_scope(tables, port) == scope


@pytest.mark.parametrize(("host", "scope"), [("127.0.0.1", "loopback"), ("0.0.0.0", "all")])
def test_this_machine(host: str, scope: str) -> None:
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen()
        seen = port_scope(server.getsockname()[1])
    if seen is None:
        pytest.skip("no /proc/net here")
    assert seen == scope
