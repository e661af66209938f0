"""`make bench`: every benchmark, fault run and the fuzz run, one after the other, then one table.

Each part runs as its own process (its own Redis, workers and fake cluster, nothing shared) and writes
bench/results/<part>.json; this collects them into bench/results/summary.json and prints the figures
next to their targets. A part that fails is reported as failed, and the run exits non-zero.

Usage: python -m bench.all [--only part,part] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
# part -> (module, arguments, quick arguments)
PARTS: dict[str, tuple[str, list[str], list[str]]] = {
    "overhead": ("bench.overhead", ["--builds", "60"], ["--builds", "20"]),
    "e2e": ("bench.e2e", ["--builds", "60", "--pod-start", "1", "--test-duration", "2"], ["--builds", "10"]),
    "inflight": (
        "bench.inflight",
        ["--builds", "1000", "--setup", "240"],
        ["--builds", "100", "--setup", "20"],
    ),
    "intake": ("bench.intake", [], ["--requests", "2000"]),
    "pipeline": ("bench.pipeline_rate", [], ["--builds", "10"]),  # the local backend, for comparison
    "delivery": ("bench.delivery", ["--megabytes", "200"], ["--megabytes", "20"]),
    "waiting": (
        "bench.waiting",
        ["--builds", "10", "--durations", "2,60,600"],
        ["--builds", "4", "--durations", "2,20"],
    ),
    "faults": ("bench.faults", ["all"], ["all", "--builds", "20"]),
    "fuzz": ("bench.fuzz", [], ["--bodies", "2000"]),
    "insights": ("bench.insights", ["--builds", "10"], ["--builds", "3"]),
    "hardening": (
        "bench.hardening",
        ["--builds", "20", "--requests", "20"],
        ["--builds", "5", "--requests", "5"],
    ),
}
Check = Callable[[dict[str, Any]], tuple[str, Any, str, bool | None]]


def _get(results: dict[str, Any], part: str, key: str) -> Any:
    return (results.get(part) or {}).get(key)


def targets(results: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """(figure, value, target, met) for each figure the issue sets a target for; met None: no target."""

    def row(name: str, part: str, key: str, target: str, ok: Callable[[Any], bool] | None) -> Any:
        value = _get(results, part, key)
        return name, value, target, (ok(value) if ok and value is not None else None)

    api = (_get(results, "e2e", "api_requests_per_build_2s_test"),
           _get(results, "e2e", "api_requests_per_build_60s_test"))  # fmt: skip
    return [
        row("podci / floor CPU per build", "overhead", "overhead_ratio", "<= 1.5", lambda v: v <= 1.5),
        row("overhead: podci CPU s per build", "overhead", "podci_orchestration_cpu_s_per_build", "", None),
        row("overhead: floor CPU s per build", "overhead", "floor_cpu_s_per_build", "", None),
        row("e2e: builds per second", "e2e", "builds_per_second", "", None),
        row("e2e: webhook -> INPROGRESS p50 s", "e2e", "webhook_to_inprogress_p50_s", "< 1", lambda v: v < 1),
        row("e2e: webhook -> INPROGRESS p99 s", "e2e", "webhook_to_inprogress_p99_s", "< 2", lambda v: v < 2),
        row("e2e: webhook -> pod created p50 s", "e2e", "webhook_to_pod_created_p50_s", "", None),
        row("e2e: webhook -> pod created p99 s", "e2e", "webhook_to_pod_created_p99_s", "", None),
        row("e2e: pod ready -> tests started p50 s", "e2e", "pod_ready_to_tests_started_p50_s", "", None),
        row("e2e: pod ready -> tests started p99 s", "e2e", "pod_ready_to_tests_started_p99_s", "", None),
        row("e2e: tests done -> final status p50 s", "e2e", "tests_finished_to_final_status_p50_s", "", None),
        row("e2e: tests done -> final status p99 s", "e2e", "tests_finished_to_final_status_p99_s", "", None),
        ("API requests per build, 2 s / 60 s tests", f"{api[0]} / {api[1]}", "equal",
         api[0] == api[1] if None not in api else None),
        row("waiting: CPU s per build, 2 s tests", "waiting", "cpu_s_per_build_2s", "", None),
        row("waiting: CPU s per build, 60 s tests", "waiting", "cpu_s_per_build_60s", "", None),
        row("waiting: CPU s per build, 600 s tests", "waiting", "cpu_s_per_build_600s", "", None),
        row("waiting: CPU largest / smallest", "waiting", "cpu_spread", "<= 1.1", lambda v: v <= 1.1),
        row("waiting: tasks largest / smallest", "waiting", "tasks_spread", "<= 1.1", lambda v: v <= 1.1),
        row("in flight at once (of 1,000)", "inflight", "most_in_flight", "1000", lambda v: v >= 1000),
        row("worker RSS total MiB then", "inflight", "worker_rss_total_mib", "< 1024", lambda v: v < 1024),
        row("worker PSS total MiB then", "inflight", "worker_pss_total_mib", "", None),
        row("Redis bytes per build in flight", "inflight", "redis_bytes_per_build_in_flight", "", None),
        *inflight_rows(results.get(BIG_INFLIGHT) or {}),
        row("delivery: bundle MB", "delivery", "bundle_mb", "", None),
        row("delivery: bundle s", "delivery", "bundle_s", "", None),
        row("delivery: stream MB/s to the fake", "delivery", "stream_mb_per_s", "", None),
        row("delivery: worker RSS growth MiB", "delivery", "worker_peak_rss_growth_mib_while_streaming",
            "< 64", lambda v: v < 64),
        *[row(f"insights: tests end -> {p} report p99 s", "insights",
              f"{p}_tests_end_to_report_p99_s", "< 10", lambda v: v < 10) for p in ("cloud", "server")],
        row("intake requests per second", "intake", "requests_per_second", ">= 1000", lambda v: v >= 1000),
        row("intake p99 ms", "intake", "latency_p99_ms", "< 50", lambda v: v < 50),
        row("fuzz: bodies sent", "fuzz", "bodies_total", ">= 10000", lambda v: v >= 10_000),
        row("Redis bytes per retained build", "hardening", "redis_bytes_per_retained_build", "", None),
        row("record bytes (MEMORY USAGE) p50", "hardening", "record_bytes_p50", "", None),
        row("podci keys that never expire", "hardening", "podci_keys_without_expiry", "0", lambda v: v == 0),
        *[row(f"intake 503, Redis {how}, max s", "hardening", f"intake_503_redis_{how}_max_s", "< 1",
              lambda v: v < 1) for how in ("hung", "down")],
        row("/healthz, Redis hung, max s", "hardening", "healthz_redis_hung_max_s", "< 1", lambda v: v < 1),
        *[row(f"fuzz: {key.replace('_', ' ')}", "fuzz", key, "0", lambda v: v == 0)
          for key in ("server_errors", "messages_enqueued", "build_records")],
        *fault_rows(results.get("faults") or {}),
    ]  # fmt: skip


# `make bench-inflight` (10,000 builds at once: too long for every `make bench`) writes this; the
# table shows its last result beside the 1,000-build part.
BIG_INFLIGHT = "inflight-10000"


def inflight_rows(big: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    if not big:
        return [("10,000 in flight: run `make bench-inflight`", None, "", None)]
    builds, rss, done = big["builds"], big["worker_rss_total_mib"], big["builds_succeeded"]
    return [
        (f"in flight at once (of {builds:,})", big["most_in_flight"], f"{builds}",
         big["most_in_flight"] >= builds),
        ("worker RSS total MiB then", rss, "< 1024", rss < 1024),
        ("Redis bytes per build in flight", big["redis_bytes_per_build_in_flight"], "", None),
        (f"of {builds:,}: succeeded", done, f"{builds}", done == builds),
        (f"of {builds:,}: objects left", big["objects_left"], "0", big["objects_left"] == 0),
    ]  # fmt: skip


# shown as they are; then the counts that must be zero
INFORMATIVE = ("builds", "kills_group", "kills_pool_child", "relaunches", "error_after_3_losses",
               "failures_injected")  # fmt: skip
FAULT_COUNTS = (*INFORMATIVE, "lost", "objects_left", "final_reports_missing", "final_reports_duplicate")


def fault_rows(faults: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """Per fault run: builds, then what must be zero (lost, leaked, missing or duplicate reports)."""
    rows: list[tuple[str, Any, str, bool | None]] = []
    for run in faults.get("runs", []):
        counts = run.get("counts", {})
        rows.append((f"faults {run['name']}: problems", len(run.get("problems", [])), "0",
                     not run.get("problems")))  # fmt: skip
        for key in FAULT_COUNTS:
            if key in counts:
                target = "" if key in INFORMATIVE else "0"
                met = None if key in INFORMATIVE else counts[key] == 0
                rows.append((f"faults {run['name']}: {key.replace('_', ' ')}", counts[key], target, met))
    return rows


def run_part(name: str, quick: bool) -> tuple[dict[str, Any] | None, float, int]:
    module, args, quick_args = PARTS[name]
    path = RESULTS / f"{name}.json"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    Console().rule(f"{name}: python -m {module} {' '.join(quick_args if quick else args)}")
    code = subprocess.call([sys.executable, "-m", module, *(quick_args if quick else args)])
    data = json.loads(path.read_text()) if path.exists() else None
    return data, time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated parts of: {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="smaller counts, to try the benches out")
    parser.add_argument("--table", action="store_true", help="run nothing: the table of the last results")
    args = parser.parse_args()
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = set(parts) - PARTS.keys()
    if unknown:
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    big = RESULTS / f"{BIG_INFLIGHT}.json"
    results[BIG_INFLIGHT] = json.loads(big.read_text()) if big.exists() else None
    for name in parts:
        if args.table:
            path = RESULTS / f"{name}.json"
            results[name] = json.loads(path.read_text()) if path.exists() else None
            continue
        data, seconds, code = run_part(name, args.quick)
        results[name] = data
        runs[name] = {"seconds": round(seconds, 1), "exit_code": code}
    machine = {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()}
    summary = {"machine": machine, "runs": runs, "results": results, "quick": args.quick}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    table = Table(title=f"podci bench — {machine['cpus']} CPUs, Python {machine['python']}")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)
    for figure, value, target, met in targets(results):
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        table.add_row(figure, shown, target, {True: "yes", False: "NO", None: ""}[met])
    Console().print(table)
    failed = {name: run for name, run in runs.items() if run["exit_code"] != 0}
    for name, run in runs.items():
        print(f"{name}: {'exit ' + str(run['exit_code']) if name in failed else 'ok'} in {run['seconds']} s")
    if failed:
        raise SystemExit(f"failed parts: {', '.join(failed)} (see their output above)")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
