"""events/jenkins.py: the Notification plugin's JSON and the generic trigger, one table each."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from events.errors import PayloadError
from events.jenkins import parse, repo_from_url
from events.options import ParseOptions
from schemas.event import Action

SHA = "0123456789abcdef0123456789abcdef01234567"
OPTIONS = ParseOptions(clone_hosts=("bitbucket.org",), jenkins_urls=("https://jenkins.example.com/",))


def note(phase: str, **build: Any) -> dict[str, Any]:
    """A Notification plugin body as its Gson encoder writes it: optional fields simply absent."""
    scm = {"url": "https://bitbucket.org/team/webapp.git", "branch": "origin/feature/login", "commit": SHA}
    return {"name": "webapp-ci", "display_name": "webapp-ci", "url": "job/webapp-ci/",
            "build": {"number": 42, "queue_id": 7, "phase": phase, "timestamp": 1764064800000,
                      "url": "job/webapp-ci/42/", "scm": scm, "artifacts": {}, **build}}  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "trigger", "action"),
    [("STARTED", "STARTED", Action.build), ("QUEUED", "STARTED", Action.ignored),
     ("COMPLETED", "STARTED", Action.ignored), ("FINALIZED", "FINALIZED", Action.build),
     ("started", "STARTED", Action.build)],
)  # fmt: skip
def test_notification_phase_decides(phase: str, trigger: str, action: Action) -> None:
    decision = parse({}, note(phase), replace(OPTIONS, jenkins_phase=trigger))
    assert decision.action is action
    if action is Action.ignored:
        assert (
            decision.reason
            == f"phase {phase.upper()} does not start builds (PODCI_JENKINS_PHASE is {trigger})"
        )


def test_notification_becomes_job_name_and_build_number() -> None:
    decision = parse({"x-request-id": "r1"}, note("STARTED", status="SUCCESS"), OPTIONS)
    request = decision.request
    assert request is not None
    assert (request.job, request.number, request.repo) == ("webapp-ci", 42, "team/webapp")
    assert (request.source.clone_url, request.source.ref, request.source.commit) == (
        "https://bitbucket.org/team/webapp.git", "feature/login", SHA)  # fmt: skip
    assert (request.target, request.provider, request.delivery_id) == (None, "jenkins", "r1")


TRIGGER = {"job": "webapp-ci", "build_number": 5, "clone_url": "git@bitbucket.org:team/webapp.git",
           "source_branch": "feature/x", "target_branch": "main", "commit": SHA[:12],
           "callback_url": "https://jenkins.example.com/webhook-step/abc", "pull_request": 3}  # fmt: skip


def test_generic_trigger_carries_its_callback() -> None:
    request = parse({}, TRIGGER, OPTIONS).request
    assert request is not None
    assert (request.job, request.number, request.repo, request.pull_request) == (
        "webapp-ci",
        5,
        "team/webapp",
        3,
    )
    assert request.target is not None and request.target.ref == "main"
    assert request.callback_url == TRIGGER["callback_url"]


@pytest.mark.parametrize(
    ("body", "words"),
    [([], "must be a JSON object"),
     ({**TRIGGER, "build_number": "five"}, "`build_number`"),
     ({k: v for k, v in TRIGGER.items() if k != "clone_url"}, "`clone_url`: Field required"),
     ({**TRIGGER, "callback_url": "file:///etc/passwd"}, "`callback_url`"),
     ({**TRIGGER, "source_branch": "--upload-pack=x"}, "not a usable git ref name"),
     ({**TRIGGER, "surprise": 1}, "`surprise`"),
     ({**note("STARTED"), "name": ""}, "`name`"),
     ({"name": "j", "build": {"number": 1, "phase": "STARTED"}}, "`build.scm` is missing"),
     ({"name": "j", "build": {"phase": "STARTED"}}, "`build.number`")],
)  # fmt: skip
def test_bad_bodies_name_the_field(body: Any, words: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse({}, body, OPTIONS)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("url", "repo"),
    [("https://bitbucket.org/team/webapp.git", "team/webapp"),
     ("git@bitbucket.org:team/webapp.git", "team/webapp"),
     ("https://host/scm/prj/repo/", "prj/repo"), ("/srv/git/app", "git/app")],
)  # fmt: skip
def test_repo_from_url(url: str, repo: str) -> None:
    assert repo_from_url(url) == repo
