"""What the pipeline does next, as pure functions of the build record and a step's outcome.

Each step returns one of three outcomes; `apply` turns it into the record's next state. Nothing here
talks to Redis, Celery, git or a cluster, so the whole state machine is tested with tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.record import BuildRecord, BuildState, StepState

STEPS: tuple[str, ...] = (
    "checkout",
    "create_service",
    "create_volume",
    "create_pod",
    "wait_setup",
    "run_tests",
    "teardown",
    "report",
)
ALWAYS_RUN = ("teardown", "report")


@dataclass(frozen=True)
class Done:
    """The step finished; go on to the next one."""

    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Not there yet; look again later (the worker slot is freed meanwhile)."""

    detail: str = ""


@dataclass(frozen=True)
class Stop:
    """The build's verdict is known before the end: skip to teardown."""

    state: BuildState
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Relaunch:
    """The pod was lost (not failed): start a new attempt from `create_pod`, same Service and volume."""

    reason: str
    on_demand: bool = False


Outcome = Done | Wait | Stop | Relaunch
RELAUNCHED_STEPS = ("create_pod", "wait_setup", "run_tests")


def next_step(step: str) -> str | None:
    index = STEPS.index(step)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


def recheck_delay(waited: float, low: float, high: float) -> float:
    """Look again after a tenth of the time waited so far, within [low, high]: quick for fast setups,
    and a long test run costs a few dozen looks, not one every fraction of a second."""
    return max(low, min(high, waited / 10))


def retry_delay(tries: int, retry_after: float | None, fraction: float, cap: float = 60.0) -> float:
    """Seconds before retry `tries + 1` of a step that met a passing failure: between half and all of
    2**tries (at most `cap`), `fraction` (0..1, random) placing it, and never before `retry_after`.

    Half is kept: with delays drawn from [0, 2**tries] ("full jitter"), the first retries often came
    after 0 s, and the six tries a step has could all land in one burst of API errors a second long."""
    ceiling = min(cap, 2.0**tries)
    return max(ceiling / 2 + fraction * ceiling / 2, retry_after or 0.0)


def start(record: BuildRecord, step: str, now: datetime) -> None:
    """Mark `step` as running (first time only) and the build as started."""
    entry = record.step_record(step)
    if entry.state is StepState.pending:
        entry.state = StepState.running
        entry.started = now
    if record.state is BuildState.queued:
        record.state = BuildState.running
        record.started = now


def apply(record: BuildRecord, step: str, outcome: Outcome, now: datetime) -> None:
    """Record `outcome` of `step` and point the record at what runs next (or complete it)."""
    entry = record.step_record(step)
    record.seq += 1
    if isinstance(outcome, Wait):
        entry.detail = outcome.detail
        entry.checks += 1
        return
    if isinstance(outcome, Relaunch):
        _relaunch(record, outcome)
        return
    for name, value in outcome.fields.items():
        setattr(record, name, value)
    entry.finished = now
    if isinstance(outcome, Done):
        entry.state = StepState.succeeded
        entry.detail = outcome.detail or entry.detail
        _advance(record, step, now)
        return
    # A step stopped before it began (a cancelled build still queued) did not fail: it never ran.
    entry.state = StepState.failed if entry.state is StepState.running else StepState.skipped
    entry.detail = outcome.reason
    if not record.state.final:
        record.state = outcome.state
        record.reason = outcome.reason
    elif outcome.reason not in record.reason.split("; "):
        record.reason = f"{record.reason}; {outcome.reason}" if record.reason else outcome.reason
    _skip_to_teardown(record, step, now)


def _relaunch(record: BuildRecord, outcome: Relaunch) -> None:
    if record.pods and not record.pods[-1].ended:
        record.pods[-1].ended = outcome.reason
    record.relaunch_on_demand = outcome.on_demand
    for entry in record.steps:
        if entry.name in RELAUNCHED_STEPS:
            entry.state, entry.started, entry.finished, entry.checks = StepState.pending, None, None, 0
            entry.detail = f"relaunching: {outcome.reason}" if entry.name == "create_pod" else ""
    record.step = "create_pod"


def _advance(record: BuildRecord, step: str, now: datetime) -> None:
    following = next_step(step)
    if step == "run_tests" and not record.state.final:
        record.state = BuildState.succeeded
    if following is None:
        if not record.state.final:
            record.state = BuildState.error
            record.reason = record.reason or "the pipeline ended without a verdict"
        record.finished = now
        record.step = ""
        return
    record.step = following


def _skip_to_teardown(record: BuildRecord, step: str, now: datetime) -> None:
    if step in ALWAYS_RUN:
        _advance(record, step, now)
        return
    for entry in record.steps:
        if entry.name not in ALWAYS_RUN and entry.state is StepState.pending:
            entry.state = StepState.skipped
    record.step = "teardown"


def cancel_outcome(record: BuildRecord, step: str) -> Stop | None:
    """A cancelled build stops at the next step boundary; teardown and report still run."""
    if record.cancel_requested and step not in ALWAYS_RUN:
        return Stop(BuildState.stopped, record.cancel_reason or "cancelled")
    return None
