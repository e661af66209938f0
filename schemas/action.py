"""What a person's action on one build (retry, cancel) answers: shared by the code that acts
(`dispatch.actions`) and the places that ask for it (the CLI, the pages, a pull request comment), so
none of them needs to know the others."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.record import BuildRecord


@dataclass(frozen=True)
class Acted:
    """`build_id`: the build to look at now (a retry's new build, the cancelled build); `changed`:
    whether this call did something (false: it was done before, or there was nothing to do)."""

    build_id: str
    sentence: str
    changed: bool


class ActionRefused(Exception):
    """The action cannot be done; the message is a sentence for the person who asked."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class UnknownBuild(ActionRefused):
    """No such build (never was, or expired)."""


class NotPossible(ActionRefused):
    """The build exists, but not in a state that allows the action (a retry of a running build)."""


def retry_refusal(record: BuildRecord) -> str | None:
    """Why the build cannot be retried, or None (the pages show a Retry button when None, and import
    it from here: they may not import `dispatch`). A running build would run twice beside itself; a
    build numbered by Jenkins gets its next number from Jenkins, never from podci."""
    if not record.complete:
        return (f"build {record.id} is {record.state.label}: only a finished build can be retried "
                "(cancel it first, or wait for it to end)")  # fmt: skip
    if record.request.number is not None:
        return (f"build {record.id} was numbered by Jenkins (BUILD_NUMBER {record.request.number}): "
                "retry it in Jenkins, which gives the next number")  # fmt: skip
    return None


def may_cancel(record: BuildRecord) -> bool:
    """Whether a cancel would do something (the pages show a Cancel button then)."""
    return not record.complete and not record.cancel_requested
