"""The pages, their JSON, the logs and /metrics need a login, and show no secret, callback URL or path
of the worker (issue 13, finding 4)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

from dispatch.app import make_app
from podci.server import create_app
from schemas.record import BuildRecord
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.servers import Server
from tests.security.conftest import alone

UI_TOKEN, METRICS_TOKEN = "page-token-for-security", "metrics-token-for-security"
SECRET = "cloud-secret-that-leaked-into-a-log"
CALLBACK = "https://jenkins.example.com/webhook-step/0123456789abcdef?token=callback-credential"
JSON = {"Accept": "application/json"}


@dataclass
class Site:
    url: str
    private: BuildRecord
    public: BuildRecord
    state_dir: Path


def build(store: BuildStore, repo: str, job: str, state_dir: Path) -> BuildRecord:
    request = BuildRequest(
        job=job, repo=repo, provider="jenkins", number=1, callback_url=CALLBACK,
        source=Revision(clone_url="https://ci-bot:clone-password@git.example.com/team/app.git", ref="main"),
    )  # fmt: skip
    record = store.create(request, log_root=str(state_dir / "logs"), due=time.time() + 3600)
    log = state_dir / "logs" / record.name / "tests.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"env says PODCI_BITBUCKET_CLOUD_SECRET={SECRET}\nworkspace {state_dir}/builds/x\n")

    def finish(r: BuildRecord) -> None:
        r.logs = {"tests": str(log)}
        r.reason = f"the tests printed {SECRET} from {state_dir}/builds/{r.name}/volume"

    changed = store.update(record.id, finish)
    assert changed is not None
    return changed


@pytest.fixture(scope="module")
def site(settings: Settings, own_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    state_dir = tmp_path_factory.mktemp("pages-login")
    configured = alone(settings, own_redis, state_dir=state_dir, ui_tokens=UI_TOKEN,
                          metrics_token=METRICS_TOKEN, public_repos="oss/*",
                          bitbucket_cloud_secret=SECRET, trusted_proxy_header="X-Auth-Request-User",
                          trusted_proxies="10.0.0.0/8")  # fmt: skip
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    store = BuildStore(redis)
    private = build(store, "team/app", "private", state_dir)
    public = build(store, "oss/lib", "public", state_dir)
    with Server(create_app(configured, make_app(configured), redis)) as server:
        yield Site(server.url, private, public, state_dir)
    redis.flushdb()


def test_pages_json_logs_and_metrics_need_a_login(site: Site) -> None:
    """Finding: build pages, their JSON and /metrics needed no login."""
    private = f"{site.url}/builds/{site.private.id}"
    for url, headers in ((private, JSON), (private, {}), (f"{site.url}/builds/no-such-1", JSON),
                         (f"{private}/logs/tests", {}), (f"{site.url}/metrics", {}),
                         # the proxy's user header counts only from PODCI_TRUSTED_PROXIES (not 127.0.0.1)
                         (private, {**JSON, "X-Auth-Request-User": "mallory"})):  # fmt: skip
        reply = httpx.get(url, headers=headers)
        assert reply.status_code == 401, (url, reply.text)
        assert "team/app" not in reply.text and SECRET not in reply.text  # nothing of the record
    login = {"Authorization": f"Bearer {UI_TOKEN}"}
    assert httpx.get(private, headers={**JSON, **login}).status_code == 200
    assert (
        httpx.get(f"{site.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code
        == 200
    )
    # a public repository is readable without a login, and the anonymous list holds nothing else
    assert httpx.get(f"{site.url}/builds/{site.public.id}", headers=JSON).status_code == 200
    assert [r["id"] for r in httpx.get(f"{site.url}/builds", headers=JSON).json()] == [site.public.id]


def test_nothing_shown_holds_a_secret_a_callback_url_or_a_worker_path(site: Site) -> None:
    """Finding: the JSON carried `callback_url`, and the page showed the secrets a build printed."""
    login = {"Authorization": f"Bearer {UI_TOKEN}"}
    shown = [
        httpx.get(f"{site.url}/builds/{site.private.id}", headers={**JSON, **login}).text,
        httpx.get(f"{site.url}/builds/{site.private.id}", headers=login).text,
        httpx.get(f"{site.url}/builds", headers={**JSON, **login}).text,
        httpx.get(f"{site.url}/builds/{site.private.id}/logs/tests", headers=login).text,
    ]
    for text in shown:
        for leak in (SECRET, "callback-credential", "webhook-step", "clone-password", str(site.state_dir)):
            assert leak not in text
    assert "PODCI_BITBUCKET_CLOUD_SECRET=****" in shown[3]
    record = httpx.get(f"{site.url}/builds/{site.private.id}", headers={**JSON, **login}).json()
    assert record["request"]["callback_url"] is None
    assert record["request"]["source"]["clone_url"] == "https://git.example.com/team/app.git"
    assert record["logs"] == {"tests": ""} and record["log_dir"] == ""
