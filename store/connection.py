"""Redis clients for podci's own data: made in one place, so every process connects the same way."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.sentinel import Sentinel

from schemas.redis_url import is_sentinel, parse_sentinel
from schemas.settings import Settings

# Asking a sentinel which server is the master is bounded even where commands are not (a worker's
# blocking reads): a sentinel that hangs must not hang every reconnect.
SENTINEL_TIMEOUT = 5.0


def connect(url: str, timeout: float | None = None, master: str | None = None) -> Redis:
    """A client for `url` (the same Redis Celery uses as its broker). With `timeout`, connecting and
    each command give up after that many seconds (`redis.exceptions.TimeoutError`): a hung Redis
    must not hang the receiver, which answers 503 instead. A sentinel URL needs `master`, the name
    the sentinels know the master by: the client asks them for the master's address at each
    (re)connect, so after a failover it finds the promoted replica by itself."""
    if not is_sentinel(url):
        return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    if not master:
        raise ValueError(
            f"{url} names sentinels: connecting needs the master's name (PODCI_REDIS_SENTINEL_MASTER)"
        )
    return _master_of(url, master, timeout)


def _master_of(url: str, master: str, timeout: float | None) -> Redis:
    target = parse_sentinel(url)
    asking = timeout if timeout is not None else SENTINEL_TIMEOUT
    sentinels = Sentinel(
        list(target.nodes),
        sentinel_kwargs={"socket_timeout": asking, "socket_connect_timeout": asking},
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    client: Redis = sentinels.master_for(
        master, db=target.db, username=target.username, password=target.password
    )
    return client


def connect_to(settings: Settings, timeout: float | None = None) -> Redis:
    """The client of a process that shares the queue: the configured Redis, or its sentinels' master."""
    return connect(settings.require_redis_url(), timeout, settings.redis_sentinel_master)


def as_text(value: Any) -> str:
    """redis-py answers bytes unless asked otherwise; keys and ids here are text."""
    return value.decode() if isinstance(value, bytes) else str(value)
