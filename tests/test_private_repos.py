"""Private repositories: a webhook build fetches from a git server that demands basic auth, with the
token from `PODCI_GIT_CREDENTIALS`, and the token is nowhere podci writes.

Real parts: git's smart HTTP server (`git http-backend`) behind basic auth, the receiver, a worker of
its own (on its own Redis database, with the credentials file), the pages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from podci.server import create_app
from schemas.git_credentials import CredentialsError, parse
from schemas.record import BuildRecord, BuildState
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.gitrepo import Repo
from testkit.private_git import PrivateGitServer
from testkit.servers import Server
from tests.conftest import FAST
from tests.helpers import Worker, wait_for
from tests.test_webhooks import WEBHOOK_SECRET, post, server_pr

DB = 4
UI_TOKEN = "ui-token-for-private-repo-tests"


@pytest.mark.parametrize(
    ("text", "words"),
    [("https://x-token-auth:abc@bitbucket.org\n", None),
     ("\nhttps://alice:tok%40en@git.example.com:7990\n\n", None),
     ("sekrit@bitbucket.org\n", "line 1 of PODCI_GIT_CREDENTIALS is not an http(s) URL"),
     ("https://bitbucket.org\n", "has no user name and token for bitbucket.org"),
     ("https://a:b@h\nssh://git:sekrit@h\n", "line 2 of PODCI_GIT_CREDENTIALS is not an http(s) URL"),
     ("https://sekrit@h\n", "has no user name and token for h")],
)  # fmt: skip
def test_credentials_file_lines(text: str, words: str | None) -> None:
    if words is None:
        assert all(c.user and c.password and c.host for c in parse(text))
        return
    with pytest.raises(CredentialsError, match=re.escape(words)) as caught:
        parse(text)
    assert "sekrit" not in str(caught.value)


def test_a_credentials_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"PODCI_GIT_CREDENTIALS names .*missing, which cannot be read"):
        Settings(git_credentials=tmp_path / "missing")
    (tmp_path / "bad").write_text("https://secret-token-value@host\n")
    with pytest.raises(ValueError, match="no user name and token") as caught:
        Settings(git_credentials=tmp_path / "bad")
    assert "secret-token-value" not in str(caught.value)


@pytest.fixture(scope="module")
def git_host() -> Iterator[PrivateGitServer]:
    with PrivateGitServer() as server:
        yield server


@pytest.fixture(scope="module")
def private(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, git_host: PrivateGitServer
) -> Iterator[dict[str, Any]]:
    """A worker and a receiver with `PODCI_GIT_CREDENTIALS`, on a Redis database of their own."""
    root = tmp_path_factory.mktemp("private")
    credentials = root / "git-credentials"
    credentials.write_text(git_host.credentials_line())
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    redis = Redis.from_url(url)
    redis.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    env |= {**FAST, "PODCI_REDIS_URL": url, "PODCI_STATE_DIR": str(root / "state"),
            "PODCI_CLONE_HOSTS": "127.0.0.1", "PODCI_GIT_CREDENTIALS": str(credentials)}  # fmt: skip
    settings = Settings(
        **{k.removeprefix("PODCI_").lower(): v for k, v in env.items() if k.startswith("PODCI_")},
        bitbucket_server_secret=WEBHOOK_SECRET, trusted_authors="alice", ui_tokens=UI_TOKEN,
    )  # fmt: skip
    worker = Worker(env, root / "worker.log")
    worker.start()
    try:
        with Server(create_app(settings)) as api:
            yield {"api": api.url, "store": BuildStore(redis), "redis": redis, "root": root,
                   "credentials": credentials, "log": root / "worker.log"}  # fmt: skip
    finally:
        worker.stop()
        redis.flushdb()


def _build(private: dict[str, Any], git_host: PrivateGitServer, repo: Repo, pr: int) -> BuildRecord:
    url = git_host.add(repo)
    sha = repo.branch(f"topic-{pr}", {"notes.txt": f"{pr}\n"})
    body = server_pr("pr:opened", pr, repo, f"topic-{pr}", sha, url)
    reply = post(private["api"], body, {"X-Event-Key": "pr:opened"}, secret=WEBHOOK_SECRET)
    assert reply.status_code == 202, reply.text
    return wait_for(private["store"], reply.json()["build_id"], timeout=180)


_READ = {
    "string": lambda redis, key: redis.get(key),
    "hash": lambda redis, key: redis.hgetall(key),
    "list": lambda redis, key: redis.lrange(key, 0, -1),
    "set": lambda redis, key: redis.smembers(key),
    "zset": lambda redis, key: redis.zrange(key, 0, -1),
    "stream": lambda redis, key: redis.xrange(key),
}


def _everything_in(redis: Redis) -> str:
    """Every key and value of the database, as text, to search for a token."""
    texts = []
    for key in redis.scan_iter(count=1000):
        read = _READ.get(redis.type(key).decode())
        texts.append(f"{key!r} {read(redis, key) if read else b''!r}")
    return "\n".join(texts)


def _files_under(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and
                     ".git" not in p.parts)  # fmt: skip


def test_private_repository_builds_with_the_token_and_keeps_it_secret(
    private: dict[str, Any], git_host: PrivateGitServer, tmp_path: Path
) -> None:
    repo = Repo(tmp_path / "secret-app")
    done = _build(private, git_host, repo, 1)
    assert done.state is BuildState.succeeded, done.reason
    assert any(header and header.startswith("Basic ") for header in git_host.authorizations)
    assert private["credentials"].read_text() == git_host.credentials_line()  # the file is untouched

    page = httpx.get(f"{private['api']}/builds/{done.id}", headers={"Authorization": f"Bearer {UI_TOKEN}"})
    assert page.status_code == 200 and done.id in page.text
    token = git_host.token
    assert token not in page.text
    assert token not in _everything_in(private["redis"])
    assert token not in private["log"].read_text(errors="replace")
    assert token not in _files_under(private["root"] / "state")  # checkouts (their git config), logs


@pytest.mark.parametrize(
    ("line", "words"),
    [("wrong", "refused the credentials PODCI_GIT_CREDENTIALS has for it"),
     ("other-host", "asks for a user name and token and PODCI_GIT_CREDENTIALS has none for it")],
)  # fmt: skip
def test_a_missing_or_wrong_token_ends_in_error_naming_the_host(
    private: dict[str, Any], git_host: PrivateGitServer, tmp_path: Path, line: str, words: str
) -> None:
    wrong = "f" * 40
    written = (
        git_host.credentials_line(wrong)
        if line == "wrong"
        else f"https://x-token-auth:{wrong}@elsewhere.example\n"
    )
    private["credentials"].write_text(written)
    try:
        done = _build(private, git_host, Repo(tmp_path / f"secret-{line}"), 2 if line == "wrong" else 3)
    finally:
        private["credentials"].write_text(git_host.credentials_line())
    assert done.state is BuildState.error
    assert done.reason is not None and words in done.reason and git_host.host in done.reason, done.reason
    assert done.attempts == 0  # nothing was launched
    for place in (_everything_in(private["redis"]), private["log"].read_text(errors="replace")):
        assert wrong not in place and git_host.token not in place
