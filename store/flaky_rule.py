"""When a test is flaky, and how its history is spelled in Redis: pure, tested with tables.

A test is flaky when it failed and passed on the same code within `WINDOW`: a retry, a relaunch, a
rebuild or a rerun of one commit (the same merge commit, or the same source head) that disagreed.
A test that fails on one commit and passes on the next was fixed, not flaky, so the commits matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WINDOW = 14 * 86400  # seconds: older disagreements say little about the test as it is now
COMMIT_CHARS = 12
RERUN = "#rerun"  # a build's rerun of its failed tests is a run of its own, on the build's commits


@dataclass(frozen=True)
class Run:
    """One outcome of one test: `run` is the build id (or `{build}#rerun`), `at` the build's creation
    time, `source`/`merge` the build's commits (empty when no longer known)."""

    run: str
    passed: bool
    at: float
    source: str = ""
    merge: str = ""

    @property
    def build(self) -> str:
        return self.run.split("#", 1)[0]


@dataclass(frozen=True)
class Flakiness:
    failed: int  # of `runs`, the outcomes the history holds
    runs: int
    last_flake: float  # the newest run that disagreed with another on its commit
    builds: tuple[str, ...]  # the builds whose runs disagreed, newest first

    @property
    def note(self) -> str:
        return f"flaky: {self.failed} of the last {self.runs} runs failed"


def same_code(a: Run, b: Run) -> bool:
    return bool(a.source and a.source == b.source) or bool(a.merge and a.merge == b.merge)


def flakiness(runs: Sequence[Run], now: float, window: float = WINDOW) -> Flakiness | None:
    """None unless a failure and a pass on the same code both lie within `window` before `now`."""
    recent = [r for r in runs if now - r.at <= window]
    flaked = [r for r in recent if any(o.passed != r.passed and same_code(r, o) for o in recent)]
    if not flaked:
        return None
    flaked.sort(key=lambda r: (r.at, r.run), reverse=True)
    return Flakiness(
        failed=sum(not r.passed for r in runs),
        runs=len(runs),
        last_flake=flaked[0].at,
        builds=tuple(dict.fromkeys(r.build for r in flaked)),
    )


# --- how runs are spelled in Redis (store/keys.py: test_runs, test_builds) --------------------------
def outcome_member(run: str, passed: bool) -> str:
    return f"{run}:{'p' if passed else 'f'}"


def parse_outcome(member: str) -> tuple[str, bool] | None:
    run, _, outcome = member.rpartition(":")
    return (run, outcome == "p") if run and outcome in ("p", "f") else None


def build_member(build: str, source: str | None, merge: str | None) -> str:
    return f"{build} {(source or '-')[:COMMIT_CHARS]} {(merge or '-')[:COMMIT_CHARS]}"


def parse_builds(members: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Build id -> (source, merge) commit prefixes; `-` (unknown) becomes empty."""
    found: dict[str, tuple[str, str]] = {}
    for member in members:
        parts = member.split(" ")
        if len(parts) == 3:
            found[parts[0]] = (parts[1].strip("-"), parts[2].strip("-"))
    return found


def runs_of(scored: Iterable[tuple[str, float]], commits: dict[str, tuple[str, str]]) -> list[Run]:
    """A test's zset (member, score) as runs, oldest first, with the commits of their builds."""
    runs = []
    for member, at in scored:
        parsed = parse_outcome(member)
        if parsed is not None:
            source, merge = commits.get(parsed[0].split("#", 1)[0], ("", ""))
            runs.append(Run(parsed[0], parsed[1], at, source, merge))
    return runs


def merged_outcomes(outcomes: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """Name -> passed; a name reported twice in one run (a parametrised test without its parameters
    in the name) failed if any of them did."""
    merged: dict[str, bool] = {}
    for name, passed in outcomes:
        merged[name] = merged.get(name, True) and passed
    return merged
