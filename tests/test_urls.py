"""schemas/urls.py: which clone and callback URLs a webhook may make podci use, as tables."""

from __future__ import annotations

import pytest

from schemas.urls import callback_problem, clone_location, clone_url_problem

HOSTS = ("bitbucket.org", "bitbucket.example.com", "*.git.example.net", "127.0.0.1:8990")


@pytest.mark.parametrize(
    ("url", "location"),
    [("https://bitbucket.org/team/app.git", ("https", "bitbucket.org", None)),
     ("HTTP://Bitbucket.Example.com:7990/scm/team/app.git", ("http", "bitbucket.example.com", 7990)),
     ("ssh://git@bitbucket.example.com:7999/team/app.git", ("ssh", "bitbucket.example.com", 7999)),
     ("git@bitbucket.org:team/app.git", ("ssh", "bitbucket.org", None)),
     ("bitbucket.org:team/app.git", ("ssh", "bitbucket.org", None)),
     ("/srv/git/app", None), ("./app", None), ("app", None), ("C:\\\\repos\\\\app", None),
     ("file:///etc", None), ("ext::sh -c touch% /tmp/x", None), ("git://bitbucket.org/team/app.git", None),
     ("fd::17", None), ("https://", None), ("https://bitbucket.org:port/x", None),
     ("-oProxyCommand=x:y", None), ("[::1]:app", None), (":app", None), ("host:", None)],
)  # fmt: skip
def test_where_a_clone_url_points(url: str, location: tuple[str, str, int | None] | None) -> None:
    assert clone_location(url) == location


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("https://bitbucket.org/team/app.git", True),
     ("https://BITBUCKET.ORG/team/app.git", True),
     ("ssh://git@bitbucket.example.com:7999/team/app.git", True),  # any port of a host without one
     ("https://team.git.example.net/app.git", True),
     ("https://git.example.net/app.git", False),  # `*.` needs a subdomain
     ("http://127.0.0.1:8990/team/app.git", True),
     ("http://127.0.0.1:6379/team/app.git", False),  # the port is part of that entry
     ("https://bitbucket.org.evil.test/team/app.git", False),
     ("https://bitbucket.org@evil.test/team/app.git", False),
     ("http://169.254.169.254/latest/meta-data/", False),
     ("/var/lib/podci/checkouts/other", False),
     ("file:///var/lib/podci", False)],
)  # fmt: skip
def test_which_clone_urls_a_webhook_may_name(url: str, allowed: bool) -> None:
    assert (clone_url_problem(url, HOSTS) is None) is allowed


def test_no_hosts_means_no_clone_url() -> None:
    assert clone_url_problem("https://bitbucket.org/team/app.git", ()) is not None


PREFIXES = ("https://jenkins.example.com/webhook-step", "http://ci.internal.example.com:8080/")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("https://jenkins.example.com/webhook-step/0123abcd", True),
     ("https://jenkins.example.com/webhook-step", True),
     ("https://JENKINS.example.com:443/webhook-step/x", True),
     ("https://user:token@jenkins.example.com/webhook-step/x", True),
     ("https://jenkins.example.com/webhook-stepper/x", False),  # a prefix of the path, not a parent
     ("https://jenkins.example.com/webhook-step/../../script", False),
     ("https://jenkins.example.com/webhook-step/%2e%2e/script", False),
     ("http://jenkins.example.com/webhook-step/x", False),  # another scheme
     ("https://jenkins.example.com:8443/webhook-step/x", False),
     ("https://jenkins.example.com.evil.test/webhook-step/x", False),
     ("https://jenkins.example.com@evil.test/webhook-step/x", False),
     ("http://ci.internal.example.com:8080/anything", True),
     ("http://ci.internal.example.com/anything", False),
     ("http://169.254.169.254/latest/meta-data/", False),
     ("ftp://jenkins.example.com/webhook-step/x", False)],
)  # fmt: skip
def test_which_callback_urls_a_trigger_may_name(url: str, allowed: bool) -> None:
    assert (callback_problem(url, PREFIXES) is None) is allowed


def test_no_jenkins_urls_means_no_callback() -> None:
    problem = callback_problem("https://jenkins.example.com/webhook-step/x", ())
    assert problem is not None and "PODCI_JENKINS_URLS" in problem
