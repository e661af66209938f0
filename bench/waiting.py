"""What a build costs as its tests run longer: worker and Redis CPU, and Celery tasks, per build, for test
runs of different lengths (default 2, 60 and 600 s).

Each length runs in a stack of its own: builds started by webhooks, one `podci worker` (2 pool
processes), the Kubernetes backend against the fake API server (pods start in 1 s). A waiting build is
parked until its pod wakes it, so the figures should not grow with the test's length; the spread
(largest over smallest) is printed with them. What the stack costs idle, per second, is measured
first and taken off (see `IDLE_S`); the raw figures are printed too.

Usage: python -m bench.waiting [--builds N] [--durations 2,60,600]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.overhead import measure_podci
from bench.stack import stack

# The stack's cost with nothing to build (Celery's heartbeats and event loop, Redis' own timers, the
# reconciler's passes) accrues per second, not per build: over ten minutes it is most of what ten
# builds cost. It is measured for this long before the builds and taken off each run, so the figures
# compare what a build costs with its tests running 2 s or 600 s; the raw ones are kept beside them.
IDLE_S = 30.0


def _net(measured: dict[str, Any], results: dict[str, Any], label: str) -> tuple[float, float]:
    """Record the run's figures, raw and net of the idle cost; return (net CPU, net tasks) per build."""
    builds, window = measured["builds"], measured["window_s"]
    idle_worker = measured["idle_worker_cpu_s_per_s"] * window / builds
    idle_redis = measured["idle_redis_cpu_s_per_s"] * window / builds
    idle_tasks = measured["idle_tasks_per_s"] * window / builds
    worker = measured["worker_cpu_s_per_build"] - idle_worker
    redis = measured["redis_cpu_s_per_build"] - idle_redis
    tasks = measured["tasks_per_build"] - idle_tasks
    results[f"cpu_s_per_build_{label}"] = round(worker + redis, 4)
    results[f"worker_cpu_s_per_build_{label}"] = round(worker, 4)
    results[f"redis_cpu_s_per_build_{label}"] = round(redis, 4)
    results[f"tasks_per_build_{label}"] = round(tasks, 2)
    results[f"raw_cpu_s_per_build_{label}"] = round(
        measured["worker_cpu_s_per_build"] + measured["redis_cpu_s_per_build"], 4
    )
    results[f"raw_tasks_per_build_{label}"] = round(measured["tasks_per_build"], 2)
    results[f"idle_cpu_s_per_build_{label}"] = round(idle_worker + idle_redis, 4)
    results[f"tasks_by_name_{label}"] = measured["tasks_per_build_by_name"]
    return worker + redis, tasks


def run(builds: int, durations: list[float]) -> dict[str, Any]:
    results: dict[str, Any] = {"builds": builds, "durations_s": durations}
    costs, tasks = [], []
    for duration in durations:
        with tempfile.TemporaryDirectory(prefix="podci-waiting-") as tmp, stack(Path(tmp)) as built:
            # The warm-up's two builds test for 2 s whatever the length measured: it only brings the
            # worker up, and ten minutes of it would be ten minutes of nothing measured.
            built.cluster.configure(start_delay=1.0, test_duration=2.0)
            config = (built.repo.path / ".podci.yml").read_text()
            budget = f"tests: {int(duration) + 600}"  # the example allows 120 s
            built.repo.commit({".podci.yml": config.replace("tests: 120", budget)})
            measured = measure_podci(
                built,
                builds,
                timeout=duration + 600,
                warmed=lambda d=duration: built.cluster.configure(test_duration=d),
                idle=IDLE_S,
            )
        label = f"{duration:g}s"
        cpu, count = _net(measured, results, label)
        costs.append(cpu)
        tasks.append(count)
    results["cpu_spread"] = round(max(costs) / min(costs), 3)
    results["tasks_spread"] = round(max(tasks) / min(tasks), 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=10)
    parser.add_argument("--durations", default="2,60,600", help="test run lengths, seconds, comma-separated")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "waiting.json")
    args = parser.parse_args()
    results = run(args.builds, [float(d) for d in args.durations.split(",")])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
