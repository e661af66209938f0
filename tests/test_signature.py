"""Webhook authentication rules: HMAC signatures, tokens, and which secret applies to which sender."""

from __future__ import annotations

import pytest

from events.errors import SignatureError
from events.receiver import check_bitbucket, check_jenkins
from events.signature import sign, verify_signature
from schemas.settings import Settings

BODY = b'{"eventKey": "pr:opened"}'


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_every_prefix_bitbucket_accepts_verifies(algorithm: str) -> None:
    verify_signature(BODY, sign(BODY, "k", algorithm), "k")
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(BODY + b" ", sign(BODY, "k", algorithm), "k")


@pytest.mark.parametrize(
    ("header", "words"),
    [(None, "no X-Hub-Signature"), ("", "no X-Hub-Signature"), ("abc", "must look like"),
     ("md5=abc", "must look like"), ("sha256=", "must look like"), ("sha256=" + "0" * 64, "does not match")],
)  # fmt: skip
def test_bad_signatures(header: str | None, words: str) -> None:
    with pytest.raises(SignatureError, match=words):
        verify_signature(BODY, header, "k")


def settings(**secrets: str) -> Settings:
    return Settings(redis_url="redis://unused", **secrets)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configured", "headers", "ok"),
    [({}, {"x-event-key": "pr:opened"}, True),
     ({"bitbucket_server_secret": "s"}, {"x-request-id": "1", "x-hub-signature": sign(BODY, "s")}, True),
     ({"bitbucket_server_secret": "s"}, {"x-request-id": "1"}, False),
     # a sender may not escape the Server secret by posing as Cloud
     ({"bitbucket_server_secret": "s"}, {"x-request-uuid": "1", "x-event-key": "pullrequest:created"}, False),
     ({"bitbucket_cloud_secret": "c", "bitbucket_server_secret": "s"},
      {"x-request-uuid": "1", "x-hub-signature": sign(BODY, "s")}, False),
     ({"bitbucket_cloud_secret": "c", "bitbucket_server_secret": "s"},
      {"x-request-uuid": "1", "x-hub-signature": sign(BODY, "c")}, True)],
)  # fmt: skip
def test_which_bitbucket_secret_applies(
    configured: dict[str, str], headers: dict[str, str], ok: bool
) -> None:
    if ok:
        check_bitbucket(settings(**configured), headers, BODY)
    else:
        with pytest.raises(SignatureError):
            check_bitbucket(settings(**configured), headers, BODY)


@pytest.mark.parametrize(
    ("configured", "headers", "ok"),
    [({}, {}, True),
     ({"jenkins_token": "t"}, {"x-podci-token": "t"}, True),
     ({"jenkins_token": "t"}, {"x-podci-token": "T"}, False),
     ({"jenkins_token": "t"}, {}, False),
     ({"jenkins_secret": "h"}, {"x-hub-signature": sign(BODY, "h")}, True),
     ({"jenkins_secret": "h"}, {"x-hub-signature": sign(BODY, "x")}, False),
     ({"jenkins_token": "t", "jenkins_secret": "h"}, {"x-hub-signature": sign(BODY, "h")}, True),
     ({"jenkins_token": "t", "jenkins_secret": "h"}, {"x-podci-token": "t"}, True),
     ({"jenkins_token": "t", "jenkins_secret": "h"},
      {"x-podci-token": "no", "x-hub-signature": sign(BODY, "h")}, False)],
)  # fmt: skip
def test_jenkins_token_or_hmac(configured: dict[str, str], headers: dict[str, str], ok: bool) -> None:
    if ok:
        check_jenkins(settings(**configured), headers, BODY)
    else:
        with pytest.raises(SignatureError):
            check_jenkins(settings(**configured), headers, BODY)
