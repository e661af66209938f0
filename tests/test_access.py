"""web/access.py: who may read the pages, as a table of requests."""

from __future__ import annotations

import ipaddress

import pytest

from schemas.public import Redactor, is_local_path, mask, without_userinfo
from web.access import COOKIE, Access

TOKEN = "page-token-for-access"
ACCESS = Access(
    tokens=(TOKEN, "another-page-token"),
    proxy_header="X-Auth-Request-User",
    proxies=(ipaddress.ip_network("10.1.0.0/16"),),
    public=("oss/*",),
)


@pytest.mark.parametrize(
    ("headers", "cookies", "client", "reader"),
    [({}, {}, "127.0.0.1", None),
     ({"authorization": f"Bearer {TOKEN}"}, {}, "127.0.0.1", "token"),
     ({"authorization": f"bearer {TOKEN}"}, {}, None, "token"),
     ({"authorization": f"Bearer {TOKEN}x"}, {}, "127.0.0.1", None),
     ({"authorization": "Bearer "}, {}, "127.0.0.1", None),
     ({"authorization": f"Basic {TOKEN}"}, {}, "127.0.0.1", None),
     ({}, {COOKIE: TOKEN}, "127.0.0.1", "token"),
     ({}, {COOKIE: ""}, "127.0.0.1", None),
     # the proxy's header counts only when the TCP peer is the proxy
     ({"x-auth-request-user": "alice"}, {}, "10.1.2.3", "alice"),
     ({"x-auth-request-user": "alice"}, {}, "10.2.0.1", None),
     ({"x-auth-request-user": "alice"}, {}, "not an address", None),
     ({"x-auth-request-user": " "}, {}, "10.1.2.3", None)],
)  # fmt: skip
def test_who_is_reading(headers: dict[str, str], cookies: dict[str, str], client: str | None,
                        reader: str | None) -> None:  # fmt: skip
    assert ACCESS.reader(headers, cookies, client) == reader


@pytest.mark.parametrize(
    ("reader", "repo", "allowed"),
    [(None, "oss/lib", True), (None, "team/app", False), ("alice", "team/app", True), (None, "", False)],
)
def test_who_may_read_what(reader: str | None, repo: str, allowed: bool) -> None:
    assert ACCESS.may_read(reader, repo) is allowed


def test_no_tokens_means_no_token_is_good() -> None:
    assert Access().token_ok("") is False and Access().reader({"authorization": "Bearer "}, {}, None) is None


@pytest.mark.parametrize(
    ("url", "shown", "local"),
    [("https://bot:pw@bitbucket.org/team/app.git", "https://bitbucket.org/team/app.git", False),
     ("https://bitbucket.org/team/app.git", "https://bitbucket.org/team/app.git", False),
     ("ssh://git@bitbucket.example.com:7999/team/app.git", "ssh://bitbucket.example.com:7999/team/app.git",
      False),
     ("git@bitbucket.org:team/app.git", "git@bitbucket.org:team/app.git", False),
     ("/srv/git/app", "/srv/git/app", True),
     ("./app", "./app", True),
     ("file:///srv/git/app", "file:///srv/git/app", True)],
)  # fmt: skip
def test_clone_urls_as_shown(url: str, shown: str, local: bool) -> None:
    assert without_userinfo(url) == shown
    assert is_local_path(url) is local


def test_masking_takes_the_longest_secret_first() -> None:
    redactor = Redactor(["abc", "abcdef"], ["/var/lib/podci"])
    assert redactor.text("abcdef and abc in /var/lib/podci/logs") == "**** and **** in $PODCI_STATE_DIR/logs"
    assert mask("nothing here", ["abc"]) == "nothing here"
