"""Build records in Redis. Every change is a compare-and-set on the record, so two workers racing on
the same build (a redelivered message, a re-kick) cannot both move it forward.

The key families (the record, the builds index, due times, admission queues, pull request sets,
dedupe keys, queued marks) are described in `store.keys`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

from redis import Redis, WatchError

from schemas.names import build_name
from schemas.record import BuildRecord, Step, StepRecord
from schemas.request import BuildRequest
from store import keys
from store.connection import as_text
from store.keys import BUILDS, DUE, REPORT_DUE, TICKETS

TICKET_HEADER = "podci_ticket"


class DuplicateBuild(Exception):
    """The delivery or head commit already started a build; `build_id` is that build."""

    def __init__(self, build_id: str) -> None:
        super().__init__(build_id)
        self.build_id = build_id


# One round trip, atomic: refuse when the name or any dedupe key exists (returning the build it
# names), else write the record, its indexes and the dedupe keys together.
_CREATE = """
for i = 6, #KEYS do
  local first = redis.call('GET', KEYS[i])
  if first then return first end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return ARGV[1] end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[1])
if ARGV[5] == '1' then redis.call('SADD', KEYS[5], ARGV[1]) end
for i = 6, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[6]) end
return false
"""


# The mark of a message about to be queued, with the next ticket, in one round trip.
_MARK = """
local ticket = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ticket, 'EX', ARGV[2])
return ticket
"""


class BuildStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._mark = redis.register_script(_MARK)

    def create(
        self,
        request: BuildRequest,
        *,
        log_root: str,
        due: float,
        dedupe: Sequence[str] = (),
        dedupe_ttl: int = 7 * 24 * 3600,
    ) -> BuildRecord:
        """A new record in `queued`, written in one transaction with its indexes.

        The number comes from a per-job counter and never repeats; a number given by the caller
        (Jenkins) is used as is. Raises `DuplicateBuild` when any `dedupe` key (a delivery id, a pull
        request's head commit) or the build's name was seen before: then nothing is written.
        """
        number = request.number or int(self.redis.incr(keys.job_number(request.job)))
        name = build_name(request.job, number)
        record = BuildRecord(
            id=name,
            job=request.job,
            number=number,
            name=name,
            request=request,
            steps=[StepRecord(name=s) for s in Step],
            log_dir=f"{log_root}/{name}",
            step=Step.checkout,
        )
        written = [keys.build(name), BUILDS, DUE, keys.repo_queue(request.repo)]
        written.append(keys.pull_request(request.pr_key or ""))
        created = record.created.timestamp()
        has_pr = int(bool(request.pr_key))
        args: list[str | float] = [name, record.model_dump_json(), created, due, has_pr, dedupe_ttl]
        first = self._create(keys=written + [keys.dedupe(k) for k in dedupe], args=args)
        if first is not None:
            raise DuplicateBuild(as_text(first))
        return record

    def get(self, build_id: str) -> BuildRecord | None:
        raw = self.redis.get(keys.build(build_id))
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
        key = keys.build(build_id)
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
                        pipe.lrem(keys.repo_queue(record.request.repo), 0, build_id)
                        if due is not None:  # the completing step: its reports must follow
                            pipe.zadd(REPORT_DUE, {build_id: due}, nx=True)
                    elif due is not None:
                        pipe.zadd(DUE, {build_id: due})
                    pipe.execute()
                    return record
                except WatchError:
                    continue

    def admitted(self, record: BuildRecord, limit: int) -> tuple[bool, int]:
        """May the build start? Only the first `limit` unfinished builds of a repository run; the
        rest wait in arrival order. Returns (admitted, how many are ahead of it)."""
        if limit <= 0:
            return True, 0
        position = self.redis.lpos(keys.repo_queue(record.request.repo), record.id)
        if position is None:
            return True, 0
        index = int(position)  # type: ignore[arg-type]
        return index < limit, index

    def mark_woken(self, build_id: str) -> None:
        self.redis.set(keys.woken(build_id), "1", ex=3600)

    def take_woken(self, build_id: str) -> bool:
        """Whether a wake-up came since the last time (and forget it)."""
        return self.redis.getdel(keys.woken(build_id)) is not None

    def first_in_line(self, repo: str, limit: int) -> list[str]:
        """The repository's first `limit` unfinished builds, in arrival order: the ones admitted now."""
        if limit <= 0:
            return []
        return [as_text(m) for m in self.redis.lrange(keys.repo_queue(repo), 0, limit - 1)]

    def builds_of_pull_request(self, pr_key: str, but: str | None = None) -> list[BuildRecord]:
        members = (as_text(m) for m in self.redis.smembers(keys.pull_request(pr_key)))
        records = (self.get(m) for m in members if m != but)
        return sorted((r for r in records if r is not None), key=lambda r: r.created)

    def mark_queued(self, build_id: str, step: Step, seq: int, ttl: float) -> int:
        """A message for (step, seq) is about to wait in a queue; cleared when a worker receives it.
        Returns the message's ticket, which the message carries in its `podci_ticket` header."""
        marked: list[str | int] = [f"{step.value}:{seq}", max(1, int(ttl))]
        return int(self._mark(keys=[keys.queued(build_id), TICKETS], args=marked))

    def received(self, build_id: str) -> None:
        self.redis.delete(keys.queued(build_id))

    def queued_ticket(self, record: BuildRecord) -> int | None:
        """The ticket of the marked message for the record's current step, if one is marked."""
        raw = self.redis.get(keys.queued(record.id))
        if raw is None:
            return None
        marked, _, ticket = as_text(raw).rpartition(":")
        current = f"{record.step.value}:{record.seq}" if record.step is not None else ""
        return int(ticket) if marked == current and ticket.isdigit() else None

    def oldest_waiting(self, queue: str) -> tuple[bool, int | None]:
        """(anything waiting in the Celery queue `queue`, the ticket of the oldest message or None when
        it carries none). Kombu's Redis transport keeps a queue as a list, taken from the right."""
        raw = self.redis.lindex(queue, -1)
        if raw is None:
            return False, None
        try:
            ticket = json.loads(raw)["headers"].get(TICKET_HEADER)
        except (ValueError, KeyError, TypeError, AttributeError):
            return True, None
        return True, ticket if isinstance(ticket, int) else None

    def overdue(self, now: float, limit: int = 500) -> list[str]:
        return [as_text(m) for m in self.redis.zrangebyscore(DUE, 0, now, start=0, num=limit)]

    def reports_overdue(self, now: float, limit: int = 500) -> list[str]:
        return [as_text(m) for m in self.redis.zrangebyscore(REPORT_DUE, 0, now, start=0, num=limit)]

    def reports_due_at(self, build_id: str, when: float | None) -> None:
        """Look again at `when`; None: every report is confirmed, stop looking."""
        if when is None:
            self.redis.zrem(REPORT_DUE, build_id)
        else:
            self.redis.zadd(REPORT_DUE, {build_id: when})

    def push_due(self, build_id: str, when: float) -> None:
        """Move the build's due time later (only while it has one: a complete build has none). Never
        earlier: a step's lease renewal must not undo a later due time set for its retry."""
        self.redis.zadd(DUE, {build_id: when}, xx=True, gt=True)

    def drop_due(self, build_id: str) -> None:
        self.redis.zrem(DUE, build_id)

    def cancel(self, build_id: str, reason: str = "cancelled") -> BuildRecord | None:
        """Ask a build to stop at its next step boundary (teardown and report still run)."""

        def mark(record: BuildRecord) -> None:
            if not record.cancel_requested:
                record.cancel_requested = True
                record.cancel_reason = reason

        return self.update(build_id, mark)

    def recent(self, limit: int = 50) -> Iterator[BuildRecord]:
        for member in self.redis.zrevrange(BUILDS, 0, limit - 1):
            record = self.get(as_text(member))
            if record is not None:
                yield record
