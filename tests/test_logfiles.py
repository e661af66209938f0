"""workers/logfiles.py: the line of a tool's output that says what went wrong."""

from __future__ import annotations

import pytest

from workers.logfiles import first_error_line

GIT_CLONE = """Cloning into 'ws'...
fatal: '/home/ci/example-repo' does not appear to be a git repository
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (GIT_CLONE, "fatal: '/home/ci/example-repo' does not appear to be a git repository"),
        ("hint: something\nerror: pathspec 'x' did not match\n", "error: pathspec 'x' did not match"),
        ("\n\n  just one line  \n", "just one line"),
        ("first\nsecond\n", "first"),
        ("", ""),
    ],
    ids=["git-clone", "error-after-hint", "blank-lines", "no-error-word", "empty"],
)
def test_first_error_line(text: str, line: str) -> None:
    assert first_error_line(text) == line
