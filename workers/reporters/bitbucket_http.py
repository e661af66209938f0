"""What the two Bitbucket reporters (Cloud, Server/Data Center) share: sending a status and sorting the
answer.

What is posted is decided in `workers.reporters.status` (pure, table-tested); this module only sends it
and sorts the answer the way the `Reporter` protocol asks: 2xx is a note, 429/5xx/network trouble is a
`TransientError` (retried by the caller), any other answer is logged with its body and given up as a
note. Credentials never reach a log line or an error message: URLs are logged without their userinfo,
and a response body that echoes a secret back is redacted before it is logged or returned.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from schemas.record import BuildRecord
from schemas.settings import Settings
from workers.errors import Refused, TransientError

log = logging.getLogger(__name__)

TIMEOUT = 10.0
_LOGGED_BODY = 500
_NOTE_BODY = 120


def api_base(url: str) -> str:
    """The API root without userinfo or a trailing slash.

    The reporters authenticate with their own settings; a `user:pass@` left in a base URL would make
    httpx send Basic auth over the token, and httpx logs request URLs whole.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _one_line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


class BitbucketReporter:
    """The sending and the sorting of answers that both products share."""

    name: str = ""

    def __init__(
        self, settings: Settings, client: httpx.Client | None = None, *, timeout: float = TIMEOUT
    ) -> None:
        self.settings = settings
        self._client = client
        self.timeout = timeout

    @property
    def client(self) -> httpx.Client:
        """One client per reporter, made in the process that posts (reporters are made after the fork):
        a new client per post builds a TLS context each time, which cost more CPU than the post."""
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    # What each product fills in.
    def _request(self, record: BuildRecord) -> tuple[str, dict[str, Any]] | None:
        raise NotImplementedError

    def _auth(self) -> tuple[dict[str, str], httpx.Auth | None, list[str]]:
        """Extra headers, an httpx auth, and every secret string that must never be logged."""
        raise NotImplementedError

    def applies(self, record: BuildRecord) -> bool:
        raise NotImplementedError

    def report(self, record: BuildRecord) -> str:
        try:
            target = self._request(record)
        except ValueError as exc:  # the build URL is too long: no retry will shorten it
            log.warning("build=%s %s not posted: %s", record.id, self.name, exc)
            return f"{self.name}: not posted: {exc}"
        if target is None:
            return f"{self.name}: nothing to post (no source commit or repository)"
        url, body = target
        headers, auth, secrets = self._auth()
        try:
            response = self._send(self.client, url, body, headers, auth)
        except httpx.RequestError as exc:
            # The exception's text is not used: only its type, and the URL without userinfo.
            raise TransientError(f"{self.name} to {url} failed: {type(exc).__name__}") from None
        code = response.status_code
        if code == 429 or code >= 500:
            raise Refused(f"{self.name} to {url} answered {code}")
        if 200 <= code < 300:
            return f"{self.name}: posted {body['state']}"
        text = _redact(response.text, secrets)
        log.warning("build=%s %s to %s refused with %d: %s", record.id, self.name, url, code,
                    text[:_LOGGED_BODY])  # fmt: skip
        return f"{self.name}: refused with {code}: {_one_line(text, _NOTE_BODY)}"

    def _lookup(self, url: str, key: str) -> tuple[str, dict[str, str]]:
        """Where one status of the commit is read: the URL and its query."""
        raise NotImplementedError

    def _status_in(self, answer: Any, key: str) -> Any:
        """The status of `key` in the lookup's answer (None when absent)."""
        return answer

    def shows(self, record: BuildRecord) -> bool:
        try:
            target = self._request(record)
        except ValueError:
            return False
        if target is None:
            return False
        url, body = target
        where, query = self._lookup(url, str(body["key"]))
        headers, auth, _ = self._auth()
        try:
            response = self.client.get(where, params=query, headers=headers, auth=auth, timeout=self.timeout)
            found = (
                self._status_in(response.json(), str(body["key"])) if response.status_code == 200 else None
            )
        except (httpx.RequestError, ValueError):
            return False
        return (
            isinstance(found, dict)
            and found.get("state") == body["state"]
            and found.get("url") == body["url"]
        )

    def _send(
        self,
        client: httpx.Client,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        auth: httpx.Auth | None,
    ) -> httpx.Response:
        if auth is None:
            return client.post(url, json=body, headers=headers, timeout=self.timeout)
        return client.post(url, json=body, headers=headers, auth=auth, timeout=self.timeout)
