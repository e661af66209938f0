"""Commit statuses on Bitbucket Cloud (`/2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx

from schemas.record import BuildRecord
from workers.reporters import status
from workers.reporters.bitbucket_http import BitbucketReporter, api_base


class BitbucketCloud(BitbucketReporter):
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

    def says(self, record: BuildRecord) -> str:
        return status.said(record.state, "cloud")

    def _request(self, record: BuildRecord) -> tuple[str, dict[str, Any]] | None:
        path = status.cloud_path(record)
        if path is None:
            return None
        return api_base(self.settings.bitbucket_cloud_api_url) + path, status.cloud_body(
            record, self.settings.public_url
        )

    def _lookup(self, url: str, key: str) -> tuple[str, dict[str, str]]:
        return f"{url}/{quote(key, safe='')}", {}  # GET …/statuses/build/{key}: that status, or 404

    def _auth(self) -> tuple[dict[str, str], httpx.Auth | None, list[str]]:
        s = self.settings
        if s.bitbucket_cloud_token is not None:
            token = s.bitbucket_cloud_token.get_secret_value()
            return {"Authorization": f"Bearer {token}"}, None, [token]
        user = s.bitbucket_cloud_user or ""
        password = s.bitbucket_cloud_app_password.get_secret_value() if s.bitbucket_cloud_app_password else ""
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {}, httpx.BasicAuth(user, password), [password, encoded]
