"""Webhook authentication rules: HMAC signatures, tokens, and which secret applies to which sender."""

from __future__ import annotations

import base64

import pytest

from events.errors import SignatureError
from events.receiver import HookOff, check_bitbucket, check_jenkins
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


# Secrets of the minimum length; each receiver checks with its own.
S, C, T, H = "server-secret-16c", "cloud-secret-16ch", "jenkins-token-16c", "jenkins-hmac-16ch"


def settings(**configured: str) -> Settings:
    unset = dict.fromkeys(
        ("bitbucket_cloud_secret", "bitbucket_server_secret", "jenkins_token", "jenkins_secret")
    )
    return Settings(redis_url="redis://unused", **{**unset, **configured})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configured", "headers", "ok"),
    [({}, {"x-event-key": "pr:opened"}, False),  # closed by default: no secret, no delivery
     ({"insecure_unsigned_hooks": "bitbucket-server"}, {"x-event-key": "pr:opened"}, True),
     ({"insecure_unsigned_hooks": "bitbucket-server"}, {"x-request-uuid": "1"}, False),  # Cloud is not
     ({"bitbucket_server_secret": S}, {"x-request-id": "1", "x-hub-signature": sign(BODY, S)}, True),
     ({"bitbucket_server_secret": S}, {"x-request-id": "1"}, False),
     # a sender may not escape the Server secret by posing as Cloud
     ({"bitbucket_server_secret": S}, {"x-request-uuid": "1", "x-event-key": "pullrequest:created"}, False),
     ({"bitbucket_cloud_secret": C, "bitbucket_server_secret": S},
      {"x-request-uuid": "1", "x-hub-signature": sign(BODY, S)}, False),
     ({"bitbucket_cloud_secret": C, "bitbucket_server_secret": S},
      {"x-request-uuid": "1", "x-hub-signature": sign(BODY, C)}, True)],
)  # fmt: skip
def test_which_bitbucket_secret_applies(
    configured: dict[str, str], headers: dict[str, str], ok: bool
) -> None:
    if ok:
        check_bitbucket(settings(**configured), headers, BODY)
    else:
        with pytest.raises(SignatureError):
            check_bitbucket(settings(**configured), headers, BODY)


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("configured", "headers", "ok"),
    [({}, {}, False),
     ({"insecure_unsigned_hooks": "jenkins"}, {}, True),
     ({"jenkins_token": T}, {"x-podci-token": T}, True),
     ({"jenkins_token": T}, {"x-podci-token": T.upper()}, False),
     ({"jenkins_token": T}, {}, False),
     # the Notification plugin's endpoint `http://podci:<token>@host/hooks/jenkins`
     ({"jenkins_token": T}, basic("podci", T), True),
     ({"jenkins_token": T}, basic("anyone", T), True),
     ({"jenkins_token": T}, basic(T, "wrong"), False),
     ({"jenkins_token": T}, {"authorization": "Basic not-base64!"}, False),
     ({"jenkins_token": T}, {"authorization": f"Bearer {T}"}, False),
     ({"jenkins_secret": H}, basic("podci", H), False),  # the HMAC key is not a password
     ({"jenkins_secret": H}, {"x-hub-signature": sign(BODY, H)}, True),
     ({"jenkins_secret": H}, {"x-hub-signature": sign(BODY, "x")}, False),
     ({"jenkins_token": T, "jenkins_secret": H}, {"x-hub-signature": sign(BODY, H)}, True),
     ({"jenkins_token": T, "jenkins_secret": H}, {"x-podci-token": T}, True),
     ({"jenkins_token": T, "jenkins_secret": H},
      {"x-podci-token": "no", "x-hub-signature": sign(BODY, H)}, False)],
)  # fmt: skip
def test_jenkins_token_or_hmac(configured: dict[str, str], headers: dict[str, str], ok: bool) -> None:
    if ok:
        check_jenkins(settings(**configured), headers, BODY)
    else:
        with pytest.raises(SignatureError):
            check_jenkins(settings(**configured), headers, BODY)


@pytest.mark.parametrize(
    ("configured", "hook", "headers"),
    [({"hooks": "bitbucket-server,jenkins", "bitbucket_server_secret": S, "jenkins_token": T},
      "bitbucket", {"x-request-uuid": "1"}),
     ({"hooks": "bitbucket-cloud", "bitbucket_cloud_secret": C}, "bitbucket", {"x-request-id": "1"}),
     ({"hooks": "bitbucket-cloud", "bitbucket_cloud_secret": C}, "jenkins", {"x-podci-token": T})],
)  # fmt: skip
def test_a_receiver_that_is_off_is_not_there(
    configured: dict[str, str], hook: str, headers: dict[str, str]
) -> None:
    check = check_jenkins if hook == "jenkins" else check_bitbucket
    with pytest.raises(HookOff, match="receiver is off"):
        check(settings(**configured), headers, BODY)
