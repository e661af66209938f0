"""What a person's action on one build (retry, cancel) answers: shared by the code that acts
(`dispatch.actions`) and the places that ask for it (the CLI, the pages, a pull request comment), so
none of them needs to know the others."""

from __future__ import annotations

from dataclasses import dataclass


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
