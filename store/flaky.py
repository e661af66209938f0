"""Each repository's recent test outcomes in Redis, and the flaky tests they show.

Written once per run of the tests (a build's, or its rerun's) by one script: the outcomes are keyed
by run id, so a step that runs twice (its worker killed before it recorded the build) writes the same
members again and nothing changes. Bounded three ways: `KEEP_RUNS` outcomes per test, outcomes older
than the retention dropped on each write, and every key expiring `retention` seconds after its last
write (PODCI_RETENTION_DAYS). Memory, measured (`tests/test_flaky_store.py`): about 750 bytes per test
with 20 outcomes, so a repository with 5,000 tests holds under 4 MB.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis import Redis

from store import keys
from store.flaky_rule import (
    Flakiness,
    build_member,
    flakiness,
    merged_outcomes,
    parse_builds,
    runs_of,
)

KEEP_RUNS = 20  # outcomes kept per test: "N of the last 20 runs failed"
KEEP_BUILDS = 1000  # builds whose commits are kept per repository (older runs lose their commits)
KEEP_FAILED = 1000  # tests the flaky list considers per repository: those that failed last
FLAKY_LISTED = 200

# KEYS: test_builds, test_failures. ARGV: runs-key prefix, run id, score, build member, ttl, keep runs,
# keep builds, keep failed, then (test name, p|f) pairs. The other outcome of the same run is removed
# first: a second write replaces, never adds.
_RECORD = """
local prefix, run, at, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
local oldest = '(' .. tostring(at - ttl)
redis.call('ZADD', KEYS[1], at, ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[7]) - 1)
redis.call('EXPIRE', KEYS[1], ttl)
local failed = false
for i = 9, #ARGV, 2 do
  local key, outcome = prefix .. ARGV[i], ARGV[i + 1]
  local other = outcome == 'p' and 'f' or 'p'
  redis.call('ZREM', key, run .. ':' .. other)
  redis.call('ZADD', key, at, run .. ':' .. outcome)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', oldest)
  redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
  redis.call('EXPIRE', key, ttl)
  if outcome == 'f' then
    redis.call('ZADD', KEYS[2], 'GT', at, ARGV[i])
    failed = true
  end
end
if failed then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return (#ARGV - 8) / 2
"""


@dataclass(frozen=True)
class RunFacts:
    """Which run of which build, on which commits: what makes two outcomes comparable."""

    repo: str
    run: str  # the build id, or `{build}#rerun`
    at: float  # the build's creation time: the same on every write of this run
    source: str | None
    merge: str | None


@dataclass(frozen=True)
class FlakyTest:
    name: str
    flakiness: Flakiness


class OutcomeHistory:
    """`retention`: seconds every key lives after its last write (PODCI_RETENTION_DAYS)."""

    def __init__(self, redis: Redis, retention: int) -> None:
        self.redis = redis
        self.retention = retention
        self._record = redis.register_script(_RECORD)

    def record(self, facts: RunFacts, outcomes: Iterable[tuple[str, bool]]) -> int:
        """Add one run's outcomes; returns how many tests it named."""
        merged = merged_outcomes(outcomes)
        if not merged:
            return 0
        pairs = [item for name, passed in merged.items() for item in (name, "p" if passed else "f")]
        build = facts.run.split("#", 1)[0]
        args: list[str | int | float] = [
            keys.test_runs(facts.repo, ""), facts.run, facts.at,
            build_member(build, facts.source, facts.merge), self.retention,
            KEEP_RUNS, KEEP_BUILDS, KEEP_FAILED, *pairs,
        ]  # fmt: skip
        return int(
            self._record(keys=[keys.test_builds(facts.repo), keys.test_failures(facts.repo)], args=args)
        )

    def _commits(self, repo: str) -> dict[str, tuple[str, str]]:
        members = self.redis.zrange(keys.test_builds(repo), 0, -1)
        return parse_builds(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def _histories(self, repo: str, names: list[str]) -> dict[str, list[tuple[str, float]]]:
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(keys.test_runs(repo, name), 0, -1, withscores=True)
        answers = pipe.execute()
        return {
            name: [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in scored]
            for name, scored in zip(names, answers, strict=True)
        }

    def flaky(self, repo: str, names: list[str], now: float) -> dict[str, Flakiness]:
        """Which of `names` are flaky in `repo` now."""
        if not names:
            return {}
        commits = self._commits(repo)
        found = {}
        for name, scored in self._histories(repo, names).items():
            verdict = flakiness(runs_of(scored, commits), now)
            if verdict is not None:
                found[name] = verdict
        return found

    def flaky_tests(self, repo: str, now: float, limit: int = FLAKY_LISTED) -> list[FlakyTest]:
        """The repository's flaky tests, the newest flake first."""
        raw = self.redis.zrevrange(keys.test_failures(repo), 0, KEEP_FAILED - 1)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        found = self.flaky(repo, names, now)
        ordered = sorted(found.items(), key=lambda item: (-item[1].last_flake, item[0]))
        return [FlakyTest(name, verdict) for name, verdict in ordered[:limit]]
