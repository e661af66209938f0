"""One function per pipeline step: look at the world, act (idempotently), say what happened.

Each returns an outcome from `workers.pipeline`; none sleeps. Waiting steps return `Wait` and are
called again later, so a build that waits costs a record in Redis, not a worker slot.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from schemas.names import attempt_name
from schemas.public import without_userinfo
from schemas.record import (
    BuildRecord,
    BuildState,
    PodAttempt,
    Rerun,
    Step,
    TestCaseFailure,
    TestResult,
    utcnow,
)
from schemas.repo_config import RepoConfig
from schemas.settings import Settings
from schemas.urls import clone_url_problem
from store.flaky import OutcomeHistory
from store.live import LiveLogs
from store.logstore import LogStore, LogStoreUnavailable
from workers import flaky, gitops
from workers.backends.base import BuildContext, ClusterBackend
from workers.errors import PodLost, TransientError
from workers.junit import JUnitError, JUnitSummary, parse_junit
from workers.live import source_of
from workers.logfiles import tail
from workers.pipeline import (
    CheckedOut,
    Done,
    Outcome,
    PodLaunched,
    RanTests,
    Relaunch,
    ServiceCreated,
    Stop,
    TornDown,
    Wait,
    waited,
)
from workers.repo_config import CONFIG_FILE, ConfigError, load

log = logging.getLogger(__name__)
# What of a JUnit report the record keeps (the report itself stays in the workspace's logs).
FAILURES_KEPT, FAILURE_NAME_MAX, FAILURE_MESSAGE_MAX = 100, 500, 2000
# Tracebacks are long: the first failures keep theirs, which is what a reader opens first anyway.
FAILURES_WITH_TEXT, FAILURE_TEXT_MAX = 20, 4000


@dataclass
class Runtime:
    settings: Settings
    backend: ClusterBackend
    logs: LogStore
    live: LiveLogs | None = None  # where the running tests' output is asked to be followed
    history: OutcomeHistory | None = None  # the repositories' test outcomes (flaky tests)

    def checkout_dir(self, record: BuildRecord) -> Path:
        """The worker's merge of the build's code, kept until teardown (relaunched pods need it)."""
        return self.settings.checkouts_dir / record.name

    def context(self, record: BuildRecord) -> BuildContext:
        scratch = self.settings.scratch_log_dir(record.name)
        return BuildContext.from_record(record, self.checkout_dir(record), scratch)


def _clone_urls_refused(rt: Runtime, record: BuildRecord) -> str | None:
    """A webhook build's clone URLs are checked again here, with this worker's settings: the receiver
    checked them with its own, and a record may come from before they changed."""
    request = record.request
    if request.provider == "manual":
        return None
    for side in (request.source, request.target):
        problem = None if side is None else clone_url_problem(side.clone_url, rt.settings.clone_host_patterns)
        if side is not None and problem is not None:
            return f"the clone URL {without_userinfo(side.clone_url)} {problem}"
    return None


def checkout(rt: Runtime, record: BuildRecord) -> Outcome:
    if (refused := _clone_urls_refused(rt, record)) is not None:
        return Stop(BuildState.error, refused)
    dest = rt.checkout_dir(record)
    request = record.request
    result = gitops.prepare(
        request.source, request.target, dest, record.created,
        remote_only=request.remote_only, credentials=rt.settings.git_credentials,
    )  # fmt: skip
    if result.commit is None:
        files = ", ".join(result.conflicts)
        target = record.request.target.ref if record.request.target else "?"
        return Stop(BuildState.failed, f"merge conflict: `{record.request.source.ref}` does not merge "
                    f"cleanly into `{target}`; conflicting files: {files}")  # fmt: skip
    # A fork's or an untrusted author's pull request must not choose its own pod template (approved or
    # not): the config is read from the target branch, as Prow reads job configs from the base branch.
    untrusted = record.request.fork or not record.request.trusted
    trusted = result.target_commit if untrusted and result.target_commit else result.commit
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
    checked_out = CheckedOut(
        merge_commit=result.commit,
        source_commit=result.source_commit,
        target_commit=result.target_commit,
        config=loaded.config,
        pod_spec=loaded.pod_spec,
    )
    return Done(f"{merged} -> {result.commit[:12]}", checked_out)


def create_service(rt: Runtime, record: BuildRecord) -> Outcome:
    return Done(rt.backend.create_service(rt.context(record)), ServiceCreated(record.name))


def create_volume(rt: Runtime, record: BuildRecord) -> Outcome:
    return Done(rt.backend.create_volume(rt.context(record)))


def create_pod(rt: Runtime, record: BuildRecord) -> Outcome:
    """The first pod, or the next attempt after a loss (named `-a2`, `-a3`)."""
    pods = list(record.pods)
    if not pods or pods[-1].ended:
        attempt = len(pods) + 1
        pods.append(PodAttempt(attempt=attempt, pod=attempt_name(record.name, attempt)))
    ctx = replace(rt.context(record), attempt=pods[-1].attempt)
    detail = rt.backend.create_pod(ctx)
    return Done(detail, PodLaunched(tuple(pods)))


def _lost(record: BuildRecord, lost: PodLost, config: RepoConfig) -> Outcome:
    """A lost pod is relaunched, not failed, until `max_attempts` launches have been lost."""
    if record.attempts >= config.max_attempts:
        return Stop(BuildState.error, f"the pod was lost {record.attempts} time(s), all that max_attempts "
                    f"({config.max_attempts}) allows; the last time: {lost.reason}")  # fmt: skip
    return Relaunch(f"attempt {record.attempts}: {lost.reason}", on_demand=lost.node_loss)


def _wait(rt: Runtime, ctx: BuildContext, detail: str, budget_left: float) -> Wait:
    hint = rt.backend.wait_hint(ctx)
    return Wait(detail, budget_left, hint.sign, hint.within)


def wait_setup(rt: Runtime, record: BuildRecord) -> Outcome:
    ctx = rt.context(record)
    try:
        status = rt.backend.setup_status(ctx)
    except PodLost as lost:
        return _lost(record, lost, ctx.config)
    if status.failure:
        return Stop(BuildState.error, status.failure)
    if status.ready:
        return Done(status.detail)
    so_far = waited(record, Step.wait_setup, utcnow())
    if status.unscheduled:  # waiting for capacity is normal, within its own budget
        budget = ctx.config.timeouts.unscheduled
        if so_far > budget:
            return Stop(BuildState.error, f"{status.detail} (for more than {budget:g} s)")
        return _wait(rt, ctx, status.detail, budget - so_far)
    budget = ctx.config.timeouts.setup
    if so_far > budget:
        why = "; ".join(filter(None, (status.detail, rt.backend.explain(ctx))))
        return Stop(BuildState.error, f"setup did not complete within {budget:g} s ({why})")
    return _wait(rt, ctx, status.detail, budget - so_far)


def run_tests(rt: Runtime, record: BuildRecord) -> Outcome:
    if record.tests is not None and record.tests.rerun is not None:
        return _rerun(rt, record, record.tests)
    ctx = rt.context(record)
    try:
        rt.backend.start_tests(ctx)
        status = rt.backend.test_status(ctx)
    except PodLost as lost:
        return _lost(record, lost, ctx.config)
    if status is None:
        if rt.live is not None:  # a worker's follower thread takes it from here (`workers/live.py`)
            rt.live.want(ctx.build_id, source_of(ctx))
        return _tests_running(rt, ctx, record, "tests running")
    summary = _junit_summary(rt, ctx)
    result = TestResult(
        exit_code=status.exit_code,
        log_path=_store_test_log(rt, ctx, status.log_path),
        log_tail=tail(status.log_path, rt.settings.log_tail_lines, rt.settings.secret_values()),
        **_junit(summary),
    )
    if rt.history is not None and summary is not None:
        result = flaky.with_notes(result, flaky.remember(rt.history, record, summary.outcomes, time.time()))
    if status.exit_code == 0:
        return Done("tests passed", RanTests(result))
    reason = status.reason or f"tests failed with exit code {status.exit_code}"
    again = flaky.rerun_tests(ctx.config, result, summary)
    if again is not None:
        # Kept in the record before the rerun starts: its report may overwrite this run's.
        kept = result.model_copy(update={"rerun": Rerun(tests=again)})
        detail = f"rerunning {len(again)} known-flaky test(s)"
        return Wait(detail, within=1.0, result=RanTests(kept), again=True)
    return Stop(BuildState.failed, reason, RanTests(result))


def _tests_running(rt: Runtime, ctx: BuildContext, record: BuildRecord, detail: str) -> Outcome:
    budget = ctx.config.timeouts.tests
    so_far = waited(record, Step.run_tests, utcnow())
    if so_far > budget:
        return Stop(BuildState.error, f"the tests did not finish within {budget:g} s")
    return _wait(rt, ctx, detail, budget - so_far)


def _rerun(rt: Runtime, record: BuildRecord, first: TestResult) -> Outcome:
    """The known-flaky failures run once more. Passing, they make the build succeed with a warning
    (and count as passes on this commit); failing again, the build fails as it would have."""
    assert first.rerun is not None
    ctx, tests = rt.context(record), first.rerun.tests
    rt.backend.start_rerun(ctx, ctx.config.test.rerun_argv(tests))
    status = rt.backend.rerun_status(ctx)
    if status is None:
        return _tests_running(rt, ctx, record, f"rerunning {len(tests)} known-flaky test(s)")
    done = first.rerun.model_copy(
        update={"exit_code": status.exit_code, "log_path": _store_test_log(rt, ctx, status.log_path)}
    )
    result = first.model_copy(update={"rerun": done})
    if status.exit_code != 0:
        why = f"tests failed with exit code {first.exit_code}; run again, the known-flaky tests failed too"
        return Stop(BuildState.failed, status.reason or why, RanTests(result))
    if rt.history is not None:  # only a pass of every test run again is known without a report
        flaky.remember(rt.history, record, [(name, True) for name in tests], time.time(), rerun=True)
    return Done("tests passed on rerun", RanTests(result, (flaky.rerun_warning(tests),)))


def _store_test_log(rt: Runtime, ctx: BuildContext, path: Path) -> str:
    """The finished test log goes to the store now, by the worker that has it: teardown may run on
    another worker, whose disk does not have it. Its address in the store is what the record keeps."""
    name = (
        path.relative_to(ctx.log_dir).with_suffix("").as_posix()
        if path.is_relative_to(ctx.log_dir)
        else "tests"
    )
    try:
        if path.is_file():
            rt.logs.put(ctx.name, {name: path}, rt.settings.secret_values())
    except LogStoreUnavailable as exc:  # the test result stands; teardown puts the log, and retries
        log.warning("build=%s the test log waits for the log store: %s", ctx.build_id, exc)
    return rt.logs.where(ctx.name, name)


def _junit_summary(rt: Runtime, ctx: BuildContext) -> JUnitSummary | None:
    """The JUnit report, read; a missing or broken report only costs the details."""
    path = ctx.config.test.junit
    data = rt.backend.workspace_file(ctx, path) if path else None
    if data is None:
        return None
    try:
        return parse_junit(data)
    except JUnitError as exc:
        log.warning("build=%s %s", ctx.build_id, exc)
        return None


def _junit(summary: JUnitSummary | None) -> dict[str, Any]:
    """The report's counts and failures as the record keeps them (bounded)."""
    if summary is None:
        return {}
    texts = summary.texts[:FAILURES_WITH_TEXT]
    places = summary.places
    failures = [
        TestCaseFailure(
            name=name[:FAILURE_NAME_MAX],
            message=message[:FAILURE_MESSAGE_MAX],
            text=texts[index][:FAILURE_TEXT_MAX] if index < len(texts) else "",
            file=places[index][0] if index < len(places) else "",
            line=places[index][1] if index < len(places) else None,
        )
        for index, (name, message) in enumerate(summary.failures[:FAILURES_KEPT])
    ]
    return {
        "total": summary.total,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "failures": failures,
    }


def _save_logs(rt: Runtime, record: BuildRecord, fetched: dict[str, Path]) -> tuple[dict[str, str], str]:
    """The build's logs into the store, then the store's list of them (what every earlier try put
    there too: a teardown that runs again, on another worker, may find nothing on its own disk).

    Runs after the deletes: a store that is down makes teardown try again, with the objects already
    gone, until most of `teardown_timeout` has passed; then the build ends without those logs (its
    result stands) rather than in `error`, and says so."""
    try:
        rt.logs.put(record.name, fetched, rt.settings.secret_values())
        return {name: rt.logs.where(record.name, name) for name in rt.logs.names(record.name)}, ""
    except LogStoreUnavailable as exc:
        if waited(record, Step.teardown, utcnow()) < 0.9 * rt.settings.teardown_timeout:
            raise TransientError(f"{exc}; the logs stay on this worker until it answers") from exc
        log.warning("build=%s logs not kept: %s", record.id, exc)
        return dict(record.logs), f"; its logs were not kept, the log store did not answer: {exc}"


def teardown(rt: Runtime, record: BuildRecord) -> Outcome:
    """Remove the build's objects, save the logs and remove the worker's checkout. The final statuses
    are posted after the build completes, by `podci.notify`, retried apart from the pipeline: an outage
    of Bitbucket delays a status, never the build's end."""
    # Container logs are read first (once the pod is gone, so are they), best effort within the
    # backend's short budget; the store gets them after the deletes, which cost money while they wait.
    scratch = rt.settings.scratch_log_dir(record.name)
    fetched = rt.backend.logs(record.name, scratch)
    kept_until = rt.backend.kept_until(record.state, utcnow())
    detail = rt.backend.teardown(record.name, keep_pods=kept_until is not None)
    if detail is None:
        return Wait("waiting for the build's objects to be deleted")
    logs, lost = _save_logs(rt, record, fetched)
    shutil.rmtree(rt.checkout_dir(record), ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return Done(detail + lost, TornDown(logs, kept_until))


STEP_FUNCTIONS: dict[Step, Callable[[Runtime, BuildRecord], Outcome]] = {
    Step.checkout: checkout,
    Step.create_service: create_service,
    Step.create_volume: create_volume,
    Step.create_pod: create_pod,
    Step.wait_setup: wait_setup,
    Step.run_tests: run_tests,
    Step.teardown: teardown,
}
