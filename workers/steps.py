"""One function per pipeline step: look at the world, act (idempotently), say what happened.

Each returns an outcome from `workers.pipeline`; none sleeps. Waiting steps return `Wait` and are
called again later, so a build that waits costs a record in Redis, not a worker slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.record import BuildRecord, BuildState, PodAttempt, TestCaseFailure, TestResult, utcnow
from schemas.settings import Settings
from workers import gitops
from workers.backends.base import BuildContext, ClusterBackend
from workers.junit import JUnitError, parse_junit
from workers.logtail import tail
from workers.pipeline import Done, Outcome, Stop, Wait
from workers.repo_config import CONFIG_FILE, ConfigError, load

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    backend: ClusterBackend

    def context(self, record: BuildRecord) -> BuildContext:
        return BuildContext.from_record(record, self.settings.checkouts_dir / record.name)


def _waited(record: BuildRecord, step: str) -> float:
    started = record.step_record(step).started
    return 0.0 if started is None else (utcnow() - started).total_seconds()


def checkout(rt: Runtime, record: BuildRecord) -> Outcome:
    dest = rt.settings.checkouts_dir / record.name
    result = gitops.prepare(record.request, dest)
    if result.commit is None:
        files = ", ".join(result.conflicts)
        target = record.request.target.ref if record.request.target else "?"
        return Stop(BuildState.failed, f"merge conflict: `{record.request.source.ref}` does not merge "
                    f"cleanly into `{target}`; conflicting files: {files}")  # fmt: skip
    # A fork's pull request must not choose its own pod template: read the config from the target.
    trusted = result.target_commit if record.request.fork and result.target_commit else result.commit
    try:
        loaded = load(
            gitops.read_file(dest, trusted, CONFIG_FILE), lambda path: gitops.read_file(dest, trusted, path)
        )
    except ConfigError as exc:
        return Stop(BuildState.error, str(exc))
    merged = (
        f"merged {result.source_commit[:12]} into {result.target_commit[:12]}"
        if result.target_commit
        else (f"checked out {result.source_commit[:12]}")
    )
    return Done(
        f"{merged} -> {result.commit[:12]}",
        fields={
            "merge_commit": result.commit,
            "config": loaded.config.model_dump(mode="json"),
            "pod_spec": loaded.pod_spec,
        },
    )


def create_service(rt: Runtime, record: BuildRecord) -> Outcome:
    return Done(rt.backend.create_service(rt.context(record)), fields={"service": record.name})


def create_volume(rt: Runtime, record: BuildRecord) -> Outcome:
    return Done(rt.backend.create_volume(rt.context(record)))


def create_pod(rt: Runtime, record: BuildRecord) -> Outcome:
    detail = rt.backend.create_pod(rt.context(record))
    pods = record.pods or [PodAttempt(attempt=1, pod=record.name)]
    return Done(detail, fields={"attempts": max(record.attempts, 1), "pods": pods})


def wait_setup(rt: Runtime, record: BuildRecord) -> Outcome:
    ctx = rt.context(record)
    status = rt.backend.setup_status(ctx)
    if status.failure:
        return Stop(BuildState.error, status.failure)
    if status.ready:
        return Done(status.detail)
    budget = ctx.config.timeouts.setup
    if _waited(record, "wait_setup") > budget:
        return Stop(BuildState.error, f"setup did not complete within {budget:g} s ({status.detail})")
    return Wait(status.detail)


def run_tests(rt: Runtime, record: BuildRecord) -> Outcome:
    ctx = rt.context(record)
    rt.backend.start_tests(ctx)
    status = rt.backend.test_status(ctx)
    if status is None:
        budget = ctx.config.timeouts.tests
        if _waited(record, "run_tests") > budget:
            return Stop(BuildState.error, f"the tests did not finish within {budget:g} s")
        return Wait("tests running")
    result = TestResult(
        exit_code=status.exit_code,
        log_path=str(status.log_path),
        log_tail=tail(status.log_path, rt.settings.log_tail_lines),
        **_junit(rt, ctx),
    )
    if status.exit_code == 0:
        return Done("tests passed", fields={"tests": result})
    return Stop(
        BuildState.failed, f"tests failed with exit code {status.exit_code}", fields={"tests": result}
    )


def _junit(rt: Runtime, ctx: BuildContext) -> dict[str, Any]:
    """The JUnit report's counts and failures; a missing or broken report only costs the details."""
    path = ctx.config.test.junit
    data = rt.backend.workspace_file(ctx, path) if path else None
    if data is None:
        return {}
    try:
        summary = parse_junit(data)
    except JUnitError as exc:
        log.warning("build=%s %s", ctx.build_id, exc)
        return {}
    failures = [TestCaseFailure(name=name, message=message) for name, message in summary.failures]
    return {
        "total": summary.total,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "failures": failures,
    }


def teardown(rt: Runtime, record: BuildRecord) -> Outcome:
    # Logs first: once the pod is gone, so are its containers' logs.
    logs = {name: str(path) for name, path in rt.backend.logs(record.name, Path(record.log_dir)).items()}
    return Done(rt.backend.teardown(record.name), fields={"logs": logs})


def report(rt: Runtime, record: BuildRecord) -> Outcome:
    # The reporters post on their own (`podci.notify`), retried apart from the pipeline, so an outage
    # of Bitbucket delays a status, never the build's end.
    return Done(f"{record.state.value}: {record.reason}" if record.reason else record.state.value)


STEP_FUNCTIONS: dict[str, Callable[[Runtime, BuildRecord], Outcome]] = {
    "checkout": checkout,
    "create_service": create_service,
    "create_volume": create_volume,
    "create_pod": create_pod,
    "wait_setup": wait_setup,
    "run_tests": run_tests,
    "teardown": teardown,
    "report": report,
}
