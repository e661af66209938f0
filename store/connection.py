"""Redis clients for podci's own data: made in one place, so every process connects the same way."""

from __future__ import annotations

from typing import Any

from redis import Redis


def connect(url: str) -> Redis:
    """A client for `url` (the same Redis Celery uses as its broker)."""
    return Redis.from_url(url)


def as_text(value: Any) -> str:
    """redis-py answers bytes unless asked otherwise; keys and ids here are text."""
    return value.decode() if isinstance(value, bytes) else str(value)
