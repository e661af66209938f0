"""The normalized build request: what every event source is reduced to before it is queued."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Provider = Literal["manual", "bitbucket-cloud", "bitbucket-server", "jenkins"]
BitbucketProduct = Literal["bitbucket-cloud", "bitbucket-server"]

# Every free-text field has a bound: a request is stored for PODCI_RETENTION_DAYS, and one with
# megabyte-long fields once stored 917,576 bytes. Refs: Bitbucket's own limit is 255 characters.
NAME_MAX, REF_MAX, URL_MAX = 200, 255, 2000

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
        shown = value if len(value) <= 60 else value[:57] + "..."  # the sender controls its length
        raise ValueError(f"{shown!r} is not a usable git ref name")
    return value


class Revision(BaseModel):
    """One side of a merge: where to fetch it from and which ref (and, when known, commit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_url: str = Field(
        min_length=1, max_length=URL_MAX, description="URL or local path git can fetch from"
    )
    ref: str = Field(max_length=REF_MAX, description="branch or tag name, e.g. `feature/login`")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")

    _ref_ok = field_validator("ref")(check_ref)

    @field_validator("clone_url")
    @classmethod
    def _not_an_option(cls, value: str) -> str:
        if value.startswith("-") or any(ord(ch) < 32 for ch in value):
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise ValueError(f"{shown!r} is not a usable clone URL")
        return value


class BuildRequest(BaseModel):
    """What to build. `target` is what `source` is merged into; without a target the source is built as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str = Field(min_length=1, max_length=NAME_MAX, description="JOB_NAME of the build")
    number: int | None = Field(default=None, ge=1, description="BUILD_NUMBER; given by Jenkins, else counted")
    repo: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        description="full name of the target repository, e.g. `team/webapp`",
    )
    source: Revision
    target: Revision | None = None
    pull_request: int | None = Field(default=None, ge=1)
    triggered_by: str = Field(default="unknown", max_length=NAME_MAX)
    fork: bool = False
    event: str = Field(
        default="manual", max_length=NAME_MAX, description="the event that asked for the build"
    )
    delivery_id: str | None = Field(default=None, max_length=NAME_MAX)
    provider: Provider = "manual"
    # Who wrote the pull request (Bitbucket Cloud account id, Server user name): whom trust is about.
    author: str = Field(default="", max_length=NAME_MAX)
    # False for a fork's or an untrusted author's pull request: it waits for approval, reads its
    # config from the target branch and runs under the `restricted` Pod Security Standard. The
    # parsers decide it (PODCI_TRUSTED_*); a manual, Jenkins or branch build is trusted.
    trusted: bool = True
    callback_url: str | None = Field(
        default=None, max_length=URL_MAX, description="receives the final build record (Jenkins)"
    )

    @property
    def pr_key(self) -> str | None:
        """Identifies the pull request across its builds, per source (`bitbucket-cloud:team/webapp#12`)."""
        return None if self.pull_request is None else pr_key(self.provider, self.repo, self.pull_request)

    @property
    def remote_only(self) -> bool:
        """Fetched over http(s) or ssh only: a webhook names a URL, and only `podci run` (`manual`)
        may name a path or `file://` on the worker's own disk."""
        return self.provider != "manual"


def pr_key(provider: str, repo: str, pull_request: int) -> str:
    """A pull request as one source names it: a Jenkins request about `team/webapp#8` is never about
    Bitbucket's pull request #8, so it can neither supersede nor cancel its builds."""
    return f"{provider}:{repo}#{pull_request}"
