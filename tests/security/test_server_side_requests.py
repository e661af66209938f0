"""No server-side requests where they don't belong (issue 13, finding 7): a webhook's clone URL must be
http(s) or ssh on an allowed host and a callback URL under PODCI_JENKINS_URLS; git itself refuses
paths and `file://` for every webhook build."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from testkit.gitrepo import Repo
from tests.security.conftest import alone, serving
from tests.test_webhooks import JENKINS_TOKEN
from workers import gitops

GOOD_CLONE = "https://bitbucket.example.com/scm/team/webapp.git"


@pytest.fixture
def receiver(settings: Settings, own_redis: str) -> Iterator[tuple[str, Redis]]:
    configured = alone(settings, own_redis, jenkins_token=JENKINS_TOKEN, clone_hosts="bitbucket.example.com",
                       jenkins_urls="https://jenkins.example.com/webhook-step/")  # fmt: skip
    with serving(configured) as served:
        yield served


def trigger(url: str, **fields: Any) -> httpx.Response:
    body = {"job": "ssrf", "build_number": 1, "clone_url": GOOD_CLONE, "source_branch": "main", **fields}
    return httpx.post(url + "/hooks/jenkins", json=body, headers={"X-Podci-Token": JENKINS_TOKEN})


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"callback_url": "http://169.254.169.254/latest/meta-data/"}, "callback_url"),
     ({"callback_url": "http://redis.podci.svc.cluster.local:6379/"}, "callback_url"),
     ({"callback_url": "https://jenkins.example.com.evil.test/webhook-step/x"}, "callback_url"),
     ({"clone_url": "/var/lib/podci/checkouts/another-build"}, "clone_url"),
     ({"clone_url": "file:///etc"}, "clone_url"),
     ({"clone_url": "ext::sh -c id"}, "clone_url"),
     ({"clone_url": "http://127.0.0.1:6379/x.git"}, "clone_url")],
)  # fmt: skip
def test_a_webhook_cannot_point_podci_at_any_address(
    receiver: tuple[str, Redis], fields: dict[str, str], named: str
) -> None:
    url, redis = receiver
    reply = trigger(url, **fields)
    assert reply.status_code == 400, reply.text
    assert f"`{named}`" in reply.json()["error"]
    assert redis.dbsize() == 0
    assert trigger(url, callback_url="https://jenkins.example.com/webhook-step/0123").status_code == 202


WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def test_git_refuses_paths_and_file_urls_for_every_webhook_build(tmp_path: Path) -> None:
    """Even a record that reached a worker some other way (written before the host rules, say) is
    never fetched from the worker's disk: only `podci run` (provider `manual`) may name a path."""
    repo = Repo(tmp_path / "secret-repo")
    for url in (str(repo.path), f"file://{repo.path}"):
        request = BuildRequest(job="j", repo="team/app", provider="jenkins",
                               source=Revision(clone_url=url, ref="main"))  # fmt: skip
        assert request.remote_only
        with pytest.raises(gitops.GitError, match="http"):
            gitops.prepare(request.source, None, tmp_path / "checkout", WHEN, remote_only=True)
    manual = BuildRequest(job="j", repo="team/app", source=Revision(clone_url=str(repo.path), ref="main"))
    assert not manual.remote_only
    assert gitops.prepare(manual.source, None, tmp_path / "checkout", WHEN).commit == repo.head("main")
