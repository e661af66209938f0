"""What an incoming webhook asks for, decided before anything is queued (also what `podci event` prints)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from schemas.request import BuildRequest, Provider


class Action(StrEnum):
    build = "build"  # start a build of `request`
    cancel = "cancel"  # stop the running builds of pull request `repo`#`pull_request`
    ignored = "ignored"  # nothing to do; `reason` says why
    ping = "ping"  # a connection test from the sender
    approve = "approve"  # a trusted person's `/podci ok-to-test`: start the builds waiting for it
    retest = "retest"  # a trusted person's `/podci retest`: retry the pull request's newest build


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str
    provider: Provider
    event: str = ""
    delivery_id: str | None = None
    request: BuildRequest | None = None
    repo: str | None = None
    pull_request: int | None = None
    actor: str | None = None  # who approves (`approve`) or asks for a retest (`retest`)
