"""Builds driven by real webhooks, end to end: HTTP to `podci serve`, a real worker and Redis, the
Kubernetes backend against the fake API server, statuses to a Bitbucket Server stand-in.

Measures builds per second and, per build, the time from the webhook to: the INPROGRESS status, the
pod's creation; from the pod being ready to its tests starting; from the tests finishing to the final
status. Alongside, one build with a 2 s and one with a 60 s test run: the API requests each made
(from the fake's request log), which must be equal — waiting is watched, not polled.

Usage: python -m bench.e2e [--builds N] [--pod-start S] [--test-duration S] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.stack import FINAL_STATES, Stack, final_reported, percentile, pull_request, stack
from schemas.record import BuildRecord
from store.builds import BuildStore


def send(client: httpx.Client, built: Stack, number: int, branch: tuple[str, str]) -> tuple[float, str]:
    """Post pull request `number` of (branch name, head commit); (when it was sent, the build id)."""
    body, headers = pull_request(built, number, *branch)
    sent = time.time()
    reply = client.post(f"{built.api}/hooks/bitbucket", content=body, headers=headers)
    if reply.status_code != 202:
        raise SystemExit(f"the webhook was refused: {reply.status_code} {reply.text}")
    return sent, str(reply.json()["build_id"])


def wait_final(store: BuildStore, ids: list[str], timeout: float) -> list[BuildRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = [store.get(i) for i in ids]
        if all(r is not None and r.complete and final_reported(r) for r in records):
            return [r for r in records if r is not None]
        if time.monotonic() > deadline:
            stuck = [r.id for r in records if r is not None and not r.complete]
            raise SystemExit(f"{len(stuck)} builds were not final after {timeout:.0f}s: {stuck[:5]}")
        time.sleep(0.2)


def phases(built: Stack, sent: dict[str, float], records: list[BuildRecord]) -> dict[str, list[float]]:
    """Seconds between the measured moments, per build, from the stand-in's and the fake's logs."""
    cluster = built.cluster
    out: dict[str, list[float]] = {}
    created = {r.build: r.time for r in reversed(cluster.requests)
               if r.method == "POST" and r.resource == "pods" and r.status == 201}  # fmt: skip
    marks: dict[tuple[str | None, str], float] = {}
    for at, build, what in cluster.marks:
        marks.setdefault((build, what), at)
    started: dict[str, float] = {}
    for ex in cluster.execs:
        if "podci-tests" in ex.command:
            started.setdefault(ex.pod, ex.time)
    for record in records:
        commit, name, t0 = record.request.source.commit, record.name, sent[record.id]
        samples = {
            "webhook_to_inprogress_s": (t0, built.bitbucket.first(commit or "", {"INPROGRESS"})),
            "webhook_to_pod_created_s": (t0, created.get(name)),
            "pod_ready_to_tests_started_s": (marks.get((name, "ready")), started.get(name)),
            "tests_finished_to_final_status_s": (marks.get((name, "tests-finished")),
                                                 built.bitbucket.first(commit or "", FINAL_STATES)),
        }  # fmt: skip
        for key, (start, end) in samples.items():
            if start is not None and end is not None:
                out.setdefault(key, []).append(end - start)
    return out


def requests_by_kind(built: Stack, name: str) -> Counter[str]:
    return Counter(f"{r.method} {r.resource}/{r.subresource or ''}" for r in built.cluster.requests_for(name))


def run(
    builds: int, pod_start: float, test_duration: float, workers: int, concurrency: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podci-e2e-") as tmp, stack(Path(tmp)) as built:
        built.cluster.configure(start_delay=pod_start, test_duration=test_duration)
        built.start_workers(workers, concurrency)
        store = BuildStore(built.store_client())
        results: dict[str, Any] = {}
        shas = [(f"topic-{n}", built.repo.branch(f"topic-{n}", {f"notes-{n}.txt": f"{n}\n"}))
                for n in range(builds + 3)]  # fmt: skip
        with httpx.Client(timeout=30) as client:
            _, warm = send(client, built, 10_000, shas[-1])  # the worker's first build pays its imports
            wait_final(store, [warm], 120)
            # the flat-request pair runs alongside the batch
            pair = [send(client, built, 20_000 + n, shas[n]) for n in (0, 1)]
            names = [store.get(build_id).name for _, build_id in pair]  # type: ignore[union-attr]
            built.cluster.configure(names[0], start_delay=pod_start, test_duration=2)
            built.cluster.configure(names[1], start_delay=pod_start, test_duration=60)
            sent: dict[str, float] = {}
            for n in range(builds):
                at, build_id = send(client, built, n + 1, shas[n + 2])
                sent[build_id] = at
        records = wait_final(store, list(sent), 600)
        end = max(r.finished.timestamp() for r in records if r.finished)
        results["builds"] = builds
        results["builds_ok"] = sum(r.state.value == "succeeded" for r in records)
        results["not_ok_reasons"] = str(Counter(r.reason for r in records if r.state.value != "succeeded"))
        results["builds_per_second"] = builds / (end - min(sent.values()))
        for key, values in phases(built, sent, records).items():
            results[key.removesuffix("_s") + "_p50_s"] = percentile(values, 50)
            results[key.removesuffix("_s") + "_p99_s"] = percentile(values, 99)
        wait_final(store, [build_id for _, build_id in pair], 180)
        counts = [built.cluster.count(build=name) for name in names]
        results["api_requests_per_build_2s_test"], results["api_requests_per_build_60s_test"] = counts
        if counts[0] != counts[1]:
            seen = [requests_by_kind(built, name) for name in names]
            results["api_requests_difference"] = str((seen[0] - seen[1], seen[1] - seen[0]))
        results["bitbucket_rejected_posts"] = built.bitbucket.rejected()
        results["fake_api_problems"] = len(built.cluster.problems) + len(built.cluster.self_check())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=40)
    parser.add_argument("--pod-start", type=float, default=1.0, help="image pull + start, seconds")
    parser.add_argument("--test-duration", type=float, default=2.0, help="the simulated test run")
    parser.add_argument("--workers", type=int, default=1, help="worker process groups")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per group")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "e2e.json")
    args = parser.parse_args()
    results = run(args.builds, args.pod_start, args.test_duration, args.workers, args.concurrency)
    results.update(pod_start_s=args.pod_start, test_duration_s=args.test_duration)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:>40}: {value:.3f}" if isinstance(value, float) else f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
