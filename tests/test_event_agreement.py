"""For every payload of the corpora, `podci event` and `POST /hooks/*` say the same thing.

Always over podci's own corpus (tests/fixtures); over the third-party one in ../shared/fixtures as an
extra, when it is there. The receiver runs on a Redis database no worker reads (the corpus's clone URLs
are not reachable from here): builds are recorded and queued, never run. `test_corpus` and
`test_bitbucket_corpus` check that the answers are right; this checks that the command and the HTTP
endpoint give the same ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from redis import Redis

from dispatch.app import make_app
from podci.cli import cli
from podci.server import create_app
from schemas.event import Decision
from schemas.record import BuildRecord
from schemas.settings import Settings
from store import keys
from testkit.corpus import DEFAULT_OPTIONS, SHARED_FIXTURES, Case, load
from testkit.servers import Server
from tests.test_bitbucket_corpus import BASE, ROWS, headers_for
from tests.test_webhooks import other_db


@pytest.fixture(scope="module")
def receiver(settings: Settings) -> Iterator[tuple[str, Redis, Settings]]:
    # Open receivers: this compares parsing, not authentication.
    configured = other_db(
        settings, 5, **SHARED, insecure_unsigned_hooks="bitbucket-cloud,bitbucket-server,jenkins"
    )
    redis = Redis.from_url(configured.require_redis_url())
    with Server(create_app(configured, make_app(configured), redis)) as server:
        yield server.url, redis, configured
    redis.flushdb()


# What the receiver and `podci event` are both configured with.
SHARED = {
    "branch_builds": "*",
    "bitbucket_server_url": BASE,
    "clone_hosts": "*",
    "jenkins_urls": ",".join(DEFAULT_OPTIONS["jenkins_urls"]),
    "trusted_authors": ",".join(DEFAULT_OPTIONS["trusted_authors"]),
}
CASES = load()
SHARED_ONLY = pytest.mark.skipif(
    not SHARED_FIXTURES.is_dir(), reason=f"extra: no shared webhook corpus at {SHARED_FIXTURES}"
)


def podci_event(
    body: Path, headers: dict[str, str], source: str, tmp_path: Path, settings: Settings
) -> tuple[int, str]:
    header_file = tmp_path / "headers.json"
    header_file.write_text(json.dumps(headers))
    env = {f"PODCI_{name.upper()}": value for name, value in SHARED.items()}
    args = ["event", str(body), "--headers", str(header_file), "--source", source]
    result = CliRunner().invoke(cli, args, env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_podci_event_and_the_endpoint_agree_on_the_own_corpus(
    receiver: tuple[str, Redis, Settings], case: Case, tmp_path: Path
) -> None:
    agree(receiver, case.body_path, case.headers, case.source, tmp_path)


@SHARED_ONLY
@pytest.mark.parametrize("file", [row.file for row in ROWS])
def test_podci_event_and_the_endpoint_agree_on_the_shared_corpus(
    receiver: tuple[str, Redis, Settings], file: str, tmp_path: Path
) -> None:
    agree(receiver, SHARED_FIXTURES / file, headers_for(file), "bitbucket", tmp_path)


def agree(
    receiver: tuple[str, Redis, Settings], body: Path, headers: dict[str, str], source: str, tmp_path: Path
) -> None:
    url, redis, settings = receiver
    redis.flushdb()
    code, output = podci_event(body, headers, source, tmp_path, settings)
    reply = httpx.post(f"{url}/hooks/{source}", content=body.read_bytes(), headers=headers)
    if code != 0:  # refused: the same sentence from both, and nothing recorded
        assert reply.status_code == 400
        assert reply.json()["error"] in output
        assert redis.dbsize() == 0
        return
    decision = Decision.model_validate_json(output)
    answer = reply.json()
    if decision.request is None:
        assert reply.status_code == 200
        # a retest the pull request's builds do not allow now (none, or one running) is ignored
        allowed = {decision.action.value} | ({"ignored"} if decision.action.value == "retest" else set())
        assert answer["action"] in allowed
        assert answer["reason"].startswith(decision.reason)
        assert not redis.keys(keys.build("*"))
        return
    assert reply.status_code == 202, answer
    raw = redis.get(keys.build(answer["build_id"]))
    assert raw is not None
    assert BuildRecord.model_validate_json(raw).request == decision.request
