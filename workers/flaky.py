"""What the test step does with the repository's test history: add this run's outcomes, mark the
failures known to be flaky, and decide whether to run them again (`.podci.yml` `flaky.rerun`).

The decisions (`rerun_tests`, `with_notes`, `rerun_warning`) are pure; `remember` is the one write.
"""

from __future__ import annotations

from schemas.record import BuildRecord, TestResult
from schemas.repo_config import RepoConfig
from store.flaky import OutcomeHistory, RunFacts
from store.flaky_rule import RERUN, Flakiness
from workers.junit import JUnitSummary

WARNING_NAMES_MAX = 10


def facts(record: BuildRecord, rerun: bool = False) -> RunFacts:
    """The run's identity is the build's (plus `#rerun`) and its time the build's creation, so every
    write of one run is the same write."""
    return RunFacts(
        repo=record.request.repo,
        run=record.id + (RERUN if rerun else ""),
        at=record.created.timestamp(),
        source=record.source_commit or record.request.source.commit,
        merge=record.merge_commit,
    )


def remember(
    history: OutcomeHistory,
    record: BuildRecord,
    outcomes: list[tuple[str, bool]],
    now: float,
    rerun: bool = False,
) -> dict[str, Flakiness]:
    """Record the outcomes, then say which of the failed tests are flaky (this run included)."""
    history.record(facts(record, rerun), outcomes)
    failed = [name for name, passed in outcomes if not passed]
    return history.flaky(record.request.repo, failed, now)


def with_notes(result: TestResult, flaky: dict[str, Flakiness]) -> TestResult:
    failures = [
        f.model_copy(update={"flaky_note": flaky[f.name].note}) if f.name in flaky else f
        for f in result.failures
    ]
    return result.model_copy(update={"failures": failures})


def rerun_tests(config: RepoConfig, result: TestResult, summary: JUnitSummary | None) -> list[str] | None:
    """The failed tests to run again, when the repository asks for it and every failure is named and
    known to be flaky; None otherwise. A name that looks like an option is never passed on."""
    if not config.flaky.rerun or config.test.rerun is None or summary is None or not result.failures:
        return None
    if summary.failed != len(result.failures) or len(summary.failures) != summary.failed:
        return None  # some failures are unnamed (more than the report's kept names): not all known
    if not all(f.flaky_note for f in result.failures):
        return None
    names = [f.name for f in result.failures]
    return None if any(not n or n.startswith("-") for n in names) else names


def rerun_warning(tests: list[str]) -> str:
    shown = ", ".join(tests[:WARNING_NAMES_MAX]) + (" and more" if len(tests) > WARNING_NAMES_MAX else "")
    return f"passed only on rerun: {len(tests)} known-flaky test(s) failed, then passed run again: {shown}"
