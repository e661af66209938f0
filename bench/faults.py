"""Fault runs: the "proof" that builds survive what production does to them, counted, not timed.

Every run drives its builds with real signed Bitbucket Server webhooks to `podci serve` (not
`dispatch.submit`), on real `podci worker` process groups (two, of two pool processes; the first runs
beat), a real Redis with its append-only file, the fake Kubernetes API server and a Bitbucket stand-in
(`bench.stack`), and then counts what went wrong:

- kill:   worker process groups SIGKILLed at random moments (and sometimes only one pool child), then
          restarted, while 100 builds run;
- broker: Redis stopped (SIGTERM, then a SIGKILL crash; fsync always) and started again on its port
          while 50-80 builds are in flight; webhooks refused meanwhile are redelivered, as Bitbucket does;
- pods:   0-2 pod losses per build during its tests, each a random way (evict, delete, lose_node,
          shutdown_node), and 5 builds with 3 losses, which must end in `error`;
- slow:   bursts of 429 (with Retry-After) and 500 answers from the API server while 50 builds run;
- sentinel: Redis as a master, a replica and three sentinels, the processes on sentinel URLs; the
          master SIGKILLed while 40 builds are in flight, the replica promoted, the old master started
          again (it rejoins as a replica); webhooks refused meanwhile are redelivered.

Per build: did it reach a final state (else: lost), did its commit get exactly one final status
(missing, duplicate), is anything of it left in the cluster (leaked). A supervisor restarts a worker
group that exits on its own, as compose and the worker Deployment do, and counts it. The exit status is
non-zero when a run lost, leaked or duplicated anything, or a build ended otherwise than planned.
Counts are printed as a table and written to bench/results/faults.json, with each run's settings.

Usage: python -m bench.faults [kill|broker|pods|slow|sentinel|all] [--builds N] [--seed S] [--json PATH]
       [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from bench.stack import FINAL_STATES, NAMESPACE, Stack, WorkerGroup, final_reported, pull_request, stack
from schemas.record import BuildRecord, BuildState
from store.builds import BUILDS, BuildStore, as_text
from testkit.fake_k8s.cluster import LOSE_WAYS
from testkit.sentinel import sentinels
from workers.backends.kubernetes.names import SELECTOR

RUNS = ("kill", "broker", "pods", "slow", "sentinel")
RESULTS = Path(__file__).parent / "results" / "faults.json"
NAMESPACED_KINDS = ("pods", "services", "persistentvolumeclaims")
# What Bitbucket Server shows for each final build state (podci's server reporter, `reporters/status.py`).
EXPECTED_FINAL = {"succeeded": "SUCCESSFUL", "failed": "FAILED", "error": "FAILED", "stopped": "CANCELLED"}
# Worker settings every run shares: a build re-sent by the reconciler 10 s after its next step was due
# (the kill test of tests/test_k8s_backend.py uses the same), waiting steps looking at least every 2 s.
COMMON_ENV = {"PODCI_STALL_GRACE": "10", "PODCI_RECONCILE_INTERVAL": "2"}
WORKER_GROUPS, CONCURRENCY = 2, 2  # two replicas of two pool processes: the 2-core machine, busy
RETRY_LINE = re.compile(r"step \w+: .*; retry \d+ in ")


# == webhooks ==========================================================================================


@dataclass
class Delivery:
    """One pull request's webhook: what was sent and what `podci serve` answered (0: no answer)."""

    number: int
    branch: str
    sha: str
    body: bytes
    headers: dict[str, str]
    sent: float = 0.0
    status: int = 0
    build_id: str | None = None
    redelivered: list[int] = field(default_factory=list)  # the answers to Bitbucket's redeliveries


def deliveries(built: Stack, count: int, first_number: int) -> list[Delivery]:
    """`count` pull requests, each from its own branch with its own head commit, so that no two builds
    share a commit (statuses are counted per commit) or a pull request (no build supersedes another)."""
    out = []
    for n in range(count):
        number = first_number + n
        branch = f"pr-{number}"
        sha = built.repo.branch(branch, {f"change-{number}.txt": f"{number}\n"})
        body, headers = pull_request(built, number, branch, sha)
        out.append(Delivery(number, branch, sha, body, headers))
    return out


def post(client: httpx.Client, built: Stack, delivery: Delivery) -> tuple[int, str | None]:
    """(status, build id); status 0 when the receiver did not answer at all."""
    try:
        reply = client.post(f"{built.api}/hooks/bitbucket", content=delivery.body, headers=delivery.headers)
    except httpx.TransportError:
        return 0, None
    try:
        build_id = reply.json().get("build_id")
    except ValueError:
        build_id = None
    return reply.status_code, str(build_id) if build_id else None


def send_all(
    built: Stack,
    batch: list[Delivery],
    rate: float,
    on_accepted: Callable[[Delivery], None] | None = None,
) -> threading.Thread:
    """Deliver the batch at `rate` per second from a thread (builds arrive while faults happen);
    `on_accepted` runs right after each 202, before the build can have reached its tests."""

    def deliver() -> None:
        with httpx.Client(timeout=30) as client:
            start = time.monotonic()
            for n, delivery in enumerate(batch):
                pause = start + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                delivery.sent = time.time()
                delivery.status, delivery.build_id = post(client, built, delivery)
                if delivery.status == 202 and on_accepted is not None:
                    on_accepted(delivery)

    thread = threading.Thread(target=deliver, name="webhooks", daemon=True)
    thread.start()
    return thread


# == waiting and counting ==============================================================================


def settle(store: BuildStore, ids: list[str], timeout: float) -> dict[str, BuildRecord | None]:
    """Wait until every build is complete and its final status recorded as posted, or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        records = {i: store.get(i) for i in ids}
        done = all(r is not None and r.complete and final_reported(r) for r in records.values())
        if done or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def leftovers(built: Stack) -> list[str]:
    """podci's objects still in the cluster: the build kinds by label, and any volume still bound to a
    claim in the build namespace (dynamically provisioned volumes carry no labels of ours)."""
    cluster = built.cluster
    left = [f"{kind}/{o['metadata']['name']}" for kind in NAMESPACED_KINDS
            for o in cluster.objects(kind, NAMESPACE, SELECTOR)]  # fmt: skip
    for pv in cluster.objects("persistentvolumes"):
        labelled = (pv["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "podci"
        if labelled or (pv["spec"].get("claimRef") or {}).get("namespace") == NAMESPACE:
            left.append(f"persistentvolumes/{pv['metadata']['name']}")
    return left


def log_lines(built: Stack, pattern: str | re.Pattern[str]) -> list[str]:
    """Lines of every worker log matching `pattern`."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    lines: list[str] = []
    for path in sorted(built.work.glob("worker-*.log")):
        lines += [line for line in path.read_text(errors="replace").splitlines() if regex.search(line)]
    return lines


@dataclass
class Audit:
    """Counts over the tracked builds, and what makes the run a failure."""

    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: Any, *, bad: bool = False, detail: str = "") -> None:
        self.counts[key] = value
        if bad and value:
            self.problems.append(f"{key}: {value}" + (f" ({detail})" if detail else ""))


def audit(
    built: Stack,
    records: dict[str, BuildRecord | None],
    shas: dict[str, str],
    expected: Callable[[BuildRecord], str | None] | None = None,
) -> Audit:
    """The counts every run reports. `expected(record)`: None when the build ended as planned, else a
    sentence saying how it did not (default: it must have succeeded)."""
    result = Audit()
    complete = [r for r in records.values() if r is not None and r.complete]
    lost = sorted(i for i, r in records.items() if r is None or not r.complete)
    result.add("builds", len(records))
    result.add("final", len(complete))
    result.add("lost", len(lost), bad=True, detail=", ".join(lost[:5]))
    result.add(
        "states", ", ".join(f"{k} {v}" for k, v in sorted(Counter(r.state.value for r in complete).items()))
    )
    check = expected or (
        lambda r: None if r.state is BuildState.succeeded else f"{r.state.value}: {r.reason}"
    )
    unplanned = {r.id: why for r in complete if (why := check(r)) is not None}
    result.add("not_as_planned", len(unplanned), bad=True,
               detail="; ".join(f"{i}: {why}" for i, why in list(unplanned.items())[:3]))  # fmt: skip
    time.sleep(1)  # a delete sent by a late duplicate step would still show: give it a moment
    left = leftovers(built)
    result.add("objects_left", len(left), bad=True, detail=", ".join(left[:5]))

    posts = [p for p in list(built.bitbucket.posts) if not p.problems]
    missing = duplicates = wrong = stale = 0
    for record in complete:
        sha = shas[record.id]
        mine = [p for p in posts if p.sha == sha]
        finals = [p for p in mine if p.state in FINAL_STATES or p.state == "CANCELLED"]
        missing += not finals
        duplicates += max(0, len(finals) - 1)
        wrong += bool(finals) and finals[-1].state != EXPECTED_FINAL[record.state.value]
        stale += bool(finals) and any(p.state == "INPROGRESS" and p.time > finals[0].time for p in mine)
    result.add("final_reports_missing", missing, bad=True)
    result.add("final_reports_duplicate", duplicates, bad=True)
    result.add("final_reports_wrong_state", wrong, bad=True)
    result.add("inprogress_after_final", stale, bad=True)
    result.add("standin_duplicate_finals", built.bitbucket.duplicate_finals())
    result.add("standin_rejected", built.bitbucket.rejected(), bad=True)
    problems = list(built.cluster.problems) + built.cluster.self_check()
    result.add("fake_api_problems", len(problems), bad=True, detail="; ".join(problems[:3]))
    crashes = log_lines(built, "failed unexpectedly")
    result.add(
        "steps_failed_unexpectedly", len(crashes), bad=True, detail=crashes[0][-300:] if crashes else ""
    )
    result.add("reconciler_resends", len(log_lines(built, r"overdue; sending it again")))
    delays, durations = [], []
    for r in complete:
        assert r.finished is not None
        durations.append((r.finished - r.created).total_seconds())
        if (posted := built.bitbucket.first(shas[r.id], FINAL_STATES)) is not None:
            delays.append(posted - r.finished.timestamp())
    result.add("final_report_after_finish_max_s", round(max(delays, default=0), 1))
    result.add("build_seconds_max", round(max(durations, default=0), 1))
    return result


def wait_workers(groups: list[WorkerGroup], timeout: float = 60) -> None:
    """Until every group's log says it is ready (a worker that never comes up is a harness failure)."""
    deadline = time.monotonic() + timeout
    for group in groups:
        while "ready." not in group.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {group.log}")
            time.sleep(0.2)


# == worker processes ==================================================================================


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def pool_children(group: WorkerGroup) -> list[int]:
    """The group's prefork pool processes. The embedded beat is also a child of the main process; it
    is told apart by having no pipes (the pool talks to its children over pipes), since without
    setproctitle every process of the group has the same command line."""
    if group.proc is None or group.proc.poll() is not None:
        return []
    pool = []
    for pid in children(group.proc.pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("pipe:") for link in links):
            pool.append(pid)
    return pool


def last_error(group: WorkerGroup) -> str:
    """The last CRITICAL or ERROR line of a worker group's log (why it exited, usually)."""
    lines = [line for line in group.log.read_text(errors="replace").splitlines()
             if "CRITICAL/" in line or "ERROR/" in line]  # fmt: skip
    return lines[-1][-200:] if lines else "(nothing logged)"


class Supervisor:
    """Restarts worker groups that exit on their own, as compose (`restart: unless-stopped`) and the
    worker Deployment do in production; counts those exits, since each one is a worker that gave up.
    The killer holds `lock` while it kills and restarts a group, so the two never start one twice."""

    def __init__(self, groups: list[WorkerGroup]) -> None:
        self.groups, self.lock, self.exits = groups, threading.Lock(), 0
        self.causes: list[str] = []  # exit status and the last error the group logged, per exit
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.stopped.wait(0.5):
            with self.lock:
                for group in self.groups:
                    if group.proc is not None and group.proc.poll() is not None:
                        self.exits += 1
                        self.causes.append(
                            f"{group.log.name} exit {group.proc.returncode}: {last_error(group)}"
                        )
                        group.start()


def keep_killing(
    built: Stack,
    supervisor: Supervisor,
    rng: random.Random,
    enough: Callable[[], bool],
    kills: list[str],
    child_share: float = 0.3,
) -> None:
    """SIGKILL a random worker group (restarted after 0.2-1 s) or one pool child (the pool replaces
    it) every 0.5-3 s until `enough()`; `kills` gets "group" or "child" for each."""
    while not enough():
        time.sleep(rng.uniform(0.5, 3.0))
        group = rng.choice(built.workers)
        pool = pool_children(group) if rng.random() < child_share else []
        if pool:
            try:
                os.kill(rng.choice(pool), signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills.append("child")
            continue
        with supervisor.lock:
            if group.proc is None or group.proc.poll() is not None:
                continue
            group.kill()
            kills.append("group")
            time.sleep(rng.uniform(0.2, 1.0))
            group.start()


def duplicates_explained(built: Stack, records: dict[str, BuildRecord | None], shas: dict[str, str]) -> int:
    """Duplicate final posts that the known at-least-once window explains: a post the worker made but
    never recorded (it was killed between the HTTP POST and writing `reported`). The notify task logs
    `build=… reporter=… state=…` only after recording, so a build with more final posts than such log
    lines had a post that went unrecorded, and only that can make the next look post again."""
    explained = 0
    for build_id, record in records.items():
        if record is None or not record.complete:
            continue
        finals = [p for p in built.bitbucket.posts if p.sha == shas[build_id] and p.state in FINAL_STATES]
        if len(finals) < 2:
            continue
        logged = len(
            log_lines(built, rf"build={re.escape(build_id)} reporter=\S+ state=(?:{'|'.join(FINAL_STATES)}) ")
        )
        explained += min(len(finals) - 1, max(0, len(finals) - logged))
    return explained


# == the runs ==========================================================================================


@dataclass
class RunResult:
    name: str
    seconds: float
    settings: dict[str, Any]
    counts: dict[str, Any]
    problems: list[str]


@dataclass
class Running:
    """One run's stack with its workers up and its pull requests ready to deliver."""

    built: Stack
    batch: list[Delivery]
    store: BuildStore
    supervisor: Supervisor

    def tracked(self) -> tuple[list[str], dict[str, str]]:
        """The builds the webhooks started, and each one's head commit (its statuses' key)."""
        shas = {d.build_id: d.sha for d in self.batch if d.build_id}
        return list(shas), shas


# the fake's image pull + container start, and its simulated test run
FAKE: dict[str, Any] = {"start_delay": 0.5, "test_duration": 2.0}
RATE = 2.0  # webhooks per second: a little above what two worker groups finish, so a queue builds up
REDIS_OUTAGES = ("broker", "sentinel")  # the runs in which Redis is away for a while


@contextmanager
def running(
    work: Path,
    builds: int,
    *,
    fake: dict[str, Any] = FAKE,
    env: dict[str, str] = COMMON_ENV,
    fsync: str = "always",
) -> Iterator[Running]:
    with stack(work, fsync=fsync, extra_env=env) as built:
        built.cluster.configure(**fake)
        batch = deliveries(built, builds, 1)
        built.start_workers(WORKER_GROUPS, CONCURRENCY)
        wait_workers(built.workers)
        with Supervisor(built.workers) as supervisor:
            yield Running(built, batch, BuildStore(built.store_client()), supervisor)


def base_settings(**more: Any) -> dict[str, Any]:
    return {"fake": FAKE, "env": COMMON_ENV, "worker_groups": WORKER_GROUPS, "concurrency": CONCURRENCY,
            "webhooks_per_s": RATE, "supervisor": "restarts a worker group that exits", **more}  # fmt: skip


def finish(run: Running, name: str, started: float, settings: dict[str, Any], result: Audit) -> RunResult:
    # Only a Redis outage may refuse webhooks (they are redelivered, and counted, in those runs).
    result.add("webhooks_not_202", sum(d.status != 202 for d in run.batch), bad=name not in REDIS_OUTAGES)
    result.add("worker_exits_restarted", run.supervisor.exits)
    if run.supervisor.causes:
        result.add("worker_exit_causes", " | ".join(run.supervisor.causes[:3]))
    return RunResult(name, time.monotonic() - started, settings, result.counts, result.problems)


def run_kill(work: Path, builds: int, rng: random.Random) -> RunResult:
    settings = base_settings(min_kills=20, kill_interval_s="0.5-3", child_kill_share=0.3,
                             restart_after_s="0.2-1")  # fmt: skip
    started = time.monotonic()
    with running(work, builds) as run:
        sender = send_all(run.built, run.batch, RATE)
        kills: list[str] = []

        def enough() -> bool:
            return len(kills) >= 20 and not sender.is_alive()

        keep_killing(run.built, run.supervisor, rng, enough, kills)
        sender.join()
        ids, shas = run.tracked()
        # A kill between taking a notify lock and releasing it holds the lock until it expires (45 s).
        records = settle(run.store, ids, timeout=180)
        result = audit(run.built, records, shas)
        result.add("kills_group", kills.count("group"))
        result.add("kills_pool_child", kills.count("child"))
        result.add("duplicates_from_post_window", duplicates_explained(run.built, records, shas))
        return finish(run, "kill", started, settings, result)


def run_broker(work: Path, builds: int, rng: random.Random) -> RunResult:
    # Long test runs and a faster arrival, so that most builds are in flight when Redis goes away: waiting
    # in their tests (watched), in setup, or still queued.
    fake, rate, outage = {**FAKE, "test_duration": 20.0}, 4.0, 3.0
    restarts_at = f"SIGTERM ~12 s and SIGKILL ~24 s after the first webhook, {outage:g} s down each"
    settings = base_settings(fake=fake, webhooks_per_s=rate, redis_fsync="always", restarts=restarts_at)
    started = time.monotonic()
    with running(work, builds, fake=fake, fsync="always") as run:
        built = run.built
        sender = send_all(built, run.batch, rate)
        first = time.monotonic()
        restarts = []
        for at, sig in ((12.0, signal.SIGTERM), (24.0, signal.SIGKILL)):
            time.sleep(max(0.0, at + rng.uniform(-1, 1) - (time.monotonic() - first)))
            in_flight = sum(1 for r in run.store.recent(10_000) if not r.complete)
            built.redis.stop(sig)
            time.sleep(outage)
            built.redis.start()
            restarts.append(f"{signal.Signals(sig).name} {in_flight}")
        sender.join()
        result = redeliver_and_audit(run)
        result.add("in_flight_at_restarts", ", ".join(restarts))
        return finish(run, "broker", started, settings, result)


def redeliver_and_audit(run: Running) -> Audit:
    """After a Redis outage: Bitbucket redelivers what was not answered 2xx (a delivery id already
    seen is a duplicate, 200); then the usual counts, and whether every build came from a webhook."""
    built = run.built
    refused = [d for d in run.batch if d.status != 202]
    with httpx.Client(timeout=30) as client:
        for delivery in refused:
            for _ in range(3):
                status, build_id = post(client, built, delivery)
                delivery.redelivered.append(status)
                if status in (200, 202):
                    delivery.build_id = build_id
                    break
                time.sleep(1)
    ids, shas = run.tracked()
    records = settle(run.store, ids, timeout=180)
    result = audit(built, records, shas)
    result.add("not_202_then_202_on_redelivery", sum(d.redelivered[-1:] == [202] for d in refused))
    result.add("not_202_but_build_existed", sum(d.redelivered[-1:] == [200] for d in refused))
    result.add("not_202_after_redelivery", sum(d.redelivered[-1:] not in ([200], [202]) for d in refused),
               bad=True)  # fmt: skip
    known = {as_text(m) for m in built.store_client().zrange(BUILDS, 0, -1)}
    result.add("builds_no_webhook_started", len(known - set(ids)), bad=True)
    return result


def run_sentinel(work: Path, builds: int, rng: random.Random) -> RunResult:
    # Tests long enough that most builds are in flight when the master dies: in their tests, in setup,
    # or still queued. The stack's own Redis stays idle: every process is on the sentinels' URLs.
    fake, rate, kill_at, rejoin_after = {**FAKE, "test_duration": 10.0}, 3.0, 10.0, 5.0
    failover = (f"master SIGKILLed ~{kill_at:g} s after the first webhook; started again {rejoin_after:g} s "
                "after the replica's promotion, rejoining as a replica")  # fmt: skip
    settings = base_settings(fake=fake, webhooks_per_s=rate, failover=failover,
                             redis="master + replica + 3 sentinels, quorum 2, down after 1 s")  # fmt: skip
    started = time.monotonic()
    with sentinels(work / "sentinels") as redis_set:
        env = {**COMMON_ENV, "PODCI_REDIS_URL": redis_set.url, "PODCI_REDIS_SENTINEL_MASTER": redis_set.name}
        with running(work, builds, fake=fake, env=env) as run:
            sender = send_all(run.built, run.batch, rate)
            time.sleep(kill_at + rng.uniform(-1, 1))
            in_flight = sum(1 for r in run.store.recent(10_000) if not r.complete)
            killed = redis_set.kill_master()
            down = time.monotonic()
            redis_set.wait_for_failover(killed.port)
            promoted_after = time.monotonic() - down
            time.sleep(rejoin_after)
            redis_set.restart(killed)
            sender.join()
            result = redeliver_and_audit(run)
            result.add("in_flight_at_failover", in_flight)
            result.add("failover_s", round(promoted_after, 1))
            return finish(run, "sentinel", started, settings, result)


def run_pods(work: Path, builds: int, rng: random.Random) -> RunResult:
    doomed = 5
    settings = base_settings(losses_per_build="0-2, each a random way", builds_with_3_losses=doomed,
                             max_attempts=3)  # fmt: skip
    total = builds + doomed
    three = set(rng.sample(range(total), doomed))
    # the ways each build's pod is lost, by pull request number
    plans = {
        n + 1: [rng.choice(LOSE_WAYS) for _ in range(3 if n in three else rng.randint(0, 2))]
        for n in range(total)
    }
    by_build: dict[str, list[str]] = {}
    started = time.monotonic()
    with running(work, total) as run:

        def plan(delivery: Delivery) -> None:
            record = run.store.get(delivery.build_id or "")
            assert record is not None
            by_build[record.id] = ways = plans[delivery.number]
            if ways:
                run.built.cluster.lose_on_tests(record.name, times=len(ways), how=ways)

        send_all(run.built, run.batch, RATE, on_accepted=plan).join()
        ids, shas = run.tracked()
        records = settle(run.store, ids, timeout=180)

        def as_planned(record: BuildRecord) -> str | None:
            losses = len(by_build[record.id])
            pods = [p.pod for p in record.pods]
            if losses >= 3:
                if record.state is not BuildState.error or not record.reason.startswith(
                    "the pod was lost 3 time(s)"
                ):
                    return f"3 losses planned, ended {record.state.value}: {record.reason}"
                return None if record.attempts == 3 else f"3 losses planned, {record.attempts} attempts"
            if record.state is not BuildState.succeeded:
                return f"{losses} losses planned, ended {record.state.value}: {record.reason}"
            if record.attempts != losses + 1 or pods != [record.name] + [
                f"{record.name}-a{k}" for k in range(2, losses + 2)
            ]:
                return f"{losses} losses planned, attempts {record.attempts}, pods {pods}"
            if any(not p.ended for p in record.pods[:-1]) or record.pods[-1].ended:
                return "a lost pod has no reason it ended, or the last pod has one"
            return None

        result = audit(run.built, records, shas, as_planned)
        planned = Counter(way for ways in by_build.values() for way in ways)
        done = [r for r in records.values() if r is not None and r.complete]
        result.add("losses_planned", sum(planned.values()))
        result.add("losses_by_way", ", ".join(f"{k} {v}" for k, v in sorted(planned.items())))
        result.add("relaunches", sum(max(0, r.attempts - 1) for r in done))
        result.add("error_after_3_losses", sum(len(by_build[r.id]) >= 3 and r.state is BuildState.error
                                               for r in done))  # fmt: skip
        return finish(run, "pods", started, settings, result)


def fake_api_url(built: Stack) -> str:
    """The fake API server's URL, from the kubeconfig the stack wrote for the workers."""
    config = yaml.safe_load((built.work / "kubeconfig").read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def run_slow(work: Path, builds: int, rng: random.Random) -> RunResult:
    bursts = (
        "every 1-2 s: the next 3-10 requests (a third of the bursts: POSTs) are answered 429 (Retry-After "
        "1-2 s) or 500, for 1 s at most: what the workers have not met by then expires"
    )
    # Each try of a step meets a burst with some odds: the more tries, the less likely all of them do.
    env = {**COMMON_ENV, "PODCI_TRANSIENT_RETRIES": "10"}
    settings = base_settings(env=env, bursts=bursts)
    injected: Counter[str] = Counter()
    expired = 0
    started = time.monotonic()
    with running(work, builds, env=env) as run:
        cluster, url = run.built.cluster, fake_api_url(run.built)
        before = len(cluster.requests)
        sender = send_all(run.built, run.batch, RATE)
        stop = threading.Event()

        def served() -> Counter[int | None]:
            return Counter(r.status for r in cluster.requests[before:] if r.status in (429, 500))

        def expire(client: httpx.Client, method: str | None) -> int:
            """Take what is left of the burst with requests of our own that change nothing (a list, an
            invalid object). The fake's failures are "the next n requests", whenever they come: left
            armed, a burst would fail a lone build's retries however far apart, an outage rather than
            a moment of trouble."""
            taken = 0
            for _ in range(20):  # a burst is at most 10
                if served().total() >= injected.total():
                    break
                if method == "POST":
                    reply = client.post(f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps", json={})
                else:
                    reply = client.get(f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps")
                taken += reply.status_code in (429, 500)
            return taken

        def inject() -> None:
            nonlocal expired
            with httpx.Client(timeout=10) as client:
                while not stop.wait(rng.uniform(0.0, 1.0)):
                    status, n = rng.choice((429, 500)), rng.randint(3, 10)
                    method = "POST" if rng.random() < 1 / 3 else None
                    cluster.fail_next(n, status, retry_after=rng.choice((1, 2)), method=method)
                    injected[f"{status}{' POST' if method else ''}"] += n
                    stop.wait(1.0)
                    expired += expire(client, method)

        injector = threading.Thread(target=inject, name="injector", daemon=True)
        injector.start()
        sender.join()
        ids, shas = run.tracked()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not all(
            (r := run.store.get(i)) is not None and r.complete for i in ids
        ):
            time.sleep(0.5)
        stop.set()
        injector.join()
        records = settle(run.store, ids, timeout=60)
        result = audit(run.built, records, shas)
        answered = served()
        result.add("failures_injected", injected.total())
        result.add("failures_injected_by_kind", ", ".join(f"{k} {v}" for k, v in sorted(injected.items())))
        result.add("failures_served", f"429 {answered[429]}, 500 {answered[500]}")
        result.add("failures_of_those_expired_unmet", expired)
        result.add("step_retries_in_worker_logs", len(log_lines(run.built, RETRY_LINE)))
        result.add("watch_restarts_in_worker_logs", len(log_lines(run.built, "pod watch interrupted")))
        return finish(run, "slow", started, settings, result)


RUNNERS: dict[str, Callable[[Path, int, random.Random], RunResult]] = {
    "kill": run_kill,
    "broker": run_broker,
    "pods": run_pods,
    "slow": run_slow,
    "sentinel": run_sentinel,
}
DEFAULT_BUILDS = {"kill": 100, "broker": 80, "pods": 100, "slow": 50, "sentinel": 40}


# == output ============================================================================================


def show(results: list[RunResult], console: Console) -> None:
    table = Table(title="podci fault runs (counts)")
    table.add_column("count", no_wrap=True)
    for r in results:
        table.add_column(r.name, justify="right")
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.counts if k not in keys]
    for key in keys:
        table.add_row(key, *(str(r.counts.get(key, "")) for r in results))
    table.add_row("seconds", *(f"{r.seconds:.0f}" for r in results))
    table.add_row("verdict", *("[green]ok[/]" if not r.problems else "[red]FAILED[/]" for r in results))
    console.print(table)
    for r in results:
        console.print(f"[bold]{r.name}[/] settings: {json.dumps(r.settings)}")
        for problem in r.problems:
            console.print(f"  [red]{r.name}: {problem}[/]")


class _RefusedHandshakes(logging.Filter):
    """The fake refuses an exec's websocket handshake with an injected 429/500 on purpose; uvicorn
    logs each one as an error, which would only be noise in the slow run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing handshake" not in record.getMessage()


def main() -> None:
    logging.getLogger("uvicorn.error").addFilter(_RefusedHandshakes())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default="all", choices=[*RUNS, "all"])
    parser.add_argument(
        "--builds",
        type=int,
        default=None,
        help="builds per run (default: kill 100, broker 80, pods 100+5, slow 50, sentinel 40)",
    )
    parser.add_argument("--seed", type=int, default=None, help="for the random faults (default: random)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep each run's logs and files for a look")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped to a file: room for the count names and every run's column
    results = []
    for name in RUNS if args.run == "all" else (args.run,):
        builds = args.builds or DEFAULT_BUILDS[name]
        console.print(f"[bold]{name}[/]: {builds} builds, seed {seed}")
        with tempfile.TemporaryDirectory(prefix=f"podci-faults-{name}-") as tmp:
            result = RUNNERS[name](Path(tmp), builds, random.Random(f"{seed}-{name}"))
            if args.keep:
                kept = Path(tempfile.mkdtemp(prefix=f"podci-faults-{name}-kept-"))
                shutil.copytree(tmp, kept, dirs_exist_ok=True, ignore_dangling_symlinks=True)
                console.print(f"the run's logs and Redis files: {kept}")
        results.append(result)
        console.print(f"{name}: {result.seconds:.0f} s, {'ok' if not result.problems else 'FAILED'}")
    show(results, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"seed": seed, "runs": [r.__dict__ for r in results]}, indent=2, default=str)
    )
    sys.exit(1 if any(r.problems for r in results) else 0)


if __name__ == "__main__":
    main()
