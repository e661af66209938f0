"""For every payload of the corpus, `podci event` and `POST /hooks/bitbucket` say the same thing.

The receiver runs on a Redis database no worker reads (the corpus's clone URLs are not reachable
from here): builds are recorded and queued, never run. `test_bitbucket_corpus` checks that the
answers are right; this checks that the command and the HTTP endpoint give the same ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from redis import Redis

from events.app import create_app
from podci.cli import cli
from schemas.event import Decision
from schemas.record import BuildRecord
from schemas.settings import Settings
from tests.helpers import FIXTURES, Server
from tests.test_bitbucket_corpus import BASE, ROWS, headers_for
from tests.test_webhooks import other_db
from workers.app import make_app


@pytest.fixture(scope="module")
def receiver(settings: Settings) -> Iterator[tuple[str, Redis, Settings]]:
    configured = other_db(settings, 5, branch_builds="*", bitbucket_server_url=BASE)
    redis = Redis.from_url(configured.require_redis_url())
    with Server(create_app(configured, make_app(configured), redis)) as server:
        yield server.url, redis, configured
    redis.flushdb()


def podci_event(file: str, headers: dict[str, str], tmp_path: Path, settings: Settings) -> tuple[int, str]:
    header_file = tmp_path / "headers.json"
    header_file.write_text(json.dumps(headers))
    env = {"PODCI_BRANCH_BUILDS": settings.branch_builds, "PODCI_BITBUCKET_SERVER_URL": BASE}
    result = CliRunner().invoke(cli, ["event", str(FIXTURES / file), "--headers", str(header_file)], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("file", [row.file for row in ROWS])
def test_podci_event_and_the_endpoint_agree(receiver, file: str, tmp_path: Path) -> None:
    url, redis, settings = receiver
    redis.flushdb()
    headers = headers_for(file)
    code, output = podci_event(file, headers, tmp_path, settings)
    reply = httpx.post(url + "/hooks/bitbucket", content=(FIXTURES / file).read_bytes(), headers=headers)
    if code != 0:  # refused: the same sentence from both, and nothing recorded
        assert reply.status_code == 400
        assert reply.json()["error"] in output
        assert redis.dbsize() == 0
        return
    decision = Decision.model_validate_json(output)
    answer = reply.json()
    if decision.request is None:
        assert reply.status_code == 200
        assert answer["action"] == decision.action.value
        assert answer["reason"].startswith(decision.reason)
        assert not redis.keys("podci:build:*")
        return
    assert reply.status_code == 202, answer
    raw = redis.get(f"podci:build:{answer['build_id']}")
    assert raw is not None
    assert BuildRecord.model_validate_json(raw).request == decision.request
