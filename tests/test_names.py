"""workers/names.py: DNS-1123 names that stay valid, stable and distinct."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from schemas.names import MAX_LABEL, attempt_name, build_name, dns_label, env_suffix

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HASHED = re.compile(r"-[0-9a-f]{8}$")

TEXTS = ["main", "Team/App", "team-app", "", "-", "---", "Ünïcode", "UPPER", "feature/login_page",
         "1.2.3", "-x-", "a" * 100, "A/" * 50, "x" * 63, "x" * 64]  # fmt: skip


def assert_label(name: str, max_len: int = MAX_LABEL) -> None:
    assert LABEL.match(name), name
    assert len(name) <= max_len, name


@pytest.mark.parametrize("text", TEXTS)
def test_dns_label_is_a_valid_label(text: str) -> None:
    assert_label(dns_label(text))


@pytest.mark.parametrize("text", ["main", "team-app", "a", "x1-2", "x" * 63])
def test_valid_short_label_is_kept_as_is(text: str) -> None:
    assert dns_label(text) == text


@pytest.mark.parametrize(
    ("text", "head"),
    [
        ("Team/App", "team-app"),
        ("feature/login_page", "feature-login-page"),
        ("UPPER", "upper"),
        ("-x-", "x"),
    ],
)
def test_changed_text_gets_its_slug_plus_a_hash(text: str, head: str) -> None:
    name = dns_label(text)
    assert name.startswith(head + "-")
    assert HASHED.search(name) and len(name) == len(head) + 9


@pytest.mark.parametrize(
    ("text", "max_len"), [("a" * 100, MAX_LABEL), ("x" * 64, MAX_LABEL), ("a" * 30, 20), ("ab-" * 30, 40)]
)
def test_truncation_cuts_to_max_len_and_adds_a_hash(text: str, max_len: int) -> None:
    name = dns_label(text, max_len=max_len)
    assert_label(name, max_len)
    assert HASHED.search(name)
    assert text.startswith(name[:-9])


@pytest.mark.parametrize(
    ("one", "other"),
    [("Team/App", "team-app"), ("a_b", "a-b"), ("a/b", "a.b"), ("", "-"), ("", "x"),
     ("a" * 70 + "b", "a" * 70 + "c"), ("x" * 64, "x" * 65)],
)  # fmt: skip
def test_different_inputs_get_different_names(one: str, other: str) -> None:
    assert dns_label(one) != dns_label(other)
    assert build_name(one, 7) != build_name(other, 7)


def test_names_are_stable_across_processes() -> None:
    code = "from schemas.names import build_name as b; print(b('Team/App', 3), b('q' * 90, 3))"

    def run(seed: str) -> tuple[str, ...]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        return tuple(out.stdout.split())

    assert {run("1"), run("2")} == {(build_name("Team/App", 3), build_name("q" * 90, 3))}


@pytest.mark.parametrize(
    ("job", "number"), [("web", 1), ("Team/App", 42), ("a" * 80, 123456), ("x" * 60, 1000), ("", 9)]
)
def test_build_name_keeps_the_number_whole(job: str, number: int) -> None:
    name = build_name(job, number)
    assert_label(name)
    job_part, _, tail = name.rpartition("-")
    assert tail == str(number)
    assert_label(job_part)


def test_build_name_of_a_plain_job_is_readable() -> None:
    assert build_name("web", 12) == "web-12"


@pytest.mark.parametrize(
    ("build", "attempt", "expected"), [("web-1", 0, "web-1"), ("web-1", 1, "web-1"), ("web-1", 2, "web-1-a2")]
)
def test_attempt_name_short(build: str, attempt: int, expected: str) -> None:
    assert attempt_name(build, attempt) == expected


@pytest.mark.parametrize(("build", "attempt"), [("b" * 63, 2), ("b" * 61 + "-1", 12), ("c" * 60, 3)])
def test_attempt_name_long_stays_a_label(build: str, attempt: int) -> None:
    name = attempt_name(build, attempt)
    assert_label(name)
    assert name.endswith(f"-a{attempt}")
    assert name != attempt_name(build, attempt + 1)


@pytest.mark.parametrize(
    ("port", "expected"),
    [("http", "HTTP"), ("http-alt", "HTTP_ALT"), ("db.5432", "DB_5432"), ("App-8080", "APP_8080")],
)
def test_env_suffix(port: str, expected: str) -> None:
    assert env_suffix(port) == expected


def test_a_job_named_like_a_hashed_name_does_not_collide() -> None:
    lookalike = dns_label("Team/App")  # "team-app-" + 8 hex digits: itself a valid label
    assert build_name(lookalike, 5) != build_name("Team/App", 5)


def test_small_max_len_is_respected() -> None:
    assert len(dns_label("Hello", max_len=8)) <= 8
