"""The parsers and the receiver's signature checks against podci's own corpus (tests/fixtures).

Each case carries the decision it must produce, written by hand beside the payload, so a parser change
that alters what a documented delivery does shows up as a failing case. The corpus is part of the
repository: unlike test_bitbucket_corpus.py, nothing here needs ../shared.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from events.decide import decide
from events.errors import PayloadError, SignatureError
from events.receiver import check_bitbucket, check_jenkins
from schemas.event import Decision
from schemas.request import Revision
from schemas.settings import Settings
from testkit.corpus import DEFAULT_OPTIONS, SENDERS, Case, load, stray_files

CASES = load()
SIGNED = [case for case in CASES if case.auth is not None]
UNSIGNED = [case for case in CASES if case.auth is None]
SECRET_SETTINGS = ("bitbucket_cloud_secret", "bitbucket_server_secret", "jenkins_secret", "jenkins_token")
COMMON_KEYS = {"action", "reason", "provider", "event", "delivery_id", "repo", "pull_request"}
BUILD_KEYS = COMMON_KEYS | {"job", "number", "fork", "triggered_by", "author", "trusted", "source", "target",
                            "callback_url"}  # fmt: skip
APPROVE_KEYS = COMMON_KEYS | {"actor"}
OPTIONAL_KEYS = {"options", "auth"}


def ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


def decided(case: Case) -> Decision:
    return decide(case.source, case.headers, case.raw, case.options)


def revision(value: Revision | None) -> dict[str, Any] | None:
    return None if value is None else value.model_dump()


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_the_decision_is_the_expected_one(case: Case) -> None:
    expected = case.expected
    if expected["action"] == "error":
        with pytest.raises(PayloadError) as refused:
            decided(case)
        assert expected["error"] in str(refused.value)
        return
    decision = decided(case)
    assert decision.action.value == expected["action"], decision.reason
    assert expected["reason"] in decision.reason
    assert (decision.provider, decision.event, decision.delivery_id) == (
        expected["provider"],
        expected["event"],
        expected["delivery_id"],
    )
    assert (decision.repo, decision.pull_request) == (expected["repo"], expected["pull_request"])
    assert decision.actor == expected.get("actor")
    request = decision.request
    if expected["action"] != "build":
        assert request is None
        return
    assert request is not None
    got = {
        "job": request.job,
        "number": request.number,
        "repo": request.repo,
        "pull_request": request.pull_request,
        "fork": request.fork,
        "triggered_by": request.triggered_by,
        "author": request.author,
        "trusted": request.trusted,
        "source": revision(request.source),
        "target": revision(request.target),
        "callback_url": request.callback_url,
    }
    assert got == {key: expected[key] for key in got}
    assert (request.provider, request.event, request.delivery_id) == (
        decision.provider,
        decision.event,
        decision.delivery_id,
    )


def settings_with(**secrets: str) -> Settings:
    """Every secret named, the rest explicitly unset, so that no PODCI_* variable of the machine counts."""
    values: dict[str, SecretStr | None] = dict.fromkeys(SECRET_SETTINGS)
    values.update({name: SecretStr(secret) for name, secret in secrets.items()})
    return Settings(**values)  # type: ignore[arg-type]  # pydantic-settings takes the fields as kwargs


def check(case: Case, settings: Settings, body: bytes | None = None) -> None:
    """The receiver's own check for the endpoint the case is posted to, on lowercased headers as it does."""
    receiver_check = check_jenkins if case.sender == "jenkins" else check_bitbucket
    receiver_check(settings, case.lowered, case.raw if body is None else body)


def setting_of(case: Case) -> str:
    assert case.auth is not None
    return case.auth["setting"].removeprefix("PODCI_").lower()


@pytest.mark.parametrize("case", SIGNED, ids=ids(SIGNED))
def test_a_signed_case_verifies_with_its_secret_only(case: Case) -> None:
    assert case.auth is not None
    assert case.auth["header"] in case.headers
    setting, secret = setting_of(case), case.auth["secret"]
    # The other product's setting holds another key: a Cloud delivery must be checked with the Cloud
    # secret, a Server one with the Server secret.
    others = {name: "the-key-of-another-sender" for name in SECRET_SETTINGS if name != setting}
    if case.sender == "jenkins":
        others = {}  # a Jenkins token and secret together change which header is checked
    check(case, settings_with(**others, **{setting: secret}))
    with pytest.raises(SignatureError):
        check(case, settings_with(**others, **{setting: secret + "-wrong"}))
    if case.auth["header"] == "X-Hub-Signature":
        with pytest.raises(SignatureError, match="does not match the body"):
            check(case, settings_with(**{setting: secret}), case.raw + b"\n")


@pytest.mark.parametrize("case", UNSIGNED, ids=ids(UNSIGNED))
def test_an_unsigned_case_is_refused_once_a_secret_is_set(case: Case) -> None:
    if case.sender == "jenkins":
        configured = settings_with(jenkins_token="corpus-jenkins-token-Rw3k")
    else:
        configured = settings_with(
            bitbucket_cloud_secret="corpus-other-cloud-key", bitbucket_server_secret="corpus-other-server-key"
        )
    with pytest.raises(SignatureError):
        check(case, configured)


def test_every_fixture_file_belongs_to_a_complete_case() -> None:
    assert stray_files() == []
    assert CASES, "no cases found"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_every_expectation_is_complete(case: Case) -> None:
    """A missing key would make the decision test skip a comparison without failing."""
    expected = case.expected
    assert expected["provider"] == case.sender
    assert set(expected.get("options", {})) <= set(DEFAULT_OPTIONS)
    carries = {"X-Hub-Signature", "X-Podci-Token"} & set(case.headers)
    assert carries == ({expected["auth"]["header"]} if "auth" in expected else set())
    if expected["action"] == "error":
        assert set(expected) - OPTIONAL_KEYS == {"action", "error", "provider"}
        assert expected["error"]
        return
    assert expected["action"] in ("build", "cancel", "ignored", "ping", "approve", "retest")
    wanted = {"build": BUILD_KEYS, "approve": APPROVE_KEYS, "retest": APPROVE_KEYS}.get(
        expected["action"], COMMON_KEYS
    )
    assert set(expected) - OPTIONAL_KEYS == wanted
    assert expected["reason"]


def test_the_corpus_covers_every_event_podci_reads_or_ignores() -> None:
    events: dict[str, set[str]] = {sender: set() for sender in SENDERS}
    for case in CASES:
        expected = case.expected
        if expected["action"] != "error":
            events[case.sender].add(expected["event"])
    assert events["bitbucket-cloud"] >= {
        "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected",
        "pullrequest:comment_created", "repo:push", "repo:commit_status_created",
        "repo:commit_status_updated",
    }  # fmt: skip
    assert events["bitbucket-server"] >= {
        "pr:opened", "pr:from_ref_updated", "pr:modified", "pr:merged", "pr:declined", "pr:deleted",
        "pr:comment:added", "repo:refs_changed", "diagnostics:ping", "mirror:repo_synchronized",
    }  # fmt: skip
    assert events["jenkins"] >= {"QUEUED", "jenkins:STARTED", "COMPLETED", "FINALIZED", "jenkins:trigger"}
    actions = Counter((case.sender, case.expected["action"]) for case in CASES)
    for sender in SENDERS:
        assert actions[(sender, "build")] and actions[(sender, "ignored")] and actions[(sender, "error")]
    assert actions[("bitbucket-cloud", "cancel")] and actions[("bitbucket-server", "cancel")]
    assert actions[("bitbucket-cloud", "approve")] and actions[("bitbucket-server", "approve")]
    assert actions[("bitbucket-cloud", "retest")] and actions[("bitbucket-server", "retest")]
    assert any(case.expected.get("trusted") is False for case in CASES if case.sender == "bitbucket-cloud")
    assert any(case.expected.get("trusted") is False for case in CASES if case.sender == "bitbucket-server")
    assert actions[("bitbucket-server", "ping")]
    assert any(case.expected.get("fork") for case in CASES if case.sender == "bitbucket-cloud")
    assert any(case.expected.get("fork") for case in CASES if case.sender == "bitbucket-server")
    schemes = {case.headers.get("X-Hub-Signature", "").partition("=")[0] for case in SIGNED} - {""}
    assert schemes == {"sha1", "sha256", "sha384", "sha512"}
    assert {case.auth["header"] for case in SIGNED if case.auth and case.sender == "jenkins"} == {
        "X-Hub-Signature",
        "X-Podci-Token",
    }
