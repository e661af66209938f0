"""How long a failed build's Code Insights report takes to reach Bitbucket: from the end of its tests
(the record's run_tests step finished) to the report and every annotation being on the stand-in, for
Bitbucket Cloud and Server/DC. Target: under 10 s.

An embedded Redis, one `podci worker` (local backend, concurrency 2), a git server, and the two
Bitbucket stand-ins of `testkit.bitbucket`, which check every request. Each build fails 3 of 5 tests
with a JUnit report, so its report carries 3 annotations.

Usage: python -m bench.insights [--builds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

from bench.stack import percentile, publish
from dispatch.app import make_app
from dispatch.submit import submit
from podci.embedded import child_worker, embedded_redis
from schemas.record import BuildRecord, Step
from schemas.request import BuildRequest, Provider, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.bitbucket import StandIn
from testkit.gitrepo import GitServer, Repo

TOKEN = "bench-insights-token"
REPORT = """<testsuite tests="5">{cases}<testcase classname="t" name="ok1"/>
<testcase classname="t" name="ok2"/></testsuite>"""
CASE = """<testcase classname="tests.test_app.App" name="test_{n}"><failure message="{n} broke">Traceback:
  File "/workspace/tests/test_app.py", line {line}, in test_{n}
AssertionError</failure></testcase>"""
FILES = {
    ".podci.yml": "test:\n  container: t\n  command: 'cp r.xml report.xml; exit 1'\n  junit: report.xml\n"
    "setup:\n  ready: true\n",
    ".podci/pod.yaml": "containers:\n  - name: t\n    image: none\n    command: [sleep, infinity]\n",
    "r.xml": REPORT.format(cases="".join(CASE.format(n=n, line=10 + n) for n in range(3))),
}
STATUS_PATHS = {
    "cloud": "/2.0/repositories/{repo}/commit/{sha}/statuses/build",
    "server": "/rest/api/latest/projects/{project}/repos/{slug}/commits/{sha}/builds",
}
PRODUCTS: dict[Provider, tuple[str, str]] = {"bitbucket-cloud": ("team/web", "cloud"),
                                             "bitbucket-server": ("TEAM/web", "server")}  # fmt: skip


def _landed(stand_in: StandIn, sha: str, annotations: int) -> float | None:
    """When the report and all its annotations were on the stand-in (the last of those calls)."""
    calls = [c for c in stand_in.insights.seen if f"/{sha}/" in c.path and c.problems == []]
    puts = [c for c in calls if c.method == "PUT"]
    posts = [c for c in calls if c.method == "POST"]
    kept = [notes for (commit, _), notes in stand_in.insights.annotations.items() if commit == sha]
    if not puts or not kept or len(kept[0]) < annotations:
        return None
    return max(c.at for c in [*puts, *posts])


def _tests_ended(record: BuildRecord) -> float:
    finished = record.step_record(Step.run_tests).finished
    assert finished is not None, record.reason
    return finished.timestamp()


def run(builds: int, work: Path) -> dict[str, Any]:
    cloud, server = (
        StandIn("cloud", "/unused", f"Bearer {TOKEN}"),
        StandIn("server", "/unused", f"Bearer {TOKEN}"),
    )
    stand_ins = {"bitbucket-cloud": cloud, "bitbucket-server": server}
    results: dict[str, Any] = {"builds": builds}
    with GitServer() as git, embedded_redis(work / "redis", persist=False) as url:
        env = {**os.environ, "PODCI_REDIS_URL": url, "PODCI_STATE_DIR": str(work / "state"),
               "PODCI_REPO_CONCURRENCY": "0", "PODCI_CLONE_HOSTS": git.host, "PODCI_PUBLIC_URL": "http://ci.test",
               "PODCI_BITBUCKET_CLOUD_API_URL": cloud.url, "PODCI_BITBUCKET_CLOUD_TOKEN": TOKEN,
               "PODCI_BITBUCKET_SERVER_URL": server.url, "PODCI_BITBUCKET_SERVER_TOKEN": TOKEN}  # fmt: skip
        settings = Settings(redis_url=url, state_dir=work / "state")
        store, app = BuildStore(Redis.from_url(url), settings.retention_seconds), make_app(settings)
        with child_worker(env, work / "worker.log", concurrency=2):
            for provider, (repo_name, product) in PRODUCTS.items():
                repo = Repo(work / product, FILES, from_example=False)
                clone = git.add(repo, product)
                waits = []
                for n in range(builds):
                    sha = repo.commit({"n.txt": str(n)})
                    source = Revision(clone_url=clone, ref="main", commit=sha)
                    stand_ins[provider].path = STATUS_PATHS[product].format(
                        repo=repo_name, project=repo_name.split("/")[0], slug=repo_name.split("/")[1], sha=sha
                    )
                    request = BuildRequest(job=f"web-{n}", repo=repo_name, source=source, provider=provider,
                                           event="bench")  # fmt: skip
                    build_id = submit(app, store, settings, request).id
                    deadline = time.time() + 120
                    landed = None
                    while landed is None and time.time() < deadline:
                        landed = _landed(stand_ins[provider], sha, 3)
                        time.sleep(0.02)
                    record = store.get(build_id)
                    assert landed is not None and record is not None, f"no report for {build_id}"
                    waits.append(landed - _tests_ended(record))
                results[f"{product}_tests_end_to_report_p50_s"] = statistics.median(waits)
                results[f"{product}_tests_end_to_report_p99_s"] = percentile(waits, 99)
                results[f"{product}_tests_end_to_report_max_s"] = max(waits)
                results[f"{product}_refused_status_posts"] = sum(
                    s.problems != [] for s in stand_ins[provider].seen
                )
                results[f"{product}_refused_calls"] = sum(
                    c.problems != [] for c in stand_ins[provider].insights.seen
                )
    cloud.close()
    server.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podci-bench-insights-"))
    try:
        results = run(args.builds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("Code Insights: tests ended -> report and annotations on Bitbucket", results, "insights")


if __name__ == "__main__":
    main()
