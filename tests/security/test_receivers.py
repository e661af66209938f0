"""Receivers fail closed (issue 13, findings 1, 2 and the 8 MB header): `podci serve` starts only with a
secret for every receiver that is on, a secret is long enough, and a request's headers are capped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from redis import Redis

from dispatch.app import make_app
from podci.embedded import free_port
from podci.server import create_app
from schemas.settings import Settings
from testkit.servers import Server
from tests.security.conftest import alone

SECRETS = {
    "PODCI_BITBUCKET_CLOUD_SECRET": "cloud-secret-for-security",
    "PODCI_BITBUCKET_SERVER_SECRET": "server-secret-for-security",
    "PODCI_JENKINS_TOKEN": "jenkins-token-for-security",
}


def podci_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODCI_")}
    return {**env, "PODCI_STATE_DIR": str(state), **extra}


def test_serve_without_settings_exits_2_naming_the_missing_secrets(tmp_path: Path) -> None:
    """Finding: with default settings anyone who reaches `podci serve` starts builds."""
    for extra in ({}, {"PODCI_REDIS_URL": "redis://127.0.0.1:9/0"}):
        try:
            proc = subprocess.run([sys.executable, "-m", "podci", "serve", "--port", str(free_port())],
                                  env=podci_env(tmp_path, **extra), capture_output=True, text=True,
                                  timeout=60, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail("podci serve started without any webhook secret")
        assert proc.returncode == 2, proc.stderr
        for name in SECRETS:
            assert name in proc.stderr
        assert "PODCI_JENKINS_SECRET" in proc.stderr  # the other way to authenticate Jenkins
        assert ("PODCI_REDIS_URL" in proc.stderr) is not bool(extra)


def test_a_jenkins_receiver_without_a_token_refuses_every_request(
    settings: Settings, own_redis: str, tmp_path: Path
) -> None:
    """Finding: a POST to /hooks/jenkins with a local `clone_url` was accepted, no token configured."""
    configured = alone(settings, own_redis, jenkins_token=None, jenkins_secret=None)
    redis = Redis.from_url(configured.require_redis_url())
    redis.flushdb()
    body = {"job": "attack", "build_number": 1, "clone_url": str(tmp_path), "source_branch": "main"}
    with Server(create_app(configured, make_app(configured), redis)) as server:
        reply = httpx.post(server.url + "/hooks/jenkins", json=body)
    assert reply.status_code == 401, reply.text
    assert "PODCI_JENKINS_TOKEN" in reply.json()["error"]
    assert redis.dbsize() == 0  # nothing recorded, nothing queued


@pytest.mark.parametrize("value", ["", "short-secret"])
def test_an_empty_or_short_secret_is_a_settings_error(value: str, tmp_path: Path) -> None:
    """Finding: `PODCI_BITBUCKET_SERVER_SECRET=''` left the receiver open to unsigned deliveries."""
    with pytest.raises(ValidationError, match=r"PODCI_BITBUCKET_SERVER_SECRET is .* at least 16 characters"):
        Settings(bitbucket_server_secret=value)  # type: ignore[arg-type]
    env = podci_env(tmp_path, **{**SECRETS, "PODCI_BITBUCKET_SERVER_SECRET": value})
    proc = subprocess.run([sys.executable, "-m", "podci", "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "PODCI_BITBUCKET_SERVER_SECRET is" in proc.stderr


@pytest.fixture(scope="module")
def served(own_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`podci serve` as operators run it, with every secret set, on a Redis database nobody reads."""
    port = free_port()
    env = podci_env(tmp_path_factory.mktemp("serve"), **SECRETS,
                    PODCI_REDIS_URL=own_redis,
                    PODCI_UI_TOKENS="page-token-for-security",
                    PODCI_METRICS_TOKEN="metrics-token-for-security")  # fmt: skip
    argv = [sys.executable, "-m", "podci", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "podci serve exited"
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "podci serve did not answer /healthz"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [("POST", "/hooks/bitbucket", {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "u-1"}),
     ("POST", "/hooks/bitbucket", {"X-Event-Key": "pr:opened", "X-Request-Id": "r-1"}),
     ("POST", "/hooks/bitbucket", {"X-Event-Key": "pr:opened", "X-Request-Id": "r-2",
                                   "X-Hub-Signature": "sha256=" + "0" * 64}),
     ("POST", "/hooks/jenkins", {}),
     ("POST", "/hooks/jenkins", {"X-Podci-Token": "not-the-token-at-all"}),
     ("POST", "/hooks/jenkins", {"Authorization": "Basic cG9kY2k6bm90LXRoZS10b2tlbg=="}),
     ("GET", "/builds", {}),
     ("GET", "/builds", {"Accept": "application/json", "Authorization": "Bearer not-a-page-token"}),
     ("GET", "/builds/any-1", {}),
     ("GET", "/builds/any-1/logs/tests", {}),
     ("GET", "/metrics", {}),
     ("GET", "/metrics", {"Authorization": "Bearer page-token-for-security"})],
)  # fmt: skip
def test_unauthenticated_requests_get_401_on_every_hook_and_page(
    served: str, method: str, path: str, headers: dict[str, str]
) -> None:
    reply = httpx.request(method, served + path, headers=headers, content=b"{}")
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"].startswith(("application/json", "text/html"))


def test_the_cap_counts_each_request_on_a_kept_alive_connection_apart(served: str) -> None:
    """Three 40 KB heads on one connection make 120 KB, but each is under the cap."""
    with httpx.Client() as client:
        replies = [client.get(served + "/healthz", headers={"X-Padding": "a" * 40_000}) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]


def test_request_headers_are_capped(served: str) -> None:
    """Finding: an 8 MB request header was read. Past 64 KB the server answers 400 (or hangs up)
    without serving the request; a large but allowed header still works."""
    assert httpx.get(served + "/healthz", headers={"X-Padding": "a" * 32_000}).status_code == 200
    just_over = httpx.get(served + "/healthz", headers={"X-Padding": "a" * 66_000})
    assert just_over.status_code == 431 and "PODCI_MAX_HEADER_BYTES" in just_over.json()["error"]
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: podci\r\nX-Padding: " + b"a" * 200_000 + b"\r\n\r\n"
            )
            answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b"(hung up)"
    assert status in (b"400", b"431", b"(hung up)"), answer[:200]
