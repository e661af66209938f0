"""Build records in Redis. Every change is a compare-and-set on the record, so two workers racing on
the same build (a redelivered message, a re-kick) cannot both move it forward.

The key families (the record, the builds index, due times, admission queues, pull request sets,
dedupe keys, queued marks) are described in `store.keys`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from redis import Redis, WatchError
from redis.client import Pipeline

from schemas.names import build_name
from schemas.record import BuildRecord, BuildState, Step, StepRecord
from schemas.request import BuildRequest
from store import keys
from store.connection import as_text
from store.keys import BUILDS, DUE, REPORT_DUE, TICKETS

TICKET_HEADER = "podci_ticket"
WAITING_REASON = "waiting for approval: a trusted person comments /podci ok-to-test on the pull request"
log = logging.getLogger("podci.store")


def load(build_id: str, raw: bytes | str) -> BuildRecord | None:
    """The record, or None when it cannot be read (written by a newer podci, damaged by hand): one
    such record is skipped and logged, never a failed reconciler pass or a page that answers 500."""
    try:
        return BuildRecord.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        log.warning("build=%s its record cannot be read and is skipped: %s", build_id, str(exc)[:300])
        return None


@dataclass(frozen=True)
class Snapshot:
    """A record as read, with the bytes it was read from: `update` given it skips parsing the record
    again when Redis still holds those bytes (a step's look reads the record once, then writes it)."""

    raw: bytes | str
    record: BuildRecord


class DuplicateBuild(Exception):
    """The delivery or head commit already started a build; `build_id` is that build."""

    def __init__(self, build_id: str) -> None:
        super().__init__(build_id)
        self.build_id = build_id


class NameTaken(Exception):
    """The build number a sender chose (Jenkins' BUILD_NUMBER) names another source's build."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# A counted build whose name is taken (a sender chose that number) takes the next one; this many
# times at most, so a sender flooding names cannot keep a build from being created for long.
NAME_TRIES = 50

# One round trip, atomic: refuse when any dedupe key exists (`dedupe:<the build it started>`) or the
# name does (`name:`), else write the record, its indexes and the dedupe keys together. Everything
# written expires (ARGV[7], the retention), and the builds index forgets what is older than that.
# A build waiting for approval (ARGV[8] = '1') is not due and not in its repository's queue: KEYS[3]
# is then the report list instead, so that its "waiting for approval" status is posted.
_CREATE = """
for i = 6, #KEYS do
  local first = redis.call('GET', KEYS[i])
  if first then return 'dedupe:' .. first end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name:' .. ARGV[1] end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (ARGV[3] - ARGV[7]))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[8] ~= '1' then
  redis.call('RPUSH', KEYS[4], ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[5], ARGV[7])
end
for i = 6, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[6]) end
return false
"""


# The mark of a message about to be queued, with the next ticket, in one round trip.
_MARK = """
local ticket = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ticket, 'EX', ARGV[2])
return ticket
"""


# A wake-up: take the parked build's `step:seq` (the caller sends that step), or, when no step is
# parked (a look is running), leave a mark that the look takes as it parks. One round trip, atomic,
# so a wake-up and a look parking at the same moment send one message between them, never two or none.
_WAKE = """
local parked = redis.call('GET', KEYS[1])
if parked then
  redis.call('DEL', KEYS[1])
  return parked
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return false
"""

# A look just parked its build: if a wake-up came while it looked, take the parked step back to send.
_UNPARK_IF_WOKEN = """
if redis.call('GETDEL', KEYS[2]) then
  local parked = redis.call('GET', KEYS[1])
  redis.call('DEL', KEYS[1])
  return parked
end
return false
"""
WOKEN_TTL = 3600

# A parked build's safety look, answered in Redis: while the build is still parked with a sign (a look
# whose answer rested on its wake source alone), before its budget's deadline, and the wake source's
# sign is still the one the look saw, the look would decide the same: only its due time moves on.
# Returns 1 then; 0 means the look must run.
_QUIET_LOOK = """
local parked = redis.call('GET', KEYS[1])
if not parked then return 0 end
local sign, ends = string.match(parked, '^%S+ (%S+) (%S+)$')
if not sign then return 0 end
local now, deadline = tonumber(ARGV[2]), tonumber(ends)
if not deadline or now >= deadline or redis.call('GET', KEYS[2]) ~= sign then return 0 end
redis.call('ZADD', KEYS[3], 'XX', math.min(now + tonumber(ARGV[3]), deadline), ARGV[1])
return 1
"""

DEFAULT_RETENTION = 30 * 24 * 3600


def _parked_step(raw: bytes | str | None) -> tuple[Step, int] | None:
    if not raw:
        return None
    step, _, seq = as_text(raw).split(" ", 1)[0].partition(":")
    return Step(step), int(seq)


@dataclass(frozen=True)
class Sign:
    """What a parked look's answer rested on (`keys.wait_sign`), good until `deadline` (the end of its
    step's budget, when a real look must run)."""

    sign: str
    deadline: float


class BuildStore:
    """`retention`: seconds a record (and its pull request's set, its repository's queue, its job's
    counter) is kept after its last change (PODCI_RETENTION_DAYS)."""

    def __init__(self, redis: Redis, retention: int = DEFAULT_RETENTION) -> None:
        self.redis = redis
        self.retention = retention
        self._create = redis.register_script(_CREATE)
        self._mark = redis.register_script(_MARK)
        self._wake = redis.register_script(_WAKE)
        self._unpark_if_woken = redis.register_script(_UNPARK_IF_WOKEN)
        self._quiet_look = redis.register_script(_QUIET_LOOK)

    def create(
        self,
        request: BuildRequest,
        *,
        log_root: str,
        due: float,
        dedupe: Sequence[str] = (),
        dedupe_ttl: int = 7 * 24 * 3600,
        waiting: bool = False,
        retry_of: str = "",
        approved_by: str = "",
    ) -> BuildRecord:
        """A new record in `queued` (`awaiting_approval` when `waiting`: nothing runs until `approve`),
        written in one transaction with its indexes. A retry names the build it retries (`retry_of`)
        in the record as it is first written, and keeps the approval that build had (`approved_by`).

        The number comes from a per-job counter of the request's source and never repeats; when its
        name is taken anyway (a number another sender chose), the next number is used. A number given
        by the caller (Jenkins) is used as is. Raises `DuplicateBuild` when any `dedupe` key (a
        delivery id, a pull request's head commit) was seen before, or the caller's number was already
        built for the same job; `NameTaken` when it names another source's build. Then nothing is
        written.
        """
        for _ in range(NAME_TRIES):
            number = request.number or self._next_number(request)
            record = self._new(request, number, log_root, waiting)
            record.retry_of, record.approved_by = retry_of, approved_by
            written = [
                keys.build(record.name),
                BUILDS,
                REPORT_DUE if waiting else DUE,
                keys.repo_queue(request.repo),
            ]
            written.append(keys.pull_request(request.pr_key or ""))
            created = record.created.timestamp()
            has_pr = int(bool(request.pr_key))
            args: list[str | float] = [
                record.name,
                record.model_dump_json(),
                created,
                due,
                has_pr,
                dedupe_ttl,
                self.retention,
                int(waiting),
            ]
            first = self._create(keys=written + [keys.dedupe(k) for k in dedupe], args=args)
            if first is None:
                return record
            kind, _, taken = as_text(first).partition(":")
            if kind == "dedupe":
                raise DuplicateBuild(taken)
            if request.number is None:
                continue  # the name is another's: take the next number
            existing = self.get(taken)
            if existing is None or (existing.request.provider, existing.job) == (
                request.provider,
                request.job,
            ):
                raise DuplicateBuild(taken)
            raise NameTaken(taken)
        raise NameTaken(record.name)

    def _next_number(self, request: BuildRequest) -> int:
        """The job's counter expires with the job's last record: numbers restart only once every
        record they could repeat is gone (and a name still taken takes the next number anyway)."""
        key = keys.job_number(request.provider, request.job)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self.retention)
            number, _ = pipe.execute()
        return int(number)

    @staticmethod
    def _new(request: BuildRequest, number: int, log_root: str, waiting: bool) -> BuildRecord:
        name = build_name(request.job, number, request.provider)
        state = (
            {"state": BuildState.awaiting_approval, "reason": WAITING_REASON, "step": None}
            if waiting
            else {"step": Step.checkout}
        )
        return BuildRecord(
            id=name,
            job=request.job,
            number=number,
            name=name,
            request=request,
            steps=[StepRecord(name=s) for s in Step],
            log_dir=f"{log_root}/{name}",
            **state,
        )

    def remember(self, key: str, what: str, ttl: int) -> str | None:
        """Remember, once, what a delivery that started no build did (a cancel); returns what the
        first delivery with that dedupe key did, or None when this is the first."""
        if self.redis.set(keys.dedupe(key), what, nx=True, ex=ttl):
            return None
        first = self.redis.get(keys.dedupe(key))
        return as_text(first) if first is not None else what

    def get(self, build_id: str) -> BuildRecord | None:
        """The record; None when there is none or it cannot be read (see `load`)."""
        seen = self.read(build_id)
        return None if seen is None else seen.record

    def read(self, build_id: str) -> Snapshot | None:
        """The record with the bytes it was read from, for an `update` that follows."""
        raw = self.redis.get(keys.build(build_id))
        record = None if raw is None else load(build_id, raw)
        return None if raw is None or record is None else Snapshot(raw, record)

    def update(
        self,
        build_id: str,
        change: Callable[[BuildRecord], None],
        *,
        expect_seq: int | None = None,
        expect_state: BuildState | None = None,
        due: float | None = None,
        admit: bool = False,
        seen: Snapshot | None = None,
        sign: Sign | None = None,
    ) -> BuildRecord | None:
        """Apply `change` atomically. Returns None when the record is gone (or unreadable), or its `seq`
        is no longer `expect_seq` (someone else moved the build on), or its state is not `expect_state`,
        in which case nothing was written. With `admit`, an unfinished build also joins its
        repository's queue (a build released from waiting for approval). With `seen` (from `read`),
        its record is changed in place when Redis still holds what it was read from. A look that
        parks the build keeps its `sign` with it (`look_quietly`)."""
        key = keys.build(build_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if seen is not None and raw == seen.raw:
                        record: BuildRecord | None = seen.record
                        seen = None  # a second round (the record changed meanwhile) parses it
                    else:
                        record = None if raw is None else load(build_id, raw)
                    if record is None:
                        return None
                    if expect_seq is not None and record.seq != expect_seq:
                        return None
                    if expect_state is not None and record.state is not expect_state:
                        return None
                    was_parked, seq = record.parked, record.seq
                    change(record)
                    pipe.multi()
                    pipe.set(key, record.model_dump_json(), ex=self.retention)
                    self._park(pipe, record, was_parked, seq, sign)
                    if record.complete:
                        pipe.zrem(DUE, build_id)
                        pipe.lrem(keys.repo_queue(record.request.repo), 0, build_id)
                        if due is not None:  # the completing step: its reports must follow
                            pipe.zadd(REPORT_DUE, {build_id: due}, nx=True)
                    else:
                        if due is not None:
                            pipe.zadd(DUE, {build_id: due})
                        if admit:
                            pipe.rpush(keys.repo_queue(record.request.repo), build_id)
                            pipe.expire(keys.repo_queue(record.request.repo), self.retention)
                    pipe.execute()
                    return record
                except WatchError:
                    continue

    def _park(
        self, pipe: Pipeline, record: BuildRecord, was_parked: bool, seq: int, sign: Sign | None
    ) -> None:
        """The parked step's key follows the record: written when a look parks the build (a new
        `seq`), removed when it is no longer parked. A change to a build parked already (a report
        remembered, a cancel asked) leaves it alone: a wake-up may have taken it, and writing it again
        would let the next wake-up send a second message for the same look (a cancel only drops the
        look's sign, and only from a key still there)."""
        now_parked = record.parked and record.step is not None and not record.complete
        if now_parked and not (was_parked and record.seq == seq):
            assert record.step is not None
            value = f"{record.step.value}:{record.seq}"
            if sign is not None:
                value += f" {sign.sign} {sign.deadline:.3f}"
            pipe.set(keys.parked(record.id), value, ex=self.retention)
        elif was_parked and not now_parked:
            pipe.delete(keys.parked(record.id))
        elif now_parked and record.cancel_requested:
            # A cancel changes what the next look decides, and no wake source signs it: its sign goes
            # (when a wake-up has not taken the key meanwhile), so the safety look runs if the
            # wake-up that follows a cancel was lost.
            assert record.step is not None
            pipe.set(keys.parked(record.id), f"{record.step.value}:{record.seq}", xx=True, keepttl=True)

    def approve(self, build_id: str, by: str, due: float) -> BuildRecord | None:
        """A build waiting for approval becomes `queued`: due (the caller sends its first step; if it
        dies first, the reconciler does) and in its repository's queue. None when it is not waiting
        (approved already by a redelivery, stopped meanwhile): then nothing changes."""

        def release(record: BuildRecord) -> None:
            record.state, record.step, record.reason = BuildState.queued, Step.checkout, ""
            record.approved_by = by
            record.seq += 1

        return self.update(build_id, release, expect_state=BuildState.awaiting_approval, due=due, admit=True)

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

    def wake(self, build_id: str) -> tuple[Step, int] | None:
        """Something the build waits for happened: the (step, seq) to send when it is parked (it is no
        longer, then), else None, and the wake-up is left for the running look to take as it parks.
        Reads no record: the pod watch wakes builds many times a second."""
        woken = (keys.parked(build_id), keys.woken(build_id))
        return _parked_step(self._wake(keys=woken, args=[WOKEN_TTL]))

    def unpark_if_woken(self, build_id: str) -> tuple[Step, int] | None:
        """Called just after a look parked the build: the (step, seq) to send again at once when a
        wake-up came during the look, else None (it stays parked)."""
        woken = (keys.parked(build_id), keys.woken(build_id))
        return _parked_step(self._unpark_if_woken(keys=woken))

    def look_quietly(self, build_ids: list[str], now: float, safety: float) -> set[str]:
        """The overdue builds whose safety look Redis answered (`_QUIET_LOOK`): their due time moved on
        and no message is needed. One round trip for all of them."""
        with self.redis.pipeline(transaction=False) as pipe:
            for build_id in build_ids:
                names = (keys.parked(build_id), keys.wait_sign(build_id), DUE)
                self._quiet_look(keys=names, args=[build_id, now, safety], client=pipe)
            answers = pipe.execute()
        return {build_id for build_id, quiet in zip(build_ids, answers, strict=True) if quiet}

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

    def received(self, build_id: str, due: float | None = None) -> None:
        """The build's message is no longer queued (a worker took it, or it was never sent). A worker
        that took it gives `due`: its step is not overdue before then (and its lease keeps it so).
        Without it, a message that waited past the build's due time (a worker starting late) was
        overdue the moment it arrived, and the reconciler sent a second copy before the lease's
        first renewal."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.queued(build_id))
            if due is not None:
                pipe.zadd(DUE, {build_id: due}, xx=True, gt=True)
            pipe.execute()

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

    def link_retry(self, build_id: str, retried_as: str) -> BuildRecord | None:
        """The retried build names its retry. Only the first link holds: a build has one retry, and
        retrying it again answers that one (`dispatch.actions.retry`)."""

        def link(record: BuildRecord) -> None:
            record.retried_as = record.retried_as or retried_as

        return self.update(build_id, link)
