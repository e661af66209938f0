"""The Jenkins generic trigger's `callback_url` receives the final build record as JSON.

Retried by the report step on 5xx, 429 and connection errors (Celery backoff); a 4xx is logged with
the response and given up. It never changes the build's result. Only the URL's host is ever logged:
the URL may carry credentials.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx

from schemas.record import BuildRecord, utcnow
from workers.errors import TransientError

log = logging.getLogger(__name__)
REPORTER = "jenkins-callback"


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def post_result(record: BuildRecord, url: str, timeout: float = 10) -> str:
    """POST the record (with `finished` filled in) to `url`; returns what happened, for the step detail."""
    if record.reported.get(REPORTER) == record.state.value:
        return f"{REPORTER}: {record.state.value} was posted already"
    final = record.model_copy(update={"finished": record.finished or utcnow()})
    try:
        headers = {"Content-Type": "application/json"}
        response = httpx.post(url, content=final.model_dump_json(), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransientError(f"{REPORTER} to {_where(url)} failed: {type(exc).__name__}") from None
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"{REPORTER} to {_where(url)} answered {response.status_code}")
    if response.status_code >= 400:
        log.warning("build=%s %s to %s refused with %d: %s", record.id, REPORTER, _where(url),
                    response.status_code, response.text[:500])  # fmt: skip
        return f"{REPORTER}: refused with {response.status_code}, given up"
    return f"{REPORTER}: posted {record.state.value} ({response.status_code})"
