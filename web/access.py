"""Who may read the build pages: pure rules over the request's credentials, tested with tables.

A reader is known by a bearer token from `PODCI_UI_TOKENS` (an `Authorization: Bearer` header, or the
cookie the login form sets from it), or by the user header of an authenticating proxy
(`PODCI_TRUSTED_PROXY_HEADER`, e.g. oauth2-proxy's `X-Auth-Request-User`) on a request whose TCP peer
is one of `PODCI_TRUSTED_PROXIES`: from anywhere else that header is anyone's to send. Without either,
only repositories matching `PODCI_PUBLIC_REPOS` are readable. Tokens compare in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from schemas.settings import Settings

COOKIE = "podci_token"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Access:
    tokens: tuple[str, ...] = ()
    proxy_header: str | None = None
    proxies: tuple[Network, ...] = ()
    public: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        return cls(
            tokens=settings.ui_token_values,
            proxy_header=settings.trusted_proxy_header,
            proxies=settings.trusted_proxy_networks,
            public=settings.public_repo_patterns,
        )

    def token_ok(self, given: str) -> bool:
        """Every token is compared, so the time taken does not say which one nearly matched."""
        found = False
        for token in self.tokens:
            found |= hmac.compare_digest(given.encode(), token.encode())
        return found and bool(given)

    def _from_proxy(self, client: str | None) -> bool:
        try:
            address = ipaddress.ip_address(client or "")
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def reader(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client: str | None
    ) -> str | None:
        """Who is asking (`token`, or the proxy's user name), or None for an anonymous request.
        `headers` have lowercase names."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(given.strip()):
            return "token"
        if COOKIE in cookies and self.token_ok(cookies[COOKIE]):
            return "token"
        if self.proxy_header and self._from_proxy(client):
            user = headers.get(self.proxy_header.lower(), "").strip()
            if user:
                return user
        return None

    def public_repo(self, repo: str) -> bool:
        return any(fnmatchcase(repo, pattern) for pattern in self.public)

    def may_read(self, reader: str | None, repo: str) -> bool:
        return reader is not None or self.public_repo(repo)
