"""The Jenkins generic trigger's `callback_url` receives the final build record as JSON.

A 5xx, 429 or connection error is a `TransientError`, which `podci.notify` retries with backoff; a 4xx
is logged with the response and given up. It never changes the build's result. Only the URL's scheme,
host and path are ever logged: the URL may carry credentials.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx

from schemas.record import BuildRecord, utcnow
from workers.errors import TransientError

log = logging.getLogger(__name__)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class JenkinsCallback:
    """Takes the final record only: Jenkins waits for one answer per build."""

    name = "jenkins-callback"

    def __init__(self, timeout: float = 10) -> None:
        self.timeout = timeout

    def applies(self, record: BuildRecord) -> bool:
        return bool(record.request.callback_url) and record.state.final

    def says(self, record: BuildRecord) -> str:
        return record.state.value

    def report(self, record: BuildRecord) -> str:
        url = record.request.callback_url
        if not url:
            return f"{self.name}: no callback_url"
        return post_result(record, url, self.timeout)


def post_result(record: BuildRecord, url: str, timeout: float) -> str:
    """POST the record (with `finished` filled in) to `url`; returns what happened, for the build page."""
    name = JenkinsCallback.name
    final = record.model_copy(update={"finished": record.finished or utcnow()})
    try:
        headers = {"Content-Type": "application/json"}
        response = httpx.post(url, content=final.model_dump_json(), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransientError(
            f"{JenkinsCallback.name} to {_where(url)} failed: {type(exc).__name__}"
        ) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"{name} to {_where(url)} answered {response.status_code}")
    if response.status_code >= 400:
        log.warning("build=%s %s to %s refused with %d: %s", record.id, name, _where(url),
                    response.status_code, response.text[:500])  # fmt: skip
        return f"{name}: refused with {response.status_code}, given up"
    return f"{name}: posted {record.state.value} ({response.status_code})"
