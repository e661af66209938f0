"""Jenkins: the Notification plugin's JSON, and podci's own generic trigger body.

Notification plugin (jenkinsci/notification-plugin): `{name, build: {number, phase, status?, scm:
{url, branch, commit}}}`; optional fields may be absent. Only the configured phase starts a build.
The generic trigger is what a Jenkinsfile `httpRequest` step posts (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from events.errors import PayloadError
from events.options import ParseOptions
from events.payload import clip, is_unicode
from schemas.errors import describe
from schemas.event import Action, Decision
from schemas.request import NAME_MAX, REF_MAX, URL_MAX, BuildRequest
from schemas.urls import callback_problem, clone_url_problem


def _unicode(value: Any) -> Any:
    """Refuse a lone surrogate here, naming the field, rather than fail on it later (see is_unicode)."""
    if isinstance(value, str) and not is_unicode(value):
        raise ValueError("holds a lone surrogate, which is not valid Unicode text")
    return value


Text = Annotated[str, BeforeValidator(_unicode)]


class _Scm(BaseModel):
    # The plugin sends `scm` on every notification; for a job without git it holds only the (empty)
    # `changes` and `culprits` lists, so url and branch are checked only when the phase builds.
    url: Text | None = Field(default=None, min_length=1, max_length=URL_MAX)
    branch: Text | None = Field(default=None, min_length=1, max_length=REF_MAX)
    commit: Text | None = Field(default=None, max_length=40)


class _Build(BaseModel):
    number: int = Field(ge=1)
    phase: Text = Field(max_length=NAME_MAX)
    status: Text | None = Field(default=None, max_length=NAME_MAX)
    full_url: Text | None = Field(default=None, max_length=URL_MAX)
    scm: _Scm | None = None


class Notification(BaseModel):
    name: Text = Field(min_length=1, max_length=NAME_MAX)
    build: _Build


class GenericTrigger(BaseModel):
    """Every text field is bounded: the request is stored for PODCI_RETENTION_DAYS, and a longer
    field is a 400 that names it."""

    model_config = ConfigDict(extra="forbid")

    job: Text = Field(min_length=1, max_length=NAME_MAX)
    build_number: int = Field(ge=1)
    clone_url: Text = Field(min_length=1, max_length=URL_MAX)
    source_branch: Text = Field(min_length=1, max_length=REF_MAX)
    commit: Text | None = Field(default=None, max_length=40)
    target_branch: Text | None = Field(default=None, max_length=REF_MAX)
    target_commit: Text | None = Field(default=None, max_length=40)
    repo: Text | None = Field(default=None, max_length=NAME_MAX)
    pull_request: int | None = Field(default=None, ge=1)
    callback_url: Text | None = Field(default=None, pattern=r"^https?://", max_length=URL_MAX)
    triggered_by: Text = Field(default="jenkins", max_length=NAME_MAX)


def repo_from_url(url: str) -> str:
    """`https://host/team/webapp.git` or `git@host:team/webapp.git` -> `team/webapp`."""
    path = url.rstrip("/").removesuffix(".git").replace(":", "/")
    parts = [p for p in path.split("/") if p]
    return "/".join(parts[-2:]) if parts else url


def _decision(request: BuildRequest, event: str, delivery_id: str | None) -> Decision:
    return Decision(action=Action.build, reason=f"Jenkins {event}", provider="jenkins", event=event,
                    delivery_id=delivery_id, request=request, repo=request.repo,
                    pull_request=request.pull_request)  # fmt: skip


def _validate(model: type[BaseModel], body: Any, what: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise PayloadError(describe(exc, what)) from None


def _checked(field: str, url: str, problem: str | None) -> None:
    if problem is not None:
        shown = url if len(url) <= 60 else url[:57] + "..."
        raise PayloadError(f"the Jenkins request is invalid: `{field}` ({shown!r}) {problem}")


def _request(**fields: Any) -> BuildRequest:
    try:
        return BuildRequest(**fields)
    except ValidationError as exc:
        raise PayloadError(describe(exc, "the build this Jenkins request asks for")) from None


def parse_notification(body: Mapping[str, Any], options: ParseOptions, delivery_id: str | None) -> Decision:
    note: Notification = _validate(Notification, body, "the Jenkins notification")
    phase = note.build.phase.upper()
    if phase != options.jenkins_phase:
        return Decision(action=Action.ignored, provider="jenkins", event=phase, delivery_id=delivery_id,
                        reason=f"phase {clip(phase)} does not start builds (PODCI_JENKINS_PHASE is "
                               f"{options.jenkins_phase})")  # fmt: skip
    scm = note.build.scm
    if scm is None or scm.url is None or scm.branch is None:
        field = "build.scm" if scm is None else "build.scm.url" if scm.url is None else "build.scm.branch"
        raise PayloadError(
            f"the Jenkins notification is invalid: `{field}` is missing (is the job a git job?)"
        )
    _checked("build.scm.url", scm.url, clone_url_problem(scm.url, options.clone_hosts))
    branch = scm.branch.split("/", 1)[1] if scm.branch.startswith("origin/") else scm.branch
    request = _request(
        job=note.name, number=note.build.number, repo=repo_from_url(scm.url), provider="jenkins",
        source={"clone_url": scm.url, "ref": branch, "commit": scm.commit},
        triggered_by="jenkins", event=f"jenkins:{phase}", delivery_id=delivery_id,
    )  # fmt: skip
    return _decision(request, f"jenkins:{phase}", delivery_id)


def parse_trigger(body: Mapping[str, Any], options: ParseOptions, delivery_id: str | None) -> Decision:
    trigger: GenericTrigger = _validate(GenericTrigger, body, "the Jenkins trigger")
    _checked("clone_url", trigger.clone_url, clone_url_problem(trigger.clone_url, options.clone_hosts))
    if trigger.callback_url is not None:
        _checked(
            "callback_url", trigger.callback_url, callback_problem(trigger.callback_url, options.jenkins_urls)
        )
    target = None
    if trigger.target_branch:
        target = {
            "clone_url": trigger.clone_url,
            "ref": trigger.target_branch,
            "commit": trigger.target_commit,
        }
    fields = {
        "job": trigger.job, "number": trigger.build_number, "provider": "jenkins",
        "repo": trigger.repo or repo_from_url(trigger.clone_url),
        "source": {"clone_url": trigger.clone_url, "ref": trigger.source_branch, "commit": trigger.commit},
        "target": target,
        "pull_request": trigger.pull_request, "callback_url": trigger.callback_url,
        "triggered_by": trigger.triggered_by, "event": "jenkins:trigger", "delivery_id": delivery_id,
    }  # fmt: skip
    return _decision(_request(**fields), "jenkins:trigger", delivery_id)


def parse(headers: Mapping[str, str], body: Any, options: ParseOptions) -> Decision:
    if not isinstance(body, dict):
        raise PayloadError("the Jenkins request body must be a JSON object")
    delivery_id = headers.get("x-request-id")
    if isinstance(body.get("build"), dict):
        return parse_notification(body, options, delivery_id)
    return parse_trigger(body, options, delivery_id)
