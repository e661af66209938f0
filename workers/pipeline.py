"""What the pipeline does next, as pure functions of the build record and a step's outcome.

Each step returns one of four outcomes; `apply` turns it into the record's next state. What a step
learned (the commits, the pods, the test result) travels in a typed result that knows which fields of
the record it fills. Nothing here talks to Redis, Celery, git or a cluster, so the whole state machine
is tested with tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.public import without_userinfo
from schemas.record import BuildRecord, BuildState, PodAttempt, Step, StepState, TestResult
from schemas.repo_config import PodSpec, RepoConfig

STEPS: tuple[Step, ...] = tuple(Step)
# A record is kept for PODCI_RETENTION_DAYS: its free text is bounded, whatever a step reports (git's
# errors, a container's last output). The full text stays in the logs.
DETAIL_MAX, REASON_MAX = 1000, 2000
ALWAYS_RUN = (Step.teardown,)  # runs even after a stop, so nothing of a build outlives it
RELAUNCHED_STEPS = (Step.create_pod, Step.wait_setup, Step.run_tests)


@dataclass(frozen=True)
class CheckedOut:
    """Checkout merged the code and read the configuration the build runs with."""

    merge_commit: str
    source_commit: str
    target_commit: str | None
    config: RepoConfig
    pod_spec: PodSpec

    def apply_to(self, record: BuildRecord) -> None:
        record.merge_commit, record.source_commit = self.merge_commit, self.source_commit
        record.target_commit = self.target_commit
        record.config, record.pod_spec = self.config, self.pod_spec


@dataclass(frozen=True)
class ServiceCreated:
    service: str

    def apply_to(self, record: BuildRecord) -> None:
        record.service = self.service


@dataclass(frozen=True)
class PodLaunched:
    """Every launch so far; the last one is the pod now starting."""

    pods: tuple[PodAttempt, ...]

    def apply_to(self, record: BuildRecord) -> None:
        record.pods = list(self.pods)
        record.attempts = self.pods[-1].attempt


@dataclass(frozen=True)
class RanTests:
    tests: TestResult
    warnings: tuple[str, ...] = ()  # added to the record's, once each (a look may run twice)

    def apply_to(self, record: BuildRecord) -> None:
        record.tests = self.tests
        record.warnings += [w for w in self.warnings if w not in record.warnings]


@dataclass(frozen=True)
class TornDown:
    """The logs saved before the build's objects went, and until when a failed build's pod is kept."""

    logs: dict[str, str]
    pod_kept_until: datetime | None = None

    def apply_to(self, record: BuildRecord) -> None:
        record.logs = dict(self.logs)
        record.pod_kept_until = self.pod_kept_until


StepResult = CheckedOut | ServiceCreated | PodLaunched | RanTests | TornDown


@dataclass(frozen=True)
class Done:
    """The step finished; go on to the next one."""

    detail: str = ""
    result: StepResult | None = None


@dataclass(frozen=True)
class Wait:
    """Not there yet: the build is parked until what it waits for wakes it (the worker slot is freed
    meanwhile). `budget_left`: seconds until the step's budget ends, when it has one; the build looks
    again by then on its own. With a `sign`, a safety look before then only compares it with the
    wake source's (`BuildStore.look_quietly`) and runs the step only when they differ."""

    detail: str = ""
    budget_left: float | None = None
    sign: str | None = None  # what the answer rested on (`WaitHint`)
    within: float | None = None  # look again by then, whatever wakes it (`WaitHint`)
    # What the look learned that the next must not learn again (the first test run's result, kept
    # before a rerun overwrites its report), and whether that next look should come at once.
    result: StepResult | None = None
    again: bool = False


@dataclass(frozen=True)
class Stop:
    """The build's verdict is known before the end: skip to teardown."""

    state: BuildState
    reason: str
    result: StepResult | None = None


@dataclass(frozen=True)
class Relaunch:
    """The pod was lost (not failed): start a new attempt from `create_pod`, same Service and volume."""

    reason: str
    on_demand: bool = False


Outcome = Done | Wait | Stop | Relaunch


def next_step(step: Step) -> Step | None:
    index = STEPS.index(step)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


def waited(record: BuildRecord, step: Step, now: datetime) -> float:
    """Seconds since `step` first started (0 before it did): what its budgets are measured against."""
    started = record.step_record(step).started
    return 0.0 if started is None else (now - started).total_seconds()


def next_look(budget_left: float | None, safety: float, within: float | None = None) -> float:
    """Seconds until a parked build looks on its own: the safety-net interval, or just after its budget
    ends when that is sooner (so a timeout is noticed without a wake-up), or `within` (what the look
    asked for) when that is sooner still."""
    asked = None if within is None else max(0.5, within)
    return min(t for t in (safety, budget_ends(budget_left), asked) if t is not None)


def budget_ends(budget_left: float | None) -> float | None:
    """Seconds until the look that must run whatever a sign says, just after the step's budget ends
    (a timeout is a decision no wake source signs); None without a budget."""
    return None if budget_left is None else max(0.5, budget_left + 0.5)


def retry_delay(tries: int, retry_after: float | None, fraction: float, cap: float = 60.0) -> float:
    """Seconds before retry `tries + 1` of a step that met a passing failure: between half and all of
    2**tries (at most `cap`), `fraction` (0..1, random) placing it, and never before `retry_after`.

    Half is kept: with delays drawn from [0, 2**tries] ("full jitter"), the first retries often came
    after 0 s, and the six tries a step has could all land in one burst of API errors a second long."""
    ceiling = min(cap, 2.0**tries)
    return max(ceiling / 2 + fraction * ceiling / 2, retry_after or 0.0)


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def running_detail(record: BuildRecord, step: Step) -> str:
    """What a step says while it runs, before any outcome of its own: a checkout over a slow link (or
    through DNS retries) runs for long, and an empty detail looked like a hang."""
    if step is not Step.checkout:
        return ""
    source, target = record.request.source, record.request.target
    into = f" and `{target.ref}`" if target is not None else ""
    return f"fetching `{source.ref}`{into} from {without_userinfo(source.clone_url)}"


def start(record: BuildRecord, step: Step, now: datetime) -> None:
    """Mark `step` as running (first time only) and the build as started."""
    entry = record.step_record(step)
    if entry.state is StepState.pending:
        entry.state = StepState.running
        entry.started = now
        entry.detail = entry.detail or running_detail(record, step)
    if record.state is BuildState.queued:
        record.state = BuildState.running
        record.started = now


def apply(
    record: BuildRecord, step: Step, outcome: Outcome, now: datetime, started: datetime | None = None
) -> None:
    """Record `outcome` of `step` and point the record at what runs next (or complete it). `started`:
    when the look began, for a step that ran (its first look marks it running then, in this same
    write, rather than in one of its own)."""
    if started is not None:
        start(record, step, started)
    entry = record.step_record(step)
    record.seq += 1
    record.parked = isinstance(outcome, Wait)
    if isinstance(outcome, Wait):
        entry.detail = bounded(outcome.detail, DETAIL_MAX)
        entry.checks += 1
        if outcome.result is not None:
            outcome.result.apply_to(record)
        return
    if isinstance(outcome, Relaunch):
        _relaunch(record, outcome)
        return
    if outcome.result is not None:
        outcome.result.apply_to(record)
    entry.finished = now
    if isinstance(outcome, Done):
        entry.state = StepState.succeeded
        entry.detail = bounded(outcome.detail, DETAIL_MAX) or entry.detail
        _advance(record, step, now)
        return
    # A step stopped before it began (a cancelled build still queued) did not fail: it never ran.
    entry.state = StepState.failed if entry.state is StepState.running else StepState.skipped
    reason = bounded(outcome.reason, REASON_MAX)
    entry.detail = bounded(reason, DETAIL_MAX)
    if not record.state.final:
        record.state = outcome.state
        record.reason = reason
    elif reason not in record.reason.split("; "):
        record.reason = bounded(f"{record.reason}; {reason}" if record.reason else reason, REASON_MAX)
    _skip_to_teardown(record, step, now)


def _relaunch(record: BuildRecord, outcome: Relaunch) -> None:
    if record.pods and not record.pods[-1].ended:
        record.pods[-1].ended = outcome.reason
    record.relaunch_on_demand = outcome.on_demand
    for entry in record.steps:
        if entry.name in RELAUNCHED_STEPS:
            entry.state, entry.started, entry.finished, entry.checks = StepState.pending, None, None, 0
            detail = f"relaunching: {outcome.reason}" if entry.name is Step.create_pod else ""
            entry.detail = bounded(detail, DETAIL_MAX)
    record.step = Step.create_pod


def _advance(record: BuildRecord, step: Step, now: datetime) -> None:
    following = next_step(step)
    if step is Step.run_tests and not record.state.final:
        record.state = BuildState.succeeded
    if following is None:
        if not record.state.final:
            record.state = BuildState.error
            record.reason = record.reason or "the pipeline ended without a verdict"
        record.finished = now
        record.step = None
        return
    record.step = following


def _skip_to_teardown(record: BuildRecord, step: Step, now: datetime) -> None:
    if step in ALWAYS_RUN:
        _advance(record, step, now)
        return
    for entry in record.steps:
        if entry.name not in ALWAYS_RUN and entry.state is StepState.pending:
            entry.state = StepState.skipped
    record.step = Step.teardown


def cancel_outcome(record: BuildRecord, step: Step) -> Stop | None:
    """A cancelled build stops at the next step boundary; teardown still runs."""
    if record.cancel_requested and step not in ALWAYS_RUN:
        return Stop(BuildState.stopped, record.cancel_reason or "cancelled")
    return None
