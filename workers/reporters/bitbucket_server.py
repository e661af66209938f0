"""Build statuses on Bitbucket Server/Data Center (the repository builds API, or the legacy 1.0 one)."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.record import BuildRecord
from workers.reporters import status
from workers.reporters.bitbucket_http import BitbucketReporter, api_base


class BitbucketServer(BitbucketReporter):
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

    def says(self, record: BuildRecord) -> str:
        return status.said(
            record.state, "legacy" if self.settings.bitbucket_server_legacy_status else "server"
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
        return None if path is None else (api_base(s.bitbucket_server_url) + path, body)

    def _lookup(self, url: str, key: str) -> tuple[str, dict[str, str]]:
        if self.settings.bitbucket_server_legacy_status:
            return url, {"limit": "1000"}  # the legacy API lists every status of the commit
        return url, {"key": key}  # the builds API: that status, or 404

    def _status_in(self, answer: Any, key: str) -> Any:
        if not self.settings.bitbucket_server_legacy_status:
            return answer
        values = answer.get("values") if isinstance(answer, dict) else None
        return next((v for v in values or [] if isinstance(v, dict) and v.get("key") == key), None)

    def _auth(self) -> tuple[dict[str, str], httpx.Auth | None, list[str]]:
        token = self.settings.bitbucket_server_token
        value = token.get_secret_value() if token is not None else ""
        return {"Authorization": f"Bearer {value}"}, None, [value]
