"""Redis clients for podci's own data: made in one place, so every process connects the same way."""

from __future__ import annotations

from typing import Any

from redis import Redis


def connect(url: str, timeout: float | None = None) -> Redis:
    """A client for `url` (the same Redis Celery uses as its broker). With `timeout`, connecting and
    each command give up after that many seconds (`redis.exceptions.TimeoutError`): a hung Redis
    must not hang the receiver, which answers 503 instead."""
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def as_text(value: Any) -> str:
    """redis-py answers bytes unless asked otherwise; keys and ids here are text."""
    return value.decode() if isinstance(value, bytes) else str(value)
