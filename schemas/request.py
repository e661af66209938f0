"""The normalized build request: what every event source is reduced to before it is queued."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Provider = Literal["manual", "bitbucket-cloud", "bitbucket-server", "jenkins"]

# A git ref name is user-controlled (a branch name from a pull request). It is never passed through a
# shell; this pattern only refuses names that git itself would refuse or that could be read as options.
_BAD_REF_CHARS = set(" ~^:?*[\\\x7f")


def check_ref(value: str) -> str:
    refused = (
        not value
        or value.startswith(("-", "/"))
        or value.endswith((".", "/", ".lock"))
        or any(part.startswith(".") for part in value.split("/"))
        or any(ch in _BAD_REF_CHARS or ord(ch) < 32 for ch in value)
        or any(seq in value for seq in ("..", "@{", "//"))
    )
    if refused:
        raise ValueError(f"{value!r} is not a usable git ref name")
    return value


class Revision(BaseModel):
    """One side of a merge: where to fetch it from and which ref (and, when known, commit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_url: str = Field(min_length=1, description="URL or local path git can fetch from")
    ref: str = Field(description="branch or tag name, e.g. `feature/login`")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")

    _ref_ok = field_validator("ref")(check_ref)

    @field_validator("clone_url")
    @classmethod
    def _not_an_option(cls, value: str) -> str:
        if value.startswith("-") or any(ord(ch) < 32 for ch in value):
            raise ValueError(f"{value!r} is not a usable clone URL")
        return value


class BuildRequest(BaseModel):
    """What to build. `target` is what `source` is merged into; without a target the source is built as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(min_length=1, max_length=200, description="JOB_NAME of the build")
    number: int | None = Field(default=None, ge=1, description="BUILD_NUMBER; given by Jenkins, else counted")
    repo: str = Field(min_length=1, description="full name of the target repository, e.g. `team/webapp`")
    source: Revision
    target: Revision | None = None
    pull_request: int | None = Field(default=None, ge=1)
    triggered_by: str = "unknown"
    fork: bool = False
    event: str = Field(default="manual", description="the event that asked for the build")
    delivery_id: str | None = None
    provider: Provider = "manual"
    callback_url: str | None = Field(default=None, description="receives the final build record (Jenkins)")

    @property
    def pr_key(self) -> str | None:
        """Identifies the pull request across its builds: `team/webapp#12`."""
        return None if self.pull_request is None else f"{self.repo}#{self.pull_request}"
