"""store/builds.py on a real Redis database no worker reads: names, numbers and dedupe per source."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis import Redis

from schemas.names import build_name
from schemas.record import BuildRecord, Step
from schemas.request import BuildRequest, Provider, Revision
from schemas.settings import Settings
from store import keys
from store.builds import BuildStore, DuplicateBuild, NameTaken, Sign
from tests.test_webhooks import other_db


@pytest.fixture
def store(settings: Settings) -> Iterator[BuildStore]:
    redis = Redis.from_url(other_db(settings, 15).require_redis_url())
    redis.flushdb()
    yield BuildStore(redis)
    redis.flushdb()


def req(job: str, provider: Provider, number: int | None = None) -> BuildRequest:
    source = Revision(clone_url="https://bitbucket.org/team/app.git", ref="main")
    return BuildRequest(job=job, number=number, repo="team/app", provider=provider, source=source)


def create(store: BuildStore, request: BuildRequest) -> str:
    return store.create(request, log_root="/nonexistent", due=time.time() + 3600).id


def test_one_job_name_gives_other_build_names_per_source() -> None:
    names = {build_name("team/app-pr8", 3, p) for p in ("bitbucket-cloud", "bitbucket-server", "jenkins")}
    assert len(names) == 3
    assert build_name("ci", 3, "jenkins") == build_name("ci", 3) == "ci-3"  # JOB_NAME-BUILD_NUMBER


def test_a_counted_build_whose_name_is_taken_takes_the_next_number(store: BuildStore) -> None:
    first = create(store, req("t", "manual"))
    assert first == "t-1"
    create(store, req("t", "jenkins", number=2))  # another source took the next name
    create(store, req("t", "jenkins", number=3))
    assert create(store, req("t", "manual")) == "t-4"


def test_a_chosen_number_twice_is_a_duplicate_and_another_source_s_name_is_taken(store: BuildStore) -> None:
    assert create(store, req("ci", "jenkins", number=5)) == "ci-5"
    with pytest.raises(DuplicateBuild) as dup:
        create(store, req("ci", "jenkins", number=5))
    assert dup.value.build_id == "ci-5"
    assert create(store, req("ci", "manual")) == "ci-1"
    with pytest.raises(NameTaken):
        create(store, req("ci", "jenkins", number=1))
    assert store.redis.get(keys.job_number("manual", "ci")) == b"1"
    assert store.redis.get(keys.job_number("jenkins", "ci")) is None  # Jenkins' numbers are its own


def park(
    store: BuildStore, build_id: str, sign: Sign | None = None, due: float | None = None
) -> tuple[Step, int]:
    """A look that ends in Wait, as `workers.tasks.run_step` records it."""

    def waits(record: BuildRecord) -> None:
        record.seq += 1
        record.parked = True

    record = store.update(build_id, waits, sign=sign, due=due)
    assert record is not None and record.step is not None
    return record.step, record.seq


def test_a_wake_up_takes_the_parked_step_once_however_many_come(store: BuildStore) -> None:
    build_id = create(store, req("web", "bitbucket-cloud"))
    assert store.wake(build_id) is None  # not parked: left for the look to take as it parks
    parked = park(store, build_id)
    assert store.unpark_if_woken(build_id) == parked  # that wake-up: look again at once
    assert store.wake(build_id) is None and store.unpark_if_woken(build_id) is None
    parked = park(store, build_id)
    assert [store.wake(build_id) for _ in range(3)] == [parked, None, None]
    # The later two came while the sent look was in flight: that look, if it parks, looks again once.
    assert store.redis.exists(keys.woken(build_id)) == 1


def test_a_build_that_moves_on_or_completes_is_no_longer_parked(store: BuildStore) -> None:
    build_id = create(store, req("web", "bitbucket-cloud"))
    park(store, build_id)

    def moves_on(record: BuildRecord) -> None:
        record.seq += 1
        record.parked = False

    store.update(build_id, moves_on)
    assert store.redis.exists(keys.parked(build_id)) == 0 and store.wake(build_id) is None


def test_a_report_remembered_while_parked_does_not_give_a_taken_step_back(store: BuildStore) -> None:
    """A wake-up took the parked step (its message is in flight); a change that is not a look (a status
    remembered, a cancel asked) must not park it again, or the next wake-up sends the same look twice."""
    build_id = create(store, req("web", "bitbucket-cloud"))
    parked = park(store, build_id)
    assert store.wake(build_id) == parked

    def remember(record: BuildRecord) -> None:
        record.reported["bitbucket-cloud"] = "INPROGRESS"

    store.update(build_id, remember)
    assert store.wake(build_id) is None


NOW, SAFETY = 1_000_000.0, 60.0


@pytest.mark.parametrize(
    ("looked", "source", "deadline", "quiet"),
    [
        ("pod-1:aa", "pod-1:aa", NOW + 600, True),  # nothing changed: the look would decide the same
        ("pod-1:aa", "pod-1:bb", NOW + 600, False),  # the pod changed (its wake-up may be lost)
        ("pod-1:aa", "pod-1:gone", NOW + 600, False),
        ("pod-1:aa", "pod-2:aa", NOW + 600, False),  # a new attempt's pod
        ("pod-1:aa", None, NOW + 600, False),  # the watch's sign expired or never came
        ("pod-1:aa", "pod-1:aa", NOW, False),  # the budget ends: a timeout is for the look to decide
        (None, "pod-1:aa", NOW + 600, False),  # the look rested on more than the pod
    ],
)
def test_a_safety_look_is_answered_in_redis_only_while_nothing_the_look_saw_changed(
    store: BuildStore, looked: str | None, source: str | None, deadline: float, quiet: bool
) -> None:
    build_id = create(store, req("web", "bitbucket-cloud"))
    park(store, build_id, Sign(looked, deadline) if looked else None, due=NOW)
    if source is not None:
        store.redis.set(keys.wait_sign(build_id), source)
    assert store.look_quietly([build_id], NOW, SAFETY) == ({build_id} if quiet else set())
    assert store.redis.zscore(keys.DUE, build_id) == (min(NOW + SAFETY, deadline) if quiet else NOW)
    # answered or not, the build is still parked: a wake-up sends its step
    assert store.wake(build_id) is not None


def test_a_build_not_parked_or_asked_to_stop_gets_a_real_safety_look(store: BuildStore) -> None:
    build_id = create(store, req("web", "bitbucket-cloud"))
    park(store, build_id, Sign("pod-1:aa", NOW + 600), due=NOW)
    store.redis.set(keys.wait_sign(build_id), "pod-1:aa")
    store.cancel(build_id)  # a cancel no wake source signs: if its wake-up is lost, the look must see it
    assert store.look_quietly([build_id], NOW, SAFETY) == set()
    assert store.wake(build_id) is not None  # still parked, one message for the look
    park(store, build_id, Sign("pod-1:aa", NOW + 600), due=NOW)
    assert store.wake(build_id) is not None  # a wake-up took it: its message is in flight
    assert store.look_quietly([build_id], NOW, SAFETY) == set()
