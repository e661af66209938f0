"""A build's test output while the tests run, kept in Redis for the pages: the API server and the
workers share nothing else.

One worker follows a build's test log (`workers/live.py`) and appends what is new, already masked;
the pages read what came after a cursor. The text is capped (`MAX_BYTES`, older text dropped from the
front) and expires with the record, so a long or chatty test run costs bounded memory.

Appends are idempotent by position: each names the byte of its attempt's raw log it continues from,
and Redis refuses it unless that is where the text so far ends. A follower that died, or a second one
whose claim overlapped, can therefore never write a line twice; the next follower resumes at `raw`.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from store import keys
from store.connection import as_text

MAX_BYTES = 256 * 1024  # kept of a build's live text; older text is dropped from the front
CLAIM_SECONDS = 15  # a follower renews its claim well within this; a dead one's lapses
TRIMMED = "[earlier output is not kept here; the full log is on the build page once the tests end]\n"

# KEYS: text, meta. ARGV: source, raw_from, raw_to, text, cap, ttl. Returns 1 (appended) or 0.
_APPEND = """
local source = redis.call('HGET', KEYS[2], 'source')
local raw = tonumber(redis.call('HGET', KEYS[2], 'raw') or '0')
if source ~= ARGV[1] then
  if tonumber(ARGV[2]) ~= 0 then return 0 end
  raw = 0
  redis.call('HSET', KEYS[2], 'source', ARGV[1], 'raw', 0)
end
if raw ~= tonumber(ARGV[2]) then return 0 end
local length = redis.call('APPEND', KEYS[1], ARGV[4])
local cap = tonumber(ARGV[5])
if length > cap then
  local keep = math.floor(cap / 2)
  local kept = redis.call('GETRANGE', KEYS[1], length - keep, -1)
  redis.call('SET', KEYS[1], kept)
  redis.call('HINCRBY', KEYS[2], 'start', length - keep)
end
redis.call('HSET', KEYS[2], 'raw', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""

# KEYS: text, meta. ARGV: after. Returns {start, text from max(after, start)}.
_READ = """
local start = tonumber(redis.call('HGET', KEYS[2], 'start') or '0')
local from = math.max(tonumber(ARGV[1]) - start, 0)
return {start, redis.call('GETRANGE', KEYS[1], from, -1)}
"""

# KEYS: wanted, meta. ARGV: build, source. Adds the build unless that attempt was followed to its end.
_WANT = """
if redis.call('HGET', KEYS[2], 'ended') == ARGV[2] then return 0 end
return redis.call('SADD', KEYS[1], ARGV[1])
"""

# KEYS: wanted. ARGV: me, claim seconds, claim key prefix. Claims every wanted build nobody holds.
_CLAIM = """
local taken = {}
for _, build in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SET', ARGV[3] .. build, ARGV[1], 'NX', 'EX', ARGV[2]) then
    table.insert(taken, build)
  end
end
return taken
"""

# KEYS: claims. ARGV: me, claim seconds. Renews the claims still held; returns the ones lost.
_RENEW = """
local lost = {}
for _, claim in ipairs(KEYS) do
  if redis.call('GET', claim) == ARGV[1] then
    redis.call('EXPIRE', claim, ARGV[2])
  else
    table.insert(lost, claim)
  end
end
return lost
"""


@dataclass(frozen=True)
class Chunk:
    """What came after a cursor: `text` from byte `cursor` of the whole output on; `skipped` bytes
    between the reader's cursor and the oldest text kept (dropped by the cap)."""

    text: str
    cursor: int
    skipped: int


class LiveLogs:
    def __init__(self, redis: Redis, ttl: int, cap: int = MAX_BYTES) -> None:
        self.redis, self.ttl, self.cap = redis, ttl, cap
        self._append = redis.register_script(_APPEND)
        self._read = redis.register_script(_READ)
        self._want = redis.register_script(_WANT)
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)

    # --- the worker that starts the tests --------------------------------------------------------
    def want(self, build_id: str, source: str) -> None:
        """Ask for the build's test log to be followed; a no-op once `source` was followed to its end,
        so the step's later looks do not start a follower for nothing."""
        self._want(keys=[keys.LIVE_WANTED, keys.live_meta(build_id)], args=[build_id, source])

    # --- the follower ----------------------------------------------------------------------------
    def claim(self, me: str) -> list[str]:
        """The wanted builds nobody follows, now claimed by `me`."""
        prefix = keys.live_claim("")
        taken = self._claim(keys=[keys.LIVE_WANTED], args=[me, CLAIM_SECONDS, prefix])
        return [as_text(build) for build in taken]

    def renew(self, me: str, builds: list[str]) -> set[str]:
        """Keep `me`'s claims on `builds`; returns the builds whose claim was lost meanwhile."""
        if not builds:
            return set()
        claims = [keys.live_claim(build) for build in builds]
        lost = {as_text(c) for c in self._renew(keys=claims, args=[me, CLAIM_SECONDS])}
        return {build for build, claim in zip(builds, claims, strict=True) if claim in lost}

    def resume_at(self, build_id: str, source: str) -> int:
        """Bytes of `source`'s raw log already taken (0 for an attempt not followed before)."""
        found = self.redis.hmget(keys.live_meta(build_id), ["source", "raw"])
        if found[0] is None or as_text(found[0]) != source:
            return 0
        return int(found[1] or 0)

    def append(self, build_id: str, source: str, raw_from: int, raw_to: int, text: str) -> bool:
        """Add `text`, masked, made of `source`'s raw bytes `raw_from` to `raw_to`; False (nothing
        written) when the text so far does not end at `raw_from`: another follower got there."""
        done = self._append(
            keys=[keys.live_text(build_id), keys.live_meta(build_id)],
            args=[source, raw_from, raw_to, text, self.cap, self.ttl],
        )
        return bool(done)

    def ended(self, build_id: str, source: str, claimant: str) -> None:
        """`source` was followed to its end: no longer wanted, its claim let go."""
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.live_meta(build_id), "ended", source)
            pipe.expire(keys.live_meta(build_id), self.ttl)
            pipe.srem(keys.LIVE_WANTED, build_id)
            pipe.execute()
        self.release(build_id, claimant)

    def drop(self, build_id: str, claimant: str) -> None:
        """Not to be followed at all (the build is complete or gone)."""
        self.redis.srem(keys.LIVE_WANTED, build_id)
        self.release(build_id, claimant)

    def release(self, build_id: str, claimant: str) -> None:
        claim = keys.live_claim(build_id)
        if as_text(self.redis.get(claim) or b"") == claimant:
            self.redis.delete(claim)

    # --- the pages -------------------------------------------------------------------------------
    def read(self, build_id: str, after: int) -> Chunk:
        """The text from byte `after` of the whole output on (undecodable bytes shown replaced)."""
        start, raw = self._read(
            keys=[keys.live_text(build_id), keys.live_meta(build_id)], args=[max(after, 0)]
        )
        start = int(start)
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        begin = max(after, start)
        return Chunk(data.decode(errors="replace"), begin + len(data), begin - max(after, 0))
