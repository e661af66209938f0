"""Which addresses a local port listens on, from /proc/net/tcp and tcp6: the local backend's way of
telling, before a cluster would, that a service binds only 127.0.0.1 where a kubelet's readiness probe
(which dials the pod's IP) could never reach it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Scope = Literal["all", "loopback", "none"]
_LISTEN = "0A"
_LOOPBACK4 = "7F"  # the last byte of the little-endian hex address: 127.x.x.x
_LOOPBACK6 = "00000000000000000000000001000000"  # ::1 as /proc writes it


def listen_scope(tables: list[str], port: int) -> Scope:
    """From the text of /proc/net/tcp and /proc/net/tcp6: does something listen on `port` on a
    non-loopback address ("all"), only on loopback ("loopback"), or not at all ("none")?"""
    loopback = False
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _LISTEN:
                continue
            address, _, hex_port = fields[1].partition(":")
            if not hex_port or int(hex_port, 16) != port:
                continue
            if (address[-2:] == _LOOPBACK4 and len(address) == 8) or address == _LOOPBACK6:
                loopback = True
            else:
                return "all"
    return "loopback" if loopback else "none"


def port_scope(port: int) -> Scope | None:
    """This machine's view; None where /proc/net is not there to read (not Linux)."""
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append(Path("/proc/net", name).read_text())
        except OSError:
            continue
    return listen_scope(tables, port) if tables else None
