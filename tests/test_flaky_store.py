"""store/flaky.py on a real Redis of its own (embedded, flushed freely): bounded, expiring, and a
second write of one run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from podci.embedded import embedded_redis
from store import keys
from store.flaky import KEEP_RUNS, OutcomeHistory, RunFacts

RETENTION = 30 * 86400
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with embedded_redis(tmp_path_factory.mktemp("flaky-redis"), persist=False) as url:
        yield Redis.from_url(url)


@pytest.fixture
def history(redis: Redis) -> OutcomeHistory:
    redis.flushdb()
    return OutcomeHistory(redis, RETENTION)


def facts(build: str, at: float, source: str = "s" * 40, repo: str = "team/app") -> RunFacts:
    return RunFacts(repo=repo, run=build, at=at, source=source, merge=None)


def everything(redis: Redis) -> dict[bytes, Any]:
    return {key: redis.zrange(key, 0, -1, withscores=True) for key in sorted(redis.scan_iter("podci:*"))}


def test_the_21st_run_drops_the_oldest(history: OutcomeHistory, redis: Redis) -> None:
    for n in range(KEEP_RUNS + 1):
        history.record(facts(f"b{n}", T0 + n), [("app.T.a", n % 2 == 0)])
    members = [m.decode() for m in redis.zrange(keys.test_runs("team/app", "app.T.a"), 0, -1)]
    assert len(members) == KEEP_RUNS
    assert "b0:p" not in members and members[0] == "b1:f" and members[-1] == f"b{KEEP_RUNS}:p"


def test_every_key_expires_with_the_retention(history: OutcomeHistory, redis: Redis) -> None:
    history.record(facts("b1", T0), [("app.T.a", True), ("app.T.b", False)])
    found = list(redis.scan_iter("podci:*"))
    assert len(found) == 4  # two tests' runs, the builds' commits, the failed tests
    assert all(0 < int(redis.ttl(key)) <= RETENTION for key in found)
    assert not any(keys.bounded_without_expiry(key.decode()) for key in found)


def test_a_second_write_of_one_run_changes_nothing(history: OutcomeHistory, redis: Redis) -> None:
    outcomes = [("app.T.a", True), ("app.T.b", False), ("app.T.c", True)]
    history.record(facts("b1", T0), outcomes)
    history.record(facts("b2", T0 + 10), outcomes)
    before = everything(redis)
    history.record(facts("b1", T0), outcomes)  # the step ran again: its worker died after writing
    history.record(facts("b2", T0 + 10), list(reversed(outcomes)))
    assert everything(redis) == before


def test_a_retry_that_passes_makes_the_test_flaky(history: OutcomeHistory) -> None:
    history.record(facts("b1", T0), [("app.T.a", False), ("app.T.b", False)])
    history.record(facts("b2", T0 + 60), [("app.T.a", True), ("app.T.b", False)])  # the retry
    history.record(facts("b3", T0 + 120, source="n" * 40), [("app.T.a", True), ("app.T.b", True)])
    listed = history.flaky_tests("team/app", T0 + 180)
    assert [(t.name, t.flakiness.note, t.flakiness.builds) for t in listed] == [
        ("app.T.a", "flaky: 1 of the last 3 runs failed", ("b2", "b1"))
    ]  # b only ever failed on its commit, then passed on the next: fixed, not flaky
    assert history.flaky_tests("other/repo", T0 + 180) == []
    assert history.flaky_tests("team/app", T0 + 15 * 86400) == []  # two weeks on: no longer


def test_memory_per_test(history: OutcomeHistory, redis: Redis) -> None:
    """About 1,000 tests run 20 times: the bytes per test that a repository's history costs
    (the docstring of store/flaky.py says it; printed, and loosely bounded)."""
    tests = [f"tests.test_module_{n // 20}.TestCase.test_something_{n}" for n in range(1000)]
    for run in range(KEEP_RUNS):
        history.record(facts(f"webapp-pr-{run + 1000}", T0 + run), [(t, run % 7 != 0) for t in tests])
    used = sum(int(redis.memory_usage(key) or 0) for key in redis.scan_iter("podci:*"))
    per_test = used / len(tests)
    print(f"history of {len(tests)} tests x {KEEP_RUNS} runs: {used} bytes, {per_test:.0f} per test")
    assert per_test < 2000


def test_an_unknown_repository_has_no_flaky_tests(history: OutcomeHistory, tmp_path: Path) -> None:
    assert history.flaky("nobody/here", ["x"], T0) == {}
    assert history.record(facts("b1", T0), []) == 0
