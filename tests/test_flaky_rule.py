"""store/flaky_rule.py and workers/flaky.py decisions: when a test is flaky, how runs are spelled,
which failures are run again. Pure, with tables."""

from __future__ import annotations

import pytest

from schemas.record import TestCaseFailure as CaseFailure  # aliased: pytest would collect `Test*`
from schemas.record import TestResult as Outcome
from schemas.repo_config import RepoConfig
from store.flaky_rule import (
    WINDOW,
    Run,
    build_member,
    flakiness,
    merged_outcomes,
    parse_builds,
    parse_outcome,
    runs_of,
)
from workers.flaky import rerun_tests
from workers.junit import JUnitSummary

NOW = 1_700_000_000.0
DAY = 86400.0


def run(build: str, passed: bool, days_ago: float, source: str = "", merge: str = "") -> Run:
    return Run(build, passed, NOW - days_ago * DAY, source, merge)


@pytest.mark.parametrize(
    ("runs", "expected"),
    [([], None),
     ([run("b1", False, 1, "s1")], None),
     ([run("b1", False, 2, "s1"), run("b2", False, 1, "s1")], None),  # failed twice: broken, not flaky
     ([run("b1", False, 2, "s1"), run("b2", True, 1, "s2")], None),  # fixed by the next commit
     ([run("b1", False, 2, "s1"), run("b2", True, 1, "s1")], (1, 2, ("b2", "b1"))),  # a retry passed
     ([run("b1", True, 2, "s1"), run("b2", False, 1, "s1")], (1, 2, ("b2", "b1"))),  # a rebuild failed
     ([run("b1", False, 2, "s1", "m1"), run("b2", True, 1, "s9", "m1")], (1, 2, ("b2", "b1"))),  # same merge
     ([run("b1", False, 1, "s1"), run("b1#rerun", True, 1, "s1")], (1, 2, ("b1",))),  # its rerun passed
     ([run("b1", False, 1), run("b2", True, 1)], None),  # commits unknown: nothing to compare
     ([run("b1", False, 16, "s1"), run("b2", True, 15, "s1")], None),  # too long ago
     ([run("b1", False, 15, "s1"), run("b2", True, 13, "s1")], None),  # only one side within the window
     ([run("b0", False, 20, "s0"), run("b1", False, 3, "s1"), run("b2", True, 2, "s1"),
       run("b3", False, 1, "s3")], (3, 4, ("b2", "b1")))],
)  # fmt: skip
def test_flaky_when_it_failed_and_passed_on_one_commit(
    runs: list[Run], expected: tuple[int, int, tuple[str, ...]] | None
) -> None:
    verdict = flakiness(runs, NOW)
    found = None if verdict is None else (verdict.failed, verdict.runs, verdict.builds)
    assert found == expected


def test_the_note_and_the_newest_flake() -> None:
    verdict = flakiness([run("b1", False, 3, "s1"), run("b2", True, 2, "s1"), run("b3", True, 1, "s3")], NOW)
    assert verdict is not None
    assert verdict.note == "flaky: 1 of the last 3 runs failed"
    assert verdict.last_flake == NOW - 2 * DAY
    assert WINDOW == 14 * DAY


@pytest.mark.parametrize(
    ("member", "parsed"),
    [("b1:p", ("b1", True)), ("b1:f", ("b1", False)), ("b1#rerun:p", ("b1#rerun", True)),
     ("b1:x", None), (":p", None), ("nothing", None)],
)  # fmt: skip
def test_outcome_members(member: str, parsed: tuple[str, bool] | None) -> None:
    assert parse_outcome(member) == parsed


def test_build_members_keep_twelve_characters_and_unknown_commits() -> None:
    members = [build_member("b1", "a" * 40, "b" * 40), build_member("b2", None, None), "broken"]
    assert members[:2] == ["b1 aaaaaaaaaaaa bbbbbbbbbbbb", "b2 - -"]
    assert parse_builds(members) == {"b1": ("a" * 12, "b" * 12), "b2": ("", "")}


def test_runs_take_their_builds_commits() -> None:
    commits = {"b1": ("s1", "m1")}
    runs = runs_of([("b1:f", 1.0), ("b1#rerun:p", 2.0), ("b9:p", 3.0), ("junk", 4.0)], commits)
    assert runs == [Run("b1", False, 1.0, "s1", "m1"), Run("b1#rerun", True, 2.0, "s1", "m1"),
                    Run("b9", True, 3.0)]  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "merged"),
    [([], {}), ([("a", True), ("b", False)], {"a": True, "b": False}),
     ([("a", True), ("a", False), ("a", True)], {"a": False})],
)  # fmt: skip
def test_a_name_reported_twice_failed_if_one_did(
    outcomes: list[tuple[str, bool]], merged: dict[str, bool]
) -> None:
    assert merged_outcomes(outcomes) == merged


RERUN = RepoConfig.model_validate(
    {"test": {"container": "t", "command": "x", "rerun": "python -m unittest {tests}"}, "flaky": {"rerun": 1}}
)
NO_RERUN = RepoConfig.model_validate({"test": {"container": "t", "command": "x", "rerun": "r {tests}"}})


def result(*failures: tuple[str, str]) -> Outcome:
    return Outcome(
        exit_code=1, log_path="x", failures=[CaseFailure(name=n, flaky_note=note) for n, note in failures]
    )


def summary(failed: int, named: int) -> JUnitSummary:
    return JUnitSummary(
        total=failed, failed=failed, skipped=0, failures=[(f"t{i}", "") for i in range(named)]
    )


@pytest.mark.parametrize(
    ("config", "outcome", "report", "expected"),
    [(RERUN, result(("a", "flaky: 1 of 2")), summary(1, 1), ["a"]),
     (RERUN, result(("a", "flaky: 1 of 2"), ("b", "flaky: 2 of 9")), summary(2, 2), ["a", "b"]),
     (NO_RERUN, result(("a", "flaky: 1 of 2")), summary(1, 1), None),  # not asked for
     (RERUN, result(("a", "flaky: 1 of 2"), ("b", "")), summary(2, 2), None),  # b is not known-flaky
     (RERUN, result(("a", "flaky: 1 of 2")), summary(60, 1), None),  # failures the report did not name
     (RERUN, result(("a", "flaky: 1 of 2")), None, None),  # no report
     (RERUN, result(), summary(0, 0), None),  # nothing named failed (the command did)
     (RERUN, result(("--pdb", "flaky: 1 of 2")), summary(1, 1), None)],  # never an option
)  # fmt: skip
def test_which_failures_run_again(
    config: RepoConfig, outcome: Outcome, report: JUnitSummary | None, expected: list[str] | None
) -> None:
    assert rerun_tests(config, outcome, report) == expected


@pytest.mark.parametrize(
    ("repo", "path", "builds"),
    [("webapp", "webapp", "../../builds/"), ("team/webapp", "team/webapp", "../../../builds/"),
     ("team/we b#1", "team/we%20b%231", "../../../builds/")],
)  # fmt: skip
def test_flaky_page_paths(repo: str, path: str, builds: str) -> None:
    from web.flaky import repo_path, to_builds

    assert (repo_path(repo), to_builds(repo)) == (path, builds)
