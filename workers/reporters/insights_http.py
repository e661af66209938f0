"""Code Insights reports on Bitbucket Cloud and Server/DC: the sending, one reporter per product.

What is sent is decided in `workers.reporters.insights` (pure). A report replaces the last one of its
key in three steps, each safe to repeat: DELETE the report (its annotations go with it; a 404 is
fine), PUT it, POST its annotations (Cloud: 100 a request). Server keeps every annotation posted and
does not de-duplicate them, so without the DELETE a rebuild of the commit would show the old ones
beside the new. A retry after any step runs all three again and ends in the same state.

Answers are sorted as for statuses (`bitbucket_http`): 429, 5xx and network trouble are retried by
`podci.notify`, any other 4xx is logged with its (redacted) body and given up as a note.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from schemas.record import BuildRecord
from schemas.settings import Settings
from workers.errors import Refused, TransientError
from workers.reporters import insights
from workers.reporters.bitbucket_cloud import BitbucketCloud
from workers.reporters.bitbucket_http import TIMEOUT, BitbucketReporter, _one_line, _redact, api_base
from workers.reporters.bitbucket_server import BitbucketServer
from workers.reporters.insights import Product

log = logging.getLogger(__name__)

_LOGGED_BODY = 500
_NOTE_BODY = 120
_MAX_PAGES = 20  # Cloud lists 1000 annotations in pages; far more than one report may hold


class _GivenUp(Exception):
    """A 4xx: retrying the same request will not help; the note says why."""


class InsightsReporter:
    """The report and annotations of one product; credentials are the status reporter's."""

    name: str = ""
    product: Product = "cloud"

    def __init__(self, settings: Settings, client: httpx.Client | None = None, *, timeout: float = TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self._client = client
        self._statuses = self._status_reporter(settings)

    def _status_reporter(self, settings: Settings) -> BitbucketReporter:
        raise NotImplementedError

    def _base(self) -> str | None:
        raise NotImplementedError

    def _enabled(self, record: BuildRecord) -> bool:
        raise NotImplementedError

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    def applies(self, record: BuildRecord) -> bool:
        return (
            self._enabled(record)
            and insights.wants_report(record)
            and insights.report_path(record, self.product) is not None
        )

    def says(self, record: BuildRecord) -> str:
        return insights.says(record, self.product)

    def _url(self, record: BuildRecord) -> str | None:
        base, path = self._base(), insights.report_path(record, self.product)
        return None if base is None or path is None else api_base(base) + path

    def report(self, record: BuildRecord) -> str:
        url = self._url(record)
        if url is None:
            return f"{self.name}: nothing to post (no source commit or repository)"
        try:
            body = insights.report_body(record, self.settings.public_url, self.product)
            notes = insights.annotation_bodies(record, self.settings.public_url, self.product)
        except ValueError as exc:  # the build URL is too long: no retry will shorten it
            log.warning("build=%s %s not posted: %s", record.id, self.name, exc)
            return f"{self.name}: not posted: {exc}"
        try:
            self._call(record, "DELETE", url, None, also_fine=(404,))
            self._call(record, "PUT", url, body)
            for batch in insights.batches(notes, self.product):
                self._call(record, "POST", f"{url}/annotations", batch)
        except _GivenUp as exc:
            return str(exc)
        return f"{self.name}: posted {body.get('result', 'no result')} with {len(notes)} annotations"

    def _call(
        self, record: BuildRecord, method: str, url: str, body: Any, also_fine: tuple[int, ...] = ()
    ) -> httpx.Response:
        headers, auth, secrets = self._statuses._auth()
        try:
            response = self.client.request(method, url, json=body, headers=headers, auth=auth,
                                           timeout=self.timeout)  # fmt: skip
        except httpx.RequestError as exc:
            raise TransientError(f"{self.name} {method} {url} failed: {type(exc).__name__}") from None
        code = response.status_code
        if code == 429 or code >= 500:
            raise Refused(f"{self.name} {method} {url} answered {code}")
        if 200 <= code < 300 or code in also_fine:
            return response
        text = _redact(response.text, secrets)
        log.warning("build=%s %s %s %s refused with %d: %s", record.id, self.name, method, url, code,
                    text[:_LOGGED_BODY])  # fmt: skip
        raise _GivenUp(f"{self.name}: {method} refused with {code}: {_one_line(text, _NOTE_BODY)}")

    def shows(self, record: BuildRecord) -> bool:
        """The report as it would be put, with exactly the annotations it would get."""
        url = self._url(record)
        if url is None:
            return False
        try:
            body = insights.report_body(record, self.settings.public_url, self.product)
            wanted = {
                _id(a) for a in insights.annotation_bodies(record, self.settings.public_url, self.product)
            }
            shown = self._get(url)
            if not isinstance(shown, dict) or any(shown.get(k) != body.get(k) for k in ("result", "details")):
                return False
            return self._annotation_ids(url) == wanted
        except (httpx.RequestError, ValueError, _GivenUp):
            return False

    def _get(self, url: str) -> Any:
        headers, auth, _ = self._statuses._auth()
        response = self.client.get(url, headers=headers, auth=auth, timeout=self.timeout)
        if response.status_code != 200:
            raise _GivenUp(f"GET answered {response.status_code}")
        return response.json()

    def _annotation_ids(self, url: str) -> set[str]:
        if self.product == "server":
            answer = self._get(f"{url}/annotations")
            return {_id(a) for a in answer.get("annotations", [])}
        found: set[str] = set()
        page: str | None = f"{url}/annotations"
        for _ in range(_MAX_PAGES):
            if page is None:
                break
            answer = self._get(page)
            found |= {_id(a) for a in answer.get("values", [])}
            page = answer.get("next")
        return found


def _id(annotation: Any) -> str:
    if not isinstance(annotation, dict):
        return ""
    return str(annotation.get("external_id") or annotation.get("externalId") or "")


class CloudInsights(InsightsReporter):
    name = "bitbucket-cloud-insights"
    product: Product = "cloud"

    def _status_reporter(self, settings: Settings) -> BitbucketReporter:
        return BitbucketCloud(settings)

    def _base(self) -> str | None:
        return self.settings.bitbucket_cloud_api_url

    def _enabled(self, record: BuildRecord) -> bool:
        return self.settings.bitbucket_cloud_reports and self._statuses.applies(record)


class ServerInsights(InsightsReporter):
    name = "bitbucket-server-insights"
    product: Product = "server"

    def _status_reporter(self, settings: Settings) -> BitbucketReporter:
        return BitbucketServer(settings)

    def _base(self) -> str | None:
        return self.settings.bitbucket_server_url

    def _enabled(self, record: BuildRecord) -> bool:
        s = self.settings
        return (
            s.bitbucket_server_reports
            and record.request.provider == "bitbucket-server"
            and bool(s.bitbucket_server_url)
            and s.bitbucket_server_token is not None
        )
