"""Live test logs: the masking cut (a table), the Redis text (real Redis), and a real worker following
a build whose tests print over several seconds, read through the real page route, on both backends."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis import Redis

from dispatch.app import make_app
from dispatch.submit import submit
from schemas.public import Redactor
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store import keys
from store.builds import BuildStore
from store.live import MAX_BYTES, LiveLogs
from testkit.fake_k8s import FakeCluster, serve, write_kubeconfig
from testkit.gitrepo import Repo
from testkit.servers import Server
from tests.conftest import FAST
from tests.helpers import Worker, wait_for
from tests.test_webhooks import other_db
from web.access import Access
from web.pages import make_router
from workers.live import LONG_LINE, SafeCut

SECRET = "live-secret-0123456789"
UI_TOKEN = "live-page-token-for-tests"
JSON = {"Accept": "application/json", "Authorization": f"Bearer {UI_TOKEN}"}
LINES = 8
SLOW_TESTS = f"""import sys, time
for n in range(1, {LINES + 1}):
    print("line", n, "token {SECRET}" if n == 3 else "", flush=True)
    time.sleep(1)
"""


# --- the cut ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chunks", "out"),
    [
        ([b"one\ntw", b"o\n"], ["one\n", "two\n"]),  # whole lines go out
        ([b"a " + SECRET.encode()[:5], SECRET.encode()[5:] + b" b\n"], ["", "a **** b\n"]),
        (  # a long line goes out without waiting for its end, all but what may start a secret
            [b"x" * LONG_LINE + SECRET.encode()[:9], SECRET.encode()[9:] + b"\n"],
            ["x" * (LONG_LINE + 10 - len(SECRET)), "x" * (len(SECRET) - 10) + "****\n"],
        ),
        (["é".encode()[:1], "é\n".encode()[1:]], ["", "é\n"]),  # never half a character
    ],
)
def test_text_is_cut_where_no_secret_or_character_straddles(chunks: list[bytes], out: list[str]) -> None:
    cut = SafeCut([SECRET])
    assert [cut.feed(chunk) for chunk in chunks] == out
    assert cut.taken == sum(len(chunk) for chunk in chunks)


def test_the_end_gives_out_what_was_held() -> None:
    cut = SafeCut([SECRET])
    assert cut.feed(b"no newline " + SECRET.encode()) == ""
    assert cut.feed(b"", end=True) == "no newline ****"


# --- Redis ------------------------------------------------------------------------------------------
@pytest.fixture
def live(settings: Settings) -> Iterator[LiveLogs]:
    redis = Redis.from_url(other_db(settings, 10).require_redis_url())
    redis.flushdb()
    yield LiveLogs(redis, ttl=600, cap=64)
    redis.flushdb()


def test_an_append_from_the_wrong_place_writes_nothing(live: LiveLogs) -> None:
    assert live.append("b1", "attempt 1", 0, 6, "line1\n")
    assert not live.append("b1", "attempt 1", 0, 6, "line1\n")  # a second follower, late
    assert live.append("b1", "attempt 1", 6, 12, "line2\n")
    assert live.resume_at("b1", "attempt 1") == 12 and live.resume_at("b1", "attempt 2") == 0
    chunk = live.read("b1", 0)
    assert (chunk.text, chunk.cursor, chunk.skipped) == ("line1\nline2\n", 12, 0)
    assert live.read("b1", 6).text == "line2\n" and live.read("b1", 12).text == ""
    assert live.append("b1", "attempt 2", 0, 4, "new\n")  # a relaunched pod's log starts at 0
    assert live.read("b1", 12).text == "new\n"


def test_the_text_is_capped_and_expires(live: LiveLogs) -> None:
    for n in range(20):
        assert live.append("b2", "attempt 1", n * 10, n * 10 + 10, f"line {n:04}\n")
    assert 0 < int(live.redis.strlen(keys.live_text("b2"))) <= 64
    assert 0 < int(live.redis.ttl(keys.live_text("b2"))) <= 600
    chunk = live.read("b2", 0)
    assert chunk.skipped > 0 and chunk.text.endswith("line 0019\n") and chunk.cursor == 200


# --- a real worker ----------------------------------------------------------------------------------
@contextmanager
def pages(store: BuildStore) -> Iterator[str]:
    """The page routes as the API server runs them, with no secret of its own: what it shows masked,
    the worker masked."""
    api = FastAPI()
    server = Server(api)
    api.include_router(make_router(store, server.url, Access(tokens=(UI_TOKEN,)), Redactor(())))
    with server:
        yield server.url


@contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[None]:
    worker = Worker(env, log)
    worker.start()
    try:
        yield
    finally:
        worker.stop()


def worker_settings(settings: Settings, db: int, tmp: Path) -> tuple[Settings, dict[str, str]]:
    configured = other_db(settings, db, state_dir=tmp / "state")
    env = {"PODCI_REDIS_URL": configured.require_redis_url(), "PODCI_STATE_DIR": str(tmp / "state"),
           "PODCI_UI_TOKENS": f"{UI_TOKEN},{SECRET}"}  # fmt: skip
    Redis.from_url(configured.require_redis_url()).flushdb()
    return configured, env


def slow_repo(path: Path) -> Repo:
    repo = Repo(path)
    config = (path / ".podci.yml").read_text()
    changed = re.sub(r"command: .*", "command: python3 slow_tests.py", config, count=1)
    repo.commit({".podci.yml": changed, "slow_tests.py": SLOW_TESTS})
    return repo


def start(settings: Settings, store: BuildStore, repo: Repo, job: str) -> str:
    request = BuildRequest(
        job=job, number=1, repo="team/webapp", source=Revision(clone_url=str(repo.path), ref="main")
    )
    return submit(make_app(settings), store, settings, request).id


def read_while_running(url: str, build_id: str) -> list[str]:
    """Every non-empty text the live route gave while the build was not finished."""
    reads: list[str] = []
    cursor, deadline = 0, time.monotonic() + 240
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{url}/builds/{build_id}/live", params={"after": cursor}, headers=JSON, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["finished"]:
            return reads
        assert [step["name"] for step in body["steps"]][:1] == ["checkout"]
        if body["text"]:
            reads.append(body["text"])
        cursor = body["cursor"]
        time.sleep(0.3)
    raise AssertionError(f"build {build_id} did not finish; read {reads}")


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^line (\d+)", text, re.MULTILINE)]


def check_live(url: str, store: BuildStore, build_id: str) -> None:
    reads = read_while_running(url, build_id)
    assert len(reads) >= 2, reads  # the text grew while the tests ran
    seen = numbers("".join(reads))
    assert seen == list(range(1, len(seen) + 1)), reads  # in order, none twice, none missing
    assert wait_for(store, build_id).state.value == "succeeded"

    def whole() -> str:
        return str(httpx.get(f"{url}/builds/{build_id}/live", headers=JSON, timeout=30).json()["text"])

    deadline = time.monotonic() + 60
    while numbers(whole()) != list(range(1, LINES + 1)):
        assert time.monotonic() < deadline, whole()
        time.sleep(0.2)
    text = whole()
    assert SECRET not in text and "token ****" in text
    assert "PODCI-EXIT" not in text  # the agent's own last line is not the tests' output
    assert (
        int(store.redis.ttl(keys.live_text(build_id))) > 0
        and int(store.redis.strlen(keys.live_text(build_id))) <= MAX_BYTES
    )
    answer = httpx.get(f"{url}/builds/{build_id}/live", params={"after": 10**9}, headers=JSON, timeout=30)
    assert answer.status_code == 200 and answer.json()["finished"] and answer.json()["text"] == ""
    refused = httpx.get(f"{url}/builds/{build_id}/live", headers={"Accept": "application/json"}, timeout=30)
    assert refused.status_code == 401 and SECRET not in refused.text and "line" not in refused.text


def test_a_local_build_shows_its_test_log_growing(
    settings: Settings, worker_env: dict[str, str], tmp_path: Path
) -> None:
    configured, env = worker_settings(settings, 4, tmp_path)
    store = BuildStore(Redis.from_url(configured.require_redis_url()))
    repo = slow_repo(tmp_path / "repo")
    with running_worker({**worker_env, **env}, tmp_path / "worker.log"), pages(store) as url:
        check_live(url, store, start(configured, store, repo, "live-local"))


def test_a_kubernetes_build_shows_its_test_log_growing(
    settings: Settings, worker_env: dict[str, str], tmp_path: Path
) -> None:
    configured, env = worker_settings(settings, 5, tmp_path)
    configured = configured.model_copy(update={"backend": "kubernetes"})
    store = BuildStore(Redis.from_url(configured.require_redis_url()))
    repo = Repo(tmp_path / "repo")
    cluster = FakeCluster()
    output = "".join(f"line {n} {'token ' + SECRET if n == 3 else ''}\n" for n in range(1, LINES + 1))
    cluster.configure("live-k8s-1", test_duration=float(LINES), test_output=output)
    with serve(cluster) as api_url:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_url, "podci-builds")
        env |= {**FAST, "PODCI_BACKEND": "kubernetes", "KUBECONFIG": str(kubeconfig),
                "PODCI_KUBE_NAMESPACE": "podci-builds"}  # fmt: skip
        with running_worker({**worker_env, **env}, tmp_path / "worker.log"), pages(store) as url:
            check_live(url, store, start(configured, store, repo, "live-k8s"))
