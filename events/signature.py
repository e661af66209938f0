"""Webhook authentication: `X-Hub-Signature: sha256=<hex>` HMACs over the raw body, shared tokens, and
HTTP basic auth whose password is the token (all the Jenkins Notification plugin can send).

All compare in constant time. The HMAC is computed over the exact bytes received, before any JSON
parsing. Like Atlassian's own clients, the algorithm prefix may be sha1, sha256, sha384 or sha512.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from events.errors import SignatureError

_ALGORITHMS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    """The header value a sender with `secret` would send (used by tests and `bench/`)."""
    return f"{algorithm}=" + hmac.new(secret.encode(), body, _ALGORITHMS[algorithm]).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> None:
    if not header:
        raise SignatureError("the request has no X-Hub-Signature header, but a webhook secret is configured")
    algorithm, _, digest = header.strip().partition("=")
    hasher = _ALGORITHMS.get(algorithm.lower())
    if hasher is None or not digest or not header.isascii():  # compare_digest refuses non-ASCII text
        raise SignatureError(f"X-Hub-Signature must look like `sha256=<hex>`, not {header[:20]!r}")
    expected = hmac.new(secret.encode(), body, hasher).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        raise SignatureError("X-Hub-Signature does not match the body: check the webhook secret")


def verify_token(given: str | None, expected: str) -> None:
    if not given:
        raise SignatureError("the request has no X-Podci-Token header, but a token is configured")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignatureError("X-Podci-Token is wrong: check the token configured in Jenkins")


def verify_basic(header: str | None, expected: str) -> None:
    """`Authorization: Basic base64(user:password)` whose password is `expected`; any user name. The
    Jenkins Notification plugin sends no custom header, only the `user:pass@` of its endpoint URL."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise SignatureError("the request has no `Authorization: Basic` header")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the `Authorization: Basic` header is not base64") from None
    _, colon, password = decoded.partition(b":")
    if not colon or not hmac.compare_digest(password, expected.encode()):
        raise SignatureError("the password in `Authorization: Basic` is not the Jenkins token")
