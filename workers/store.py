"""Build records in Redis. Every change is a compare-and-set on the record, so two workers racing on
the same build (a redelivered message, a re-kick) cannot both move it forward."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from redis import Redis, WatchError

from schemas.record import BuildRecord, StepRecord
from schemas.request import BuildRequest
from workers.names import build_name
from workers.pipeline import STEPS

PREFIX = "podci"
BUILDS = f"{PREFIX}:builds"  # zset: id -> created (unix time), newest last
DUE = f"{PREFIX}:due"  # zset: id -> when its next step should have run at the latest


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(build_id: str) -> str:
    return f"{PREFIX}:build:{build_id}"


class BuildStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def create(self, request: BuildRequest, *, log_root: str, due: float) -> BuildRecord:
        """A new record in `queued`. The number comes from a per-job counter and never repeats; a
        number given by the caller (Jenkins) is used as is, and re-using one is refused."""
        number = request.number or int(self.redis.incr(f"{PREFIX}:job:{request.job}:number"))
        name = build_name(request.job, number)
        record = BuildRecord(
            id=name,
            job=request.job,
            number=number,
            name=name,
            request=request,
            steps=[StepRecord(name=s) for s in STEPS],
            log_dir=f"{log_root}/{name}",
            step=STEPS[0],
        )
        with self.redis.pipeline() as pipe:
            pipe.set(_key(record.id), record.model_dump_json(), nx=True)
            pipe.zadd(BUILDS, {record.id: record.created.timestamp()})
            pipe.zadd(DUE, {record.id: due})
            created, _, _ = pipe.execute()
        if not created:
            raise ValueError(f"build {name} exists already: job {request.job!r} number {number} was used")
        return record

    def get(self, build_id: str) -> BuildRecord | None:
        raw = self.redis.get(_key(build_id))
        return None if raw is None else BuildRecord.model_validate_json(raw)

    def update(
        self,
        build_id: str,
        change: Callable[[BuildRecord], None],
        *,
        expect_seq: int | None = None,
        due: float | None = None,
    ) -> BuildRecord | None:
        """Apply `change` atomically. Returns None when the record is gone or its `seq` is no longer
        `expect_seq` (someone else moved the build on), in which case nothing was written."""
        key = _key(build_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    record = BuildRecord.model_validate_json(raw)
                    if expect_seq is not None and record.seq != expect_seq:
                        return None
                    change(record)
                    pipe.multi()
                    pipe.set(key, record.model_dump_json())
                    if record.complete:
                        pipe.zrem(DUE, build_id)
                    elif due is not None:
                        pipe.zadd(DUE, {build_id: due})
                    pipe.execute()
                    return record
                except WatchError:
                    continue

    def overdue(self, now: float, limit: int = 500) -> list[str]:
        return [_text(m) for m in self.redis.zrangebyscore(DUE, 0, now, start=0, num=limit)]

    def drop_due(self, build_id: str) -> None:
        self.redis.zrem(DUE, build_id)

    def cancel(self, build_id: str) -> BuildRecord | None:
        """Ask a build to stop at its next step boundary (teardown and report still run)."""

        def mark(record: BuildRecord) -> None:
            record.cancel_requested = True

        return self.update(build_id, mark)

    def recent(self, limit: int = 50) -> Iterator[BuildRecord]:
        for member in self.redis.zrevrange(BUILDS, 0, limit - 1):
            record = self.get(_text(member))
            if record is not None:
                yield record


def now() -> float:
    return time.time()
