"""The security tests keep their records in a Redis server of their own per module, so that what one
refuses or records is never mixed with another test's (and the session's worker never reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis import Redis

from dispatch.app import make_app
from podci.embedded import embedded_redis
from podci.server import create_app
from schemas.settings import Settings
from testkit.servers import Server


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_redis(tmp_path_factory.mktemp("redis"), persist=False) as url:
        yield url


def alone(settings: Settings, redis_url: str, **updates: Any) -> Settings:
    """The session's settings on `redis_url`, with `updates`, validated (secrets become SecretStr)."""
    return Settings(**{**settings.model_dump(), "redis_url": redis_url, **updates})


@contextmanager
def serving(configured: Settings) -> Iterator[tuple[str, Redis]]:
    """`podci serve`'s app for `configured` on a real uvicorn, its Redis emptied before and after;
    yields (its URL, that Redis). No worker reads it: what counts is what is recorded and queued."""
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    try:
        with Server(create_app(configured, make_app(configured), redis)) as server:
            yield server.url, redis
    finally:
        redis.flushdb()
