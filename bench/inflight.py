"""Many builds waiting at once: 1,000 builds whose pods take long to become ready, held by one
`podci worker` with 4 pool processes, through the Kubernetes backend against the fake API server.

A waiting build holds no worker process (its step returns and is looked at again later, or woken by
the pod watch), so the number in flight is bounded by the cluster, not by the workers. Measured: the
most builds in flight at once (their pods exist and are not yet done), the worker group's memory at
that moment (RSS summed over its processes, and PSS, which counts shared pages once), and Redis'
memory per build in flight. Then every build is let finish: all must succeed and leave no object.

Usage: python -m bench.inflight [--builds N] [--setup S]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stack import NAMESPACE, group_memory, stack
from dispatch.app import make_app
from dispatch.submit import submit
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from store.keys import DUE

KINDS = ("pods", "services", "persistentvolumeclaims")


def run(builds: int, setup: float, processes: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="podci-inflight-") as tmp,
        stack(Path(tmp), fsync="everysec", serve_api=False, extra_env={}) as built,
    ):
        built.cluster.configure(setup_delay=setup, test_duration=0.2)
        config = (built.repo.path / ".podci.yml").read_text()
        built.repo.commit({".podci.yml": config.replace("setup: 60", f"setup: {int(setup) + 600}")})
        built.start_workers(1, processes)
        redis = built.store_client()
        settings = Settings(redis_url=built.redis.url, state_dir=Path(tmp) / "state")
        app, store = make_app(settings), BuildStore(redis)
        request = BuildRequest(job="inflight", repo="team/webapp",
                               source=Revision(clone_url=str(built.repo.path), ref="main"))  # fmt: skip
        time.sleep(3)  # the worker's start-up out of the memory baseline
        memory0 = float(redis.info("memory")["used_memory"])
        start = time.perf_counter()
        ids = [submit(app, store, settings, request).id for _ in range(builds)]
        submitted = time.perf_counter() - start
        peak, peak_at, rss, pss, redis_peak = 0, 0.0, 0.0, 0.0, memory0
        group = built.workers[0]
        assert group.proc is not None
        while True:
            pods = built.cluster.objects("pods", NAMESPACE)
            waiting = sum(1 for p in pods if not _done(p))
            if waiting >= peak:
                peak, peak_at = waiting, time.perf_counter() - start
                rss, pss = group_memory(group.proc.pid)
                redis_peak = max(redis_peak, float(redis.info("memory")["used_memory"]))
            if peak >= builds or (peak > 0 and waiting < peak * 0.9):
                break  # all in flight, or the first ones are finishing: the peak is behind us
            if int(time.perf_counter() - start) % 60 == 0:
                print(f"{time.perf_counter() - start:6.0f} s: {waiting} in flight", flush=True)
            time.sleep(1)
        per_build = (redis_peak - memory0) / max(peak, 1)
        said = f"most in flight: {peak} after {peak_at:.0f} s; worker RSS {rss:.0f} MiB (PSS {pss:.0f}), "
        print(f"{said}Redis {per_build / 1000:.1f} kB a build; now waiting for all to finish", flush=True)
        records = _wait_all(store, ids, timeout=setup + max(900.0, 0.5 * builds))
        left = sum(len(built.cluster.objects(kind, NAMESPACE)) for kind in KINDS)
        return {
            "builds": builds,
            "worker_pool_processes": processes,
            "pod_setup_s": setup,
            "submit_s": submitted,
            "most_in_flight": peak,
            "most_in_flight_reached_after_s": peak_at,
            "worker_rss_total_mib": rss,
            "worker_pss_total_mib": pss,
            "redis_bytes_per_build_in_flight": per_build,
            "builds_succeeded": sum(r.state.value == "succeeded" for r in records),
            "objects_left": left,
            "total_s": time.perf_counter() - start,
        }


def _done(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(pod["metadata"].get("deletionTimestamp")) or any(
        "terminated" in (s.get("state") or {}) for s in statuses
    )


def _wait_all(store: BuildStore, ids: list[str], timeout: float) -> list[Any]:
    """Every build's record once none is unfinished. An unfinished build has a due time, so counting
    the due list is enough while they run: reading 10,000 records every few seconds would take the
    cores the workers need."""
    deadline = time.monotonic() + timeout
    while (pending := int(store.redis.zcard(DUE))) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{pending} builds did not finish within {timeout:.0f}s")
        time.sleep(5)
    return [store.get(i) for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=1000)
    parser.add_argument(
        "--setup",
        type=float,
        help="seconds until a pod is ready (default: long enough "
        "for every build to be in flight: 240 s per 1,000 builds, at least 240)",
    )
    parser.add_argument("--processes", type=int, default=4, help="the worker's pool processes")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "inflight.json")
    args = parser.parse_args()
    setup = args.setup if args.setup is not None else max(240.0, 0.24 * args.builds)
    results = run(args.builds, setup, args.processes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:>34}: {value:.1f}" if isinstance(value, float) else f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
