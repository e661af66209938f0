"""One entry point for `POST /hooks/bitbucket`: tell Cloud from Server/Data Center, then parse. Pure.

Both products send `X-Event-Key`; they differ in the delivery id header (Cloud `X-Request-UUID`,
Server `X-Request-Id`) and in the body (only Server repeats the key as `eventKey`), which is how
jenkinsci/bitbucket-branch-source-plugin tells them apart too (API-NOTES a). When neither says, the
event key's own vocabulary does: `pr:*`, `repo:refs_changed`, `diagnostics:*` and `mirror:*` exist
only on Server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events import bitbucket_cloud, bitbucket_server
from events.errors import PayloadError
from events.options import ParseOptions
from events.payload import NO_EVENT_KEY, Envelope
from schemas.event import Decision
from schemas.request import BitbucketProduct

_SERVER_KEYS = ("pr:", "repo:refs_changed", "diagnostics:", "mirror:")


def parse(headers: Mapping[str, str], body: Any, options: ParseOptions) -> Decision:
    """Decide what a Bitbucket delivery asks for; a malformed one raises PayloadError."""
    headers = {name.lower(): value for name, value in headers.items()}
    event = headers.get("x-event-key", "")
    if not event and not (isinstance(body, dict) and isinstance(body.get("eventKey"), str)):
        raise PayloadError(NO_EVENT_KEY)
    if _from_post_webhooks_addon(headers, body):
        return Envelope("bitbucket-server", event, headers.get("x-request-id") or None).ignored(
            "this request comes from the Post Webhooks for Bitbucket add-on, not a native Bitbucket "
            "webhook; add a native webhook in the repository settings instead"
        )
    if _is_server(headers, body, event):
        return bitbucket_server.parse(headers, body, options)
    return bitbucket_cloud.parse(headers, body, options)


def provider_from_headers(headers: Mapping[str, str]) -> BitbucketProduct:
    """Which product sent it, from the headers alone: the receiver must pick the secret to verify the
    signature with before it reads the body."""
    if "x-request-id" in headers:
        return "bitbucket-server"
    if "x-request-uuid" in headers:
        return "bitbucket-cloud"
    server = headers.get("x-event-key", "").startswith(_SERVER_KEYS)
    return "bitbucket-server" if server else "bitbucket-cloud"


def _is_server(headers: Mapping[str, str], body: Any, event: str) -> bool:
    if isinstance(body, dict) and "eventKey" in body:
        return True
    return provider_from_headers(headers) == "bitbucket-server"


def _from_post_webhooks_addon(headers: Mapping[str, str], body: Any) -> bool:
    """The third-party add-on sends `X-Bitbucket-Type` and Cloud-style keys over Server-style objects.

    Its bodies look like Cloud's (`pullrequest`, `push`) but hold Server shapes (`fromRef`, a
    repository with `fullName`); no native Cloud body has either.
    """
    if "x-bitbucket-type" in headers:
        return True
    if not isinstance(body, dict) or "eventKey" in body:
        return False
    pullrequest, repository = body.get("pullrequest"), body.get("repository")
    return (isinstance(pullrequest, dict) and "fromRef" in pullrequest) or (
        isinstance(repository, dict) and "fullName" in repository and "full_name" not in repository
    )
