"""Read a JUnit XML report into counts and the failed tests' names and messages.

The report is written by the build's own tests (a fork's, perhaps), so it is parsed with defusedxml:
no entity expansion, no external references. Both a `<testsuites>` root and a bare `<testsuite>` work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

MAX_FAILURES = 50
MAX_MESSAGE = 2000
MAX_TEXT = 4000
MAX_PATH = 1000
# Every passed and failed test's name goes to the repository's test history (`store/flaky.py`); a
# report naming more tests than this has its first ones recorded, so one report cannot fill Redis.
MAX_OUTCOMES = 10_000
MAX_NAME = 500


class JUnitError(ValueError):
    """The file is not a JUnit report podci can read."""


@dataclass(frozen=True)
class JUnitSummary:
    total: int
    failed: int
    skipped: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, message)
    # The failure's body (pytest and Surefire put the traceback there), by the failure's index.
    texts: list[str] = field(default_factory=list)
    # The testcase's `file` and `line` attributes (pytest's xunit1 family, Surefire with trimStackTrace
    # off...), by the failure's index: where a code review annotation goes.
    places: list[tuple[str, int | None]] = field(default_factory=list)
    # (name, passed) of the first MAX_OUTCOMES tests that ran (skipped ones did not), names cut to
    # MAX_NAME: what the test history learns from this run.
    outcomes: list[tuple[str, bool]] = field(default_factory=list)


def _case_name(case: Element) -> str:
    name, classname = case.get("name", "?"), case.get("classname", "")
    return f"{classname}.{name}" if classname else name


def _message(problem: Element) -> str:
    text = problem.get("message") or (problem.text or "").strip()
    return text[:MAX_MESSAGE]


def _text(problem: Element) -> str:
    return (problem.text or "").strip()[:MAX_TEXT]


def _place(case: Element) -> tuple[str, int | None]:
    line = case.get("line", "")
    return (case.get("file") or "")[:MAX_PATH], int(line) if line.isdigit() else None


def parse_junit(data: bytes) -> JUnitSummary:
    try:
        root = ElementTree.fromstring(data)
    except Exception as exc:  # defusedxml raises ParseError and its own refusal types
        raise JUnitError(f"the JUnit report is not readable XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"the JUnit report's root is <{root.tag}>, not <testsuites> or <testsuite>")
    total = failed = skipped = 0
    failures: list[tuple[str, str]] = []
    texts: list[str] = []
    places: list[tuple[str, int | None]] = []
    outcomes: list[tuple[str, bool]] = []
    for case in root.iter("testcase"):
        total += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed += 1
            if len(failures) < MAX_FAILURES:
                failures.append((_case_name(case), _message(problem)))
                texts.append(_text(problem))
                places.append(_place(case))
        elif case.find("skipped") is not None:
            skipped += 1
            continue
        if len(outcomes) < MAX_OUTCOMES:
            outcomes.append((_case_name(case)[:MAX_NAME], problem is None))
    return JUnitSummary(total, failed, skipped, failures, texts, places, outcomes)
