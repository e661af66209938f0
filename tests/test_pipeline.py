"""workers/pipeline.py: the build's state machine, one table per rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.record import BuildRecord, BuildState, PodAttempt, Step, StepRecord, StepState
from schemas.record import TestResult as Result  # aliased: pytest would try to collect `Test*`
from schemas.repo_config import PodSpec, RepoConfig
from schemas.request import BuildRequest, Revision
from workers.pipeline import (
    STEPS,
    CheckedOut,
    Done,
    PodLaunched,
    RanTests,
    ServiceCreated,
    Stop,
    TornDown,
    Wait,
    apply,
    cancel_outcome,
    next_look,
    next_step,
    retry_delay,
    running_detail,
    start,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=3)
SEQ = 7


def record(step: Step, state: BuildState = BuildState.running, reason: str = "") -> BuildRecord:
    """A build that has finished every step before `step` and is running `step`."""
    req = BuildRequest(job="web", repo="team/web", source=Revision(clone_url="/srv/web", ref="main"))
    rec = BuildRecord(
        id="b1", job="web", number=1, name="web-1", request=req, steps=[StepRecord(name=s) for s in STEPS],
        state=state, reason=reason, seq=SEQ, step=step,
    )  # fmt: skip
    for entry in rec.steps[: STEPS.index(step)]:
        entry.state = StepState.succeeded
    rec.step_record(step).state = StepState.running
    return rec


def states(rec: BuildRecord) -> dict[str, StepState]:
    return {s.name: s.state for s in rec.steps}


@pytest.mark.parametrize(
    ("step", "expected"),
    [(Step.checkout, Step.create_service), (Step.create_service, Step.create_volume),
     (Step.create_volume, Step.create_pod), (Step.create_pod, Step.wait_setup),
     (Step.wait_setup, Step.run_tests), (Step.run_tests, Step.teardown), (Step.teardown, None)],
)  # fmt: skip
def test_next_step(step: Step, expected: Step | None) -> None:
    assert next_step(step) == expected


@pytest.mark.parametrize(
    ("step", "following"),
    [
        (Step.checkout, Step.create_service),
        (Step.create_pod, Step.wait_setup),
        (Step.wait_setup, Step.run_tests),
    ],
)
def test_done_advances_to_the_next_step(step: str, following: str) -> None:
    rec = record(step)
    apply(rec, step, Done("ok"), NOW)
    entry = rec.step_record(step)
    assert (entry.state, entry.finished, entry.detail) == (StepState.succeeded, NOW, "ok")
    assert rec.step == following
    assert rec.state is BuildState.running
    assert rec.finished is None


def test_done_applies_its_result_and_keeps_an_earlier_detail_when_given_none() -> None:
    rec = record(Step.create_service)
    rec.step_record(Step.create_service).detail = "creating"
    apply(rec, Step.create_service, Done(result=ServiceCreated("web-1")), NOW)
    assert rec.service == "web-1"
    assert rec.step_record(Step.create_service).detail == "creating"


def test_each_result_fills_its_own_fields() -> None:
    rec = record(Step.checkout)
    config = RepoConfig.model_validate({"test": {"container": "app", "command": "true"}})
    pod = PodSpec.model_validate({"containers": [{"name": "app", "image": "alpine", "command": ["true"]}]})
    CheckedOut("m" * 40, "s" * 40, None, config, pod).apply_to(rec)
    assert (rec.merge_commit, rec.source_commit, rec.target_commit) == ("m" * 40, "s" * 40, None)
    assert (rec.config, rec.pod_spec) == (config, pod)
    pods = (PodAttempt(attempt=1, pod="web-1", ended="evicted"), PodAttempt(attempt=2, pod="web-1-a2"))
    PodLaunched(pods).apply_to(rec)
    assert (rec.attempts, [p.pod for p in rec.pods]) == (2, ["web-1", "web-1-a2"])
    TornDown({"tests": "/logs/tests.log"}, NOW).apply_to(rec)
    assert (rec.logs, rec.pod_kept_until) == ({"tests": "/logs/tests.log"}, NOW)


@pytest.mark.parametrize(("step", "detail"), [(Step.wait_setup, "waiting for .ready"), (Step.run_tests, "")])
def test_wait_keeps_the_step_and_counts_the_check(step: str, detail: str) -> None:
    rec = record(step)
    apply(rec, step, Wait(detail), NOW)
    apply(rec, step, Wait(detail), NOW)
    entry = rec.step_record(step)
    assert (rec.step, entry.state, entry.checks, entry.detail) == (step, StepState.running, 2, detail)
    assert entry.finished is None
    assert rec.seq == SEQ + 2


@pytest.mark.parametrize(
    ("step", "skipped"),
    [(Step.checkout, STEPS[1:6]), (Step.create_pod, (Step.wait_setup, Step.run_tests)), (Step.run_tests, ())],
)
def test_stop_before_teardown_skips_to_teardown(step: str, skipped: tuple[str, ...]) -> None:
    rec = record(step)
    apply(
        rec,
        step,
        Stop(BuildState.failed, "pod failed", RanTests(Result(exit_code=3, log_path="t"))),
        NOW,
    )
    assert (rec.state, rec.reason, rec.step) == (BuildState.failed, "pod failed", Step.teardown)
    assert rec.tests is not None and rec.tests.exit_code == 3
    entry = rec.step_record(step)
    assert (entry.state, entry.detail, entry.finished) == (StepState.failed, "pod failed", NOW)
    assert [n for n, s in states(rec).items() if s is StepState.skipped] == list(skipped)
    assert states(rec)[Step.teardown] is StepState.pending


@pytest.mark.parametrize(
    ("state", "reason", "stop_reason", "expected_reason"),
    [(BuildState.failed, "tests failed", "volume busy", "tests failed; volume busy"),
     (BuildState.succeeded, "", "volume busy", "volume busy"),
     (BuildState.failed, "tests failed; volume busy", "volume busy", "tests failed; volume busy")],
)  # fmt: skip
def test_stop_during_teardown_keeps_the_verdict(
    state: BuildState, reason: str, stop_reason: str, expected_reason: str
) -> None:
    rec = record(Step.teardown, state, reason)
    apply(rec, Step.teardown, Stop(BuildState.error, stop_reason), NOW)
    assert (rec.state, rec.reason, rec.step) == (state, expected_reason, None)
    assert rec.step_record(Step.teardown).state is StepState.failed
    assert rec.finished == NOW


def test_stop_before_a_step_began_marks_it_skipped_not_failed() -> None:
    rec = record(Step.checkout, BuildState.queued)
    rec.step_record(Step.checkout).state = StepState.pending  # still waiting for admission
    apply(rec, Step.checkout, Stop(BuildState.stopped, "superseded by build web-2"), NOW)
    assert (rec.state, rec.reason, rec.step) == (
        BuildState.stopped,
        "superseded by build web-2",
        Step.teardown,
    )
    assert rec.step_record(Step.checkout).state is StepState.skipped


@pytest.mark.parametrize(
    ("state", "expected"),
    [(BuildState.running, BuildState.succeeded), (BuildState.failed, BuildState.failed),
     (BuildState.stopped, BuildState.stopped)],
)  # fmt: skip
def test_done_on_run_tests_sets_succeeded_only_without_a_verdict(
    state: BuildState, expected: BuildState
) -> None:
    rec = record(Step.run_tests, state)
    apply(rec, Step.run_tests, Done(), NOW)
    assert (rec.state, rec.step) == (expected, Step.teardown)


@pytest.mark.parametrize(
    ("state", "reason", "expected_state", "expected_reason"),
    [(BuildState.succeeded, "", BuildState.succeeded, ""),
     (BuildState.failed, "tests failed", BuildState.failed, "tests failed"),
     (BuildState.running, "", BuildState.error, "the pipeline ended without a verdict"),
     (BuildState.queued, "odd", BuildState.error, "odd")],
)  # fmt: skip
def test_done_on_teardown_finishes_the_build(
    state: BuildState, reason: str, expected_state: BuildState, expected_reason: str
) -> None:
    rec = record(Step.teardown, state, reason)
    apply(rec, Step.teardown, Done(), NOW)
    assert (rec.finished, rec.step, rec.state, rec.reason) == (NOW, None, expected_state, expected_reason)
    assert rec.complete


@pytest.mark.parametrize("outcome", [Done(), Wait(), Stop(BuildState.failed, "x")])
@pytest.mark.parametrize("step", [Step.checkout, Step.run_tests, Step.teardown])
def test_every_apply_bumps_seq_by_one(step: Step, outcome: Done | Wait | Stop) -> None:
    rec = record(step, BuildState.failed if step is Step.teardown else BuildState.running)
    apply(rec, step, outcome, NOW)
    assert rec.seq == SEQ + 1


def test_start_marks_step_and_build_running_once() -> None:
    rec = record(Step.checkout, BuildState.queued)
    rec.step_record(Step.checkout).state = StepState.pending
    start(rec, Step.checkout, T0)
    start(rec, Step.checkout, NOW)  # a redelivered message must not move the start times
    entry = rec.step_record(Step.checkout)
    assert (entry.state, entry.started) == (StepState.running, T0)
    assert (rec.state, rec.started) == (BuildState.running, T0)


@pytest.mark.parametrize("state", [BuildState.running, BuildState.failed])
def test_start_leaves_a_started_build_alone(state: BuildState) -> None:
    rec = record(Step.teardown, state)
    rec.step_record(Step.teardown).state = StepState.pending
    start(rec, Step.teardown, NOW)
    assert (rec.state, rec.started, rec.step_record(Step.teardown).started) == (state, None, NOW)


@pytest.mark.parametrize(
    ("budget_left", "safety", "within", "expected"),
    [
        (None, 60, None, 60),
        (300, 60, None, 60),
        (10, 60, None, 10.5),
        (0.1, 60, None, 0.6),
        (-5, 60, None, 0.5),
        (None, 5, None, 5),
        # a look that asked to come again sooner (a claim lapsing, a container about to run)
        (300, 60, 15.5, 15.5),
        (10, 60, 15.5, 10.5),
        (300, 60, 0.1, 0.5),
    ],
)
def test_a_parked_build_looks_at_its_safety_interval_or_when_its_budget_ends(
    budget_left: float | None, safety: float, within: float | None, expected: float
) -> None:
    assert next_look(budget_left, safety, within) == pytest.approx(expected)


def test_waiting_parks_the_build_and_anything_else_unparks_it() -> None:
    rec = record(Step.wait_setup)
    apply(rec, Step.wait_setup, Wait("starting", 30), NOW)
    assert rec.parked
    apply(rec, Step.wait_setup, Done("ready"), NOW)
    assert not rec.parked and rec.step is Step.run_tests


@pytest.mark.parametrize(
    ("tries", "retry_after", "fraction", "expected"),
    [(0, None, 0.0, 0.5), (0, None, 1.0, 1.0), (1, None, 0.5, 1.5), (3, None, 0.0, 4.0),
     (10, None, 0.0, 30.0), (10, None, 1.0, 60.0), (0, 2.0, 1.0, 2.0), (4, 2.0, 0.0, 8.0)],
)  # fmt: skip
def test_retry_delay_keeps_half_of_the_backoff(
    tries: int, retry_after: float | None, fraction: float, expected: float
) -> None:
    assert retry_delay(tries, retry_after, fraction) == pytest.approx(expected)


def test_the_retries_of_a_step_cannot_all_land_in_one_burst_of_api_errors() -> None:
    # The slow-cluster fault run: 3-10 failed requests in a row, a second or two apart. With delays from
    # [0, 2**n] a step's five retries could all come at once and fail the build on a blip.
    assert sum(retry_delay(tries, None, 0.0) for tries in range(5)) >= 15


@pytest.mark.parametrize(
    ("step", "cancel", "stops"),
    [(Step.checkout, True, True), (Step.wait_setup, True, True), (Step.run_tests, True, True),
     (Step.teardown, True, False),
     (Step.checkout, False, False), (Step.run_tests, False, False)],
)  # fmt: skip
def test_cancel_outcome(step: str, cancel: bool, stops: bool) -> None:
    rec = record(step)
    rec.cancel_requested = cancel
    outcome = cancel_outcome(rec, step)
    if stops:
        assert isinstance(outcome, Stop)
        assert (outcome.state, outcome.reason) == (BuildState.stopped, "cancelled")
    else:
        assert outcome is None


@pytest.mark.parametrize(
    ("target", "clone_url", "detail"),
    [(None, "/srv/web", "fetching `main` from /srv/web"),
     ("develop", "https://x-token-auth:s3cret@bitbucket.org/team/web.git",
      "fetching `main` and `develop` from https://bitbucket.org/team/web.git")],
)  # fmt: skip
def test_a_started_checkout_says_what_it_fetches_and_from_where(
    target: str | None, clone_url: str, detail: str
) -> None:
    rec = record(Step.checkout, BuildState.queued)
    source = Revision(clone_url=clone_url, ref="main")
    into = None if target is None else Revision(clone_url=clone_url, ref=target)
    rec.request = rec.request.model_copy(update={"source": source, "target": into})
    rec.step_record(Step.checkout).state = StepState.pending
    start(rec, Step.checkout, NOW)
    assert rec.step_record(Step.checkout).detail == detail and "s3cret" not in detail
    assert running_detail(rec, Step.run_tests) == ""
