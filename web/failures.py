"""Where a failed test shows up in the test log: pure, so the matching rules are table-tested.

JUnit names a test `classname.name`; test runners print it their own way (pytest
`tests/test_x.py::Case::test_y`, unittest `test_y (tests.test_x.Case.test_y)`), so a line matches on
the whole name first and on the test's own name as a word second. The line a runner writes when it
reports the failure (it says FAIL or ERROR) is worth more than the progress line that merely names
the test, since the traceback follows it; a line that starts with the verdict (unittest's `FAIL: name`,
pytest's summary `FAILED path::name`) is worth most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BEFORE = 2
AFTER = 10
_VERDICT = re.compile(r"FAIL|ERROR|Error|Exception")
_LEADING_VERDICT = re.compile(r"^\s*(FAIL|FAILED|ERROR)\b")


@dataclass(frozen=True)
class Excerpt:
    first_line: int  # 1-based, in the text searched
    lines: tuple[str, ...]


def _short_name(name: str) -> str:
    return re.split(r"[.:/]", name)[-1]


def _worth(line: str) -> int:
    return 2 if _LEADING_VERDICT.search(line) else 1 if _VERDICT.search(line) else 0


def _best(lines: list[str], needle: re.Pattern[str]) -> int | None:
    found = [n for n, line in enumerate(lines) if needle.search(line)]
    return max(found, key=lambda n: (_worth(lines[n]), -n)) if found else None


def find_failure(log: str, name: str, before: int = BEFORE, after: int = AFTER) -> Excerpt | None:
    """The lines around where `log` reports the failed test `name`, or None when it never names it."""
    lines = log.splitlines()
    short = _short_name(name)
    needles = [re.compile(re.escape(name))]
    if short and short != name:
        needles.append(re.compile(rf"(?<![\w]){re.escape(short)}(?![\w])"))
    for needle in needles:
        at = _best(lines, needle)
        if at is not None:
            start = max(0, at - before)
            return Excerpt(start + 1, tuple(lines[start : at + after + 1]))
    return None
