"""The Jenkins generic trigger's `callback_url` receives the final build record as JSON.

A 5xx, 429 or connection error is a `TransientError`, which `podci.notify` retries with backoff; a 4xx
is logged with the response and given up. It never changes the build's result. Only the URL's scheme,
host and path are ever logged: the URL may carry credentials.

The URL was checked against PODCI_JENKINS_URLS by the receiver and is checked again here, with this
worker's settings, before anything is posted; redirects are not followed. What is posted is the
record as the pages show it (`schemas.public`): no secret, no callback URL, no path of the worker.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx

from schemas.public import Redactor
from schemas.record import BuildRecord, utcnow
from schemas.settings import Settings
from schemas.urls import callback_problem
from workers.errors import Refused, TransientError

log = logging.getLogger(__name__)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class JenkinsCallback:
    """Takes the final record only: Jenkins waits for one answer per build."""

    name = "jenkins-callback"

    def __init__(self, settings: Settings, timeout: float = 10) -> None:
        self.prefixes = settings.jenkins_url_prefixes
        self.redactor = Redactor(settings.secret_values(), [str(settings.state_dir)])
        self.timeout = timeout

    def applies(self, record: BuildRecord) -> bool:
        return bool(record.request.callback_url) and record.state.final

    def says(self, record: BuildRecord) -> str:
        return record.state.value

    def shows(self, record: BuildRecord) -> bool:
        """A callback cannot be read back: Jenkins may get the final record twice, never none."""
        return False

    def report(self, record: BuildRecord) -> str:
        url = record.request.callback_url
        if not url:
            return f"{self.name}: no callback_url"
        if (problem := callback_problem(url, self.prefixes)) is not None:
            log.warning(
                "build=%s %s to %s not posted: the URL %s", record.id, self.name, _where(url), problem
            )
            return f"{self.name}: not posted: the callback URL {problem}"
        shown = self.redactor.record(record.model_copy(update={"finished": record.finished or utcnow()}))
        return post_result(record.id, record.state.value, shown.model_dump_json(), url, self.timeout)


def post_result(build_id: str, state: str, body: str, url: str, timeout: float) -> str:
    """POST `body` (the final record as shown) to `url`; returns what happened, for the build page."""
    name = JenkinsCallback.name
    try:
        headers = {"Content-Type": "application/json"}
        response = httpx.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise TransientError(
            f"{JenkinsCallback.name} to {_where(url)} failed: {type(exc).__name__}"
        ) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise Refused(f"{name} to {_where(url)} answered {response.status_code}")
    if response.status_code >= 400:
        log.warning("build=%s %s to %s refused with %d: %s", build_id, name, _where(url),
                    response.status_code, response.text[:500])  # fmt: skip
        return f"{name}: refused with {response.status_code}, given up"
    return f"{name}: posted {state} ({response.status_code})"
