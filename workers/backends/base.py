"""The operations the pipeline needs from a cluster, the build facts it hands them, and the hooks a
backend offers the processes around the pipeline (the worker, beat, the CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from redis import Redis

from schemas.record import BuildRecord, BuildState
from schemas.repo_config import PodSpec, RepoConfig
from schemas.request import Revision
from schemas.settings import Settings
from workers.errors import PermanentError

if TYPE_CHECKING:
    from celery import Celery

    from store.builds import BuildStore


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
    pod: PodSpec
    # The two sides at the commits checkout resolved; a cluster re-does the merge from these.
    source: Revision
    target: Revision | None
    created: datetime  # the build's creation: the date of its merge commit
    fork: bool = False
    attempt: int = 1
    on_demand: bool = False
    # A webhook's build: git may fetch only over http(s) and ssh (`schemas.urls.GIT_ALLOW_PROTOCOL`).
    remote_only: bool = False
    # False for an untrusted pull request (approved or not): its pods are always `restricted`.
    trusted: bool = True

    @classmethod
    def from_record(cls, record: BuildRecord, checkout_dir: Path, log_dir: Path) -> BuildContext:
        if record.config is None or record.pod_spec is None or record.merge_commit is None:
            raise PermanentError("the build has no checked-out configuration (checkout did not finish)")
        return cls(
            build_id=record.id,
            name=record.name,
            job=record.job,
            number=record.number,
            merge_commit=record.merge_commit,
            checkout_dir=checkout_dir,
            log_dir=log_dir,
            config=record.config,
            pod=record.pod_spec,
            source=record.request.source.model_copy(update={"commit": record.source_commit}),
            target=(
                record.request.target.model_copy(update={"commit": record.target_commit})
                if record.request.target
                else None
            ),
            created=record.created,
            fork=record.request.fork,
            attempt=max(record.attempts, 1),
            on_demand=record.relaunch_on_demand,
            remote_only=record.request.remote_only,
            trusted=record.request.trusted,
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


@dataclass(frozen=True)
class WaitHint:
    """What a look that waits tells its parking (`ClusterBackend.wait_hint`). `sign`: what its
    answer rested on, in the form the backend's wake source writes to `keys.wait_sign` (a safety look
    then only compares the two). `within`: seconds by which to look again whatever wakes it (a claim
    by another worker that lapses then, a container about to accept an exec)."""

    sign: str | None = None
    within: float | None = None


class ClusterBackend(Protocol):
    """Every operation is safe to call twice: workers ack late and may be killed at any instant."""

    name: str

    def create_service(self, ctx: BuildContext) -> str: ...

    def create_volume(self, ctx: BuildContext) -> str: ...

    def create_pod(self, ctx: BuildContext) -> str: ...

    def setup_status(self, ctx: BuildContext) -> SetupStatus: ...

    def explain(self, ctx: BuildContext) -> str:
        """Anything that may say why setup is not complete, for the reason of a build that timed out
        waiting (the cluster's warnings about the pod, the containers' last words); may be empty."""
        ...

    def start_tests(self, ctx: BuildContext) -> None: ...

    def test_status(self, ctx: BuildContext) -> TestStatus | None: ...

    def start_rerun(self, ctx: BuildContext, argv: list[str]) -> None:
        """Run `argv` (known-flaky failed tests, again) as the tests ran: same container, same
        workspace; once per build, like `start_tests`."""
        ...

    def rerun_status(self, ctx: BuildContext) -> TestStatus | None:
        """As `test_status`, for the rerun."""
        ...

    def follow_tests(self, ctx: BuildContext, skip: int) -> Iterator[bytes]:
        """The test output of the build's current attempt as it grows, from byte `skip` on (where an
        earlier follower stopped); ends when the tests have (or the pod is gone). For the live log."""
        ...

    def wait_hint(self, ctx: BuildContext) -> WaitHint:
        """Called after a look that waits, about that look (`WaitHint`)."""
        ...

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        """A file of the build's workspace (a JUnit report), or None when it is not there."""
        ...

    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        """Every log of the build `name` (its containers', the test command's), saved under
        `log_dir` so they outlive teardown; called just before it."""
        ...

    def kept_until(self, state: BuildState, now: datetime) -> datetime | None:
        """Until when teardown leaves the pod of a build that ended in `state`, for debugging in it;
        None: remove it with everything else."""
        ...

    def teardown(self, name: str, keep_pods: bool = False) -> str | None:
        """Remove everything of the build `name`, found by name alone; returns what was removed, or
        None while deletions are still under way (the step looks again).
        With `keep_pods`, the pods stay for debugging (the garbage collector removes them later)."""
        ...


class BackendType(Protocol):
    """What a backend offers beyond one build's steps: made once per process, started with the worker,
    collecting what teardown missed. Each backend subpackage exports one as `BACKEND`."""

    name: str

    def create(self, settings: Settings, redis: Redis) -> ClusterBackend:
        """The backend a worker process's steps use."""
        ...

    def check(self, settings: Settings) -> str:
        """Can builds run here? Raises `PermanentError` or `TransientError` with a sentence, quickly;
        returns what was checked. Commands that need the backend call it before anything else."""
        ...

    def start_worker(self, app: Celery, settings: Settings) -> None:
        """Called once in a worker's main process when it is ready (the Kubernetes pod watch)."""
        ...

    def collect_garbage(self, settings: Settings, store: BuildStore, *, dry_run: bool) -> list[str]:
        """Delete (unless `dry_run`) what finished or vanished builds left behind; returns what."""
        ...

    def local_repo_url(self, settings: Settings, repo: Path) -> str:
        """Where the build fetches a repository given as a local path (`podci run --repo`)."""
        ...
