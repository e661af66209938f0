"""Bitbucket build-status reporters (Cloud, and Server/Data Center) and the list every build reports to.

What is posted is decided in `workers.reporters.status` (pure, table-tested); this module only sends it
and sorts the answer the way the `Reporter` protocol asks: 2xx is a note, 429/5xx/network trouble is a
`TransientError` (retried by the caller), any other answer is logged with its body and given up as a
note. Credentials never reach a log line or an error message: URLs are logged without their userinfo,
and a response body that echoes a secret back is redacted before it is logged or returned.
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from schemas.record import BuildRecord
from schemas.settings import Settings
from workers import callback
from workers.errors import TransientError
from workers.reporters import status
from workers.reporters.base import Reporter

log = logging.getLogger(__name__)

TIMEOUT = 10.0
_LOGGED_BODY = 500
_NOTE_BODY = 120


def _base(url: str) -> str:
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


class _Bitbucket:
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
            raise TransientError(f"{self.name} to {url} answered {code}")
        if 200 <= code < 300:
            return f"{self.name}: posted {body['state']}"
        text = _redact(response.text, secrets)
        log.warning("build=%s %s to %s refused with %d: %s", record.id, self.name, url, code,
                    text[:_LOGGED_BODY])  # fmt: skip
        return f"{self.name}: refused with {code}: {_one_line(text, _NOTE_BODY)}"

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


class BitbucketCloud(_Bitbucket):
    """Commit statuses on Bitbucket Cloud, with an access token (Bearer) or a user and app password."""

    name = "bitbucket-cloud"

    def _credentials(self) -> bool:
        s = self.settings
        return s.bitbucket_cloud_token is not None or (
            bool(s.bitbucket_cloud_user) and s.bitbucket_cloud_app_password is not None
        )

    def applies(self, record: BuildRecord) -> bool:
        return (
            record.request.provider == "bitbucket-cloud"
            and self._credentials()
            and status.cloud_path(record) is not None
        )

    def _request(self, record: BuildRecord) -> tuple[str, dict[str, Any]] | None:
        path = status.cloud_path(record)
        if path is None:
            return None
        return _base(self.settings.bitbucket_cloud_api_url) + path, status.cloud_body(
            record, self.settings.public_url
        )

    def _auth(self) -> tuple[dict[str, str], httpx.Auth | None, list[str]]:
        s = self.settings
        if s.bitbucket_cloud_token is not None:
            token = s.bitbucket_cloud_token.get_secret_value()
            return {"Authorization": f"Bearer {token}"}, None, [token]
        user = s.bitbucket_cloud_user or ""
        password = s.bitbucket_cloud_app_password.get_secret_value() if s.bitbucket_cloud_app_password else ""
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {}, httpx.BasicAuth(user, password), [password, encoded]


class BitbucketServer(_Bitbucket):
    """Build statuses on Bitbucket Server/Data Center with an HTTP access token.

    The repository-scoped builds API by default; the legacy `/rest/build-status/1.0` API when
    `bitbucket_server_legacy_status` is set, for servers too old to have the former.
    """

    name = "bitbucket-server"

    def applies(self, record: BuildRecord) -> bool:
        s = self.settings
        path = status.legacy_path(record) if s.bitbucket_server_legacy_status else status.server_path(record)
        return (
            record.request.provider == "bitbucket-server"
            and bool(s.bitbucket_server_url)
            and s.bitbucket_server_token is not None
            and path is not None
        )

    def _request(self, record: BuildRecord) -> tuple[str, dict[str, Any]] | None:
        s = self.settings
        if not s.bitbucket_server_url:
            return None
        public = s.public_url
        if s.bitbucket_server_legacy_status:
            path, body = status.legacy_path(record), status.legacy_body(record, public)
        else:
            path, body = status.server_path(record), status.server_body(record, public)
        return None if path is None else (_base(s.bitbucket_server_url) + path, body)

    def _auth(self) -> tuple[dict[str, str], httpx.Auth | None, list[str]]:
        token = self.settings.bitbucket_server_token
        value = token.get_secret_value() if token is not None else ""
        return {"Authorization": f"Bearer {value}"}, None, [value]


class JenkinsCallback:
    """The Jenkins generic trigger's `callback_url`, which takes the final record only."""

    name: str = callback.REPORTER

    def applies(self, record: BuildRecord) -> bool:
        return bool(record.request.callback_url) and record.state.final

    def report(self, record: BuildRecord) -> str:
        url = record.request.callback_url
        if not url:
            return f"{self.name}: no callback_url"
        return callback.post_result(record, url)


def make_reporters(settings: Settings) -> list[Reporter]:
    """Every reporter a build may have; each decides with `applies` whether it has something to say."""
    return [BitbucketCloud(settings), BitbucketServer(settings), JenkinsCallback()]
