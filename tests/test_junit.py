"""workers/junit.py: JUnit XML as pytest, unittest-xml-reporting and Maven Surefire write it."""

from __future__ import annotations

import pytest

from workers.junit import JUnitError, parse_junit

PYTEST = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="tests.test_counter" name="test_ok" time="0.01"/>
<testcase classname="tests.test_counter" name="test_bad" time="0.02">
  <failure message="AssertionError: 1 != 2">Traceback ...</failure></testcase>
<testcase classname="tests.test_counter" name="test_later"><skipped message="todo"/></testcase>
</testsuite></testsuites>"""
SUREFIRE = b"""<testsuite name="com.acme.AppTest" tests="2">
<testcase name="boots" classname="com.acme.AppTest"/>
<testcase name="talks" classname="com.acme.AppTest">
  <error type="java.io.IOException">refused</error></testcase>
</testsuite>"""
BOMB = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
<testsuite><testcase name="&lol2;"/></testsuite>"""


@pytest.mark.parametrize(
    ("data", "total", "failed", "skipped", "failures"),
    [(PYTEST, 3, 1, 1, [("tests.test_counter.test_bad", "AssertionError: 1 != 2")]),
     (SUREFIRE, 2, 1, 0, [("com.acme.AppTest.talks", "refused")]),
     (b"<testsuites/>", 0, 0, 0, [])],
)  # fmt: skip
def test_counts_and_failures(data: bytes, total: int, failed: int, skipped: int, failures: list) -> None:  # type: ignore[type-arg]
    summary = parse_junit(data)
    assert (summary.total, summary.failed, summary.skipped, summary.failures) == (
        total,
        failed,
        skipped,
        failures,
    )


@pytest.mark.parametrize(
    ("data", "words"),
    [(b"not xml", "not readable XML"), (b"<html/>", "root is <html>"), (BOMB, "not readable XML")],
)
def test_unreadable_reports_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(JUnitError, match=words):
        parse_junit(data)


def test_a_failure_keeps_its_body_apart_from_its_message() -> None:
    """The message is one line for lists; the body (the traceback) is what the build page shows."""
    assert parse_junit(PYTEST).texts == ["Traceback ..."]
    assert parse_junit(SUREFIRE).texts == ["refused"]


@pytest.mark.parametrize(
    ("data", "outcomes"),
    [(PYTEST, [("tests.test_counter.test_ok", True), ("tests.test_counter.test_bad", False)]),
     (SUREFIRE, [("com.acme.AppTest.boots", True), ("com.acme.AppTest.talks", False)]),
     (b"<testsuites/>", [])],
)  # fmt: skip
def test_outcomes_name_passed_and_failed_tests_but_not_skipped(data: bytes, outcomes: list) -> None:  # type: ignore[type-arg]
    assert parse_junit(data).outcomes == outcomes


def test_outcomes_are_bounded() -> None:
    from workers.junit import MAX_NAME, MAX_OUTCOMES

    cases = "".join(f'<testcase name="{"n" * 600}{i}"/>' for i in range(MAX_OUTCOMES + 5))
    summary = parse_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert summary.total == MAX_OUTCOMES + 5
    assert len(summary.outcomes) == MAX_OUTCOMES
    assert all(len(name) == MAX_NAME for name, _ in summary.outcomes)
