"""The operations the pipeline needs from a cluster, and the build facts it hands them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from schemas.record import BuildRecord
from schemas.repo_config import PodSpec, RepoConfig
from schemas.request import Revision
from workers.errors import PermanentError


@dataclass(frozen=True)
class BuildContext:
    """Everything a backend needs about one build, derived from its record."""

    build_id: str
    name: str
    job: str
    number: int
    merge_commit: str
    checkout_dir: Path
    log_dir: Path
    config: RepoConfig
    pod_spec: dict[str, Any]
    # The two sides at the commits checkout resolved; a cluster re-does the merge from these.
    source: Revision
    target: Revision | None
    fork: bool = False
    attempt: int = 1
    on_demand: bool = False

    @property
    def pod(self) -> PodSpec:
        return PodSpec.model_validate(self.pod_spec)

    @classmethod
    def from_record(cls, record: BuildRecord, checkout_dir: Path) -> BuildContext:
        if record.config is None or record.pod_spec is None or record.merge_commit is None:
            raise PermanentError("the build has no checked-out configuration (checkout did not finish)")
        return cls(
            build_id=record.id,
            name=record.name,
            job=record.job,
            number=record.number,
            merge_commit=record.merge_commit,
            checkout_dir=checkout_dir,
            log_dir=Path(record.log_dir),
            config=RepoConfig.model_validate(record.config),
            pod_spec=record.pod_spec,
            source=record.request.source.model_copy(update={"commit": record.source_commit}),
            target=(
                record.request.target.model_copy(update={"commit": record.target_commit})
                if record.request.target
                else None
            ),
            fork=record.request.fork,
            attempt=max(record.attempts, 1),
            on_demand=record.relaunch_on_demand,
        )


@dataclass(frozen=True)
class SetupStatus:
    ready: bool
    detail: str
    failure: str | None = None  # set when setup can never complete (a container died)
    unscheduled: bool = False  # waiting for capacity: its own, usually longer, budget


@dataclass(frozen=True)
class TestStatus:
    """None from `test_status` means still running."""

    exit_code: int
    log_path: Path
    reason: str | None = None  # when the exit code alone does not say it (a container OOMKilled)


class ClusterBackend(Protocol):
    """Every operation is safe to call twice: workers ack late and may be killed at any instant."""

    name: str

    def create_service(self, ctx: BuildContext) -> str: ...

    def create_volume(self, ctx: BuildContext) -> str: ...

    def create_pod(self, ctx: BuildContext) -> str: ...

    def setup_status(self, ctx: BuildContext) -> SetupStatus: ...

    def start_tests(self, ctx: BuildContext) -> None: ...

    def test_status(self, ctx: BuildContext) -> TestStatus | None: ...

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        """A file of the build's workspace (a JUnit report), or None when it is not there."""
        ...

    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        """Every log of the build `name` (its containers', the test command's), saved under
        `log_dir` so they outlive teardown; called just before it."""
        ...

    def teardown(self, name: str, keep_pods: bool = False) -> str | None:
        """Remove everything of the build `name`, found by name alone; returns what was removed, or
        None while deletions are still under way (the step looks again).
        With `keep_pods`, the pods stay for debugging (the garbage collector removes them later)."""
        ...
