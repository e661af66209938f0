"""The build record: one per build, kept in Redis, the single source of truth about a build."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from schemas.repo_config import PodSpec, RepoConfig
from schemas.request import BuildRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


class BuildState(StrEnum):
    # A pull request of a fork or an untrusted author: nothing runs until a trusted person comments
    # `/podci ok-to-test` on it (then `queued`). Shown as "waiting for approval".
    awaiting_approval = "awaiting_approval"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # the tests failed (or the merge did): the author's to fix, never retried
    error = "error"  # the infrastructure gave up
    stopped = "stopped"  # superseded or cancelled

    @property
    def final(self) -> bool:
        return self not in (BuildState.awaiting_approval, BuildState.queued, BuildState.running)

    @property
    def label(self) -> str:
        """How pages and statuses say it."""
        return "waiting for approval" if self is BuildState.awaiting_approval else self.value


class Step(StrEnum):
    """The pipeline's steps, in the order they run (each is the Celery task `podci.<step>`)."""

    checkout = "checkout"
    create_service = "create_service"
    create_volume = "create_volume"
    create_pod = "create_pod"
    wait_setup = "wait_setup"
    run_tests = "run_tests"
    teardown = "teardown"


class StepState(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"


class StepRecord(BaseModel):
    name: Step
    state: StepState = StepState.pending
    started: datetime | None = None
    finished: datetime | None = None
    detail: str = ""
    checks: int = Field(default=0, description="how many times a waiting step looked")

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return ((self.finished or utcnow()) - self.started).total_seconds()


class TestCaseFailure(BaseModel):
    name: str  # `classname.name` as JUnit XML gives it
    file: str = ""  # the testcase's `file` attribute, when the JUnit writer gives one
    line: int | None = None  # and its `line` attribute
    message: str = ""
    text: str = ""  # the failure element's body (a traceback), for the first failures only
    # Set when this test is known to be flaky in the repository (it failed and passed on one commit
    # lately): "flaky: 3 of the last 20 runs failed". Pages and annotations show it beside the failure.
    flaky_note: str = ""


class Rerun(BaseModel):
    """The failed tests run once more (`.podci.yml` `flaky: {rerun: 1}`), all known to be flaky.
    Kept in the record before the rerun starts, so a look that runs twice never parses the rerun's
    report as the first run's."""

    tests: list[str]
    exit_code: int | None = None  # None while the rerun has not finished
    log_path: str = ""


class TestResult(BaseModel):
    exit_code: int
    log_path: str
    log_tail: str = ""
    # From the JUnit XML named by `.podci.yml` (`test.junit`), when there is one.
    total: int | None = None
    failed: int | None = None
    skipped: int | None = None
    failures: list[TestCaseFailure] = []
    rerun: Rerun | None = None


class PodAttempt(BaseModel):
    """One launch of the build's pod; a relaunch after pod loss adds another."""

    attempt: int
    pod: str
    started: datetime = Field(default_factory=lambda: utcnow())
    ended: str = ""  # why this launch ended early (pod lost), empty while current


class BuildRecord(BaseModel):
    id: str
    job: str
    number: int
    name: str = Field(description="DNS-1123 name shared by the build's Service, volume and pod")
    request: BuildRequest
    state: BuildState = BuildState.queued
    reason: str = ""
    attempts: int = 0
    steps: list[StepRecord]
    created: datetime = Field(default_factory=utcnow)
    started: datetime | None = None
    finished: datetime | None = None
    reported: dict[str, str] = {}
    merge_commit: str | None = None
    source_commit: str | None = None
    target_commit: str | None = None
    config: RepoConfig | None = Field(default=None, description="the validated .podci.yml")
    pod_spec: PodSpec | None = Field(default=None, description="the validated pod template spec")
    tests: TestResult | None = None
    pods: list[PodAttempt] = []
    relaunch_on_demand: bool = False  # the last loss was a node's: relaunch off spot capacity
    pod_kept_until: datetime | None = None  # a failed build's pod, left for `kubectl exec` until then
    service: str = ""
    logs: dict[str, str] = Field(
        default={}, description="container (and `tests`) -> log file, kept after teardown"
    )
    log_dir: str = ""
    # What passed but deserves a look: "passed only on rerun: ..." (a build whose only failures were
    # known-flaky tests that passed when run again). Shown on the page; empty in older records.
    warnings: list[str] = []
    cancel_requested: bool = False
    cancel_reason: str = ""
    approved_by: str = Field(
        default="", description="who commented /podci ok-to-test, for an untrusted pull request"
    )
    # A retry (`podci retry`, the page's button, `/podci retest`) is a new build of the same request;
    # the two records name each other, so either page leads to the other. Empty in older records.
    retry_of: str = Field(default="", description="the build this one retries")
    retried_as: str = Field(default="", description="the build that retries this one")
    # Fencing: the pipeline's single live message carries this number; a message with an older one
    # is a duplicate (a redelivery or a re-kick) and is dropped. `step` names what runs next.
    seq: int = 0
    step: Step | None = None
    parked: bool = False  # the step waits to be woken (or for its safety look), no message in flight

    @field_validator("steps", mode="before")
    @classmethod
    def _known_steps(cls, steps: Any) -> Any:
        """Records written before a step was removed (`report`) still load; the gone step is dropped."""
        if isinstance(steps, list):
            return [s for s in steps if not isinstance(s, dict) or s.get("name") in Step.__members__]
        return steps

    @field_validator("step", mode="before")
    @classmethod
    def _no_step(cls, step: Any) -> Any:
        return None if step in ("", "report") else step

    def step_record(self, name: Step) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    @property
    def complete(self) -> bool:
        return self.finished is not None
