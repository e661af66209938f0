"""Whole builds through the real queue: embedded Redis, a real Celery worker, real git, real processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from celery import Celery
from redis import Redis

from dispatch.app import QUEUE_NEW, make_app
from dispatch.reconcile import reconcile
from dispatch.send import send
from dispatch.submit import submit
from podci.example import example_repo
from schemas.record import BuildState, StepState
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import DUE, BuildStore
from testkit.gitrepo import Repo
from tests.helpers import Worker, leftovers, wait_for, wait_until
from tests.test_webhooks import other_db

pytestmark = pytest.mark.usefixtures("worker")


def request(repo: Path, source: str, target: str | None = "main", job: str = "t") -> BuildRequest:
    url = str(repo)
    return BuildRequest(
        job=job,
        repo=repo.name,
        source=Revision(clone_url=url, ref=source),
        target=Revision(clone_url=url, ref=target) if target else None,
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_repo(tmp_path_factory.mktemp("example") / "repo")


def build(app: Celery, store: BuildStore, settings: Settings, req: BuildRequest, timeout: float = 90):  # type: ignore[no-untyped-def]
    record = submit(app, store, settings, req)
    return wait_for(store, record.id, timeout)


def test_passing_build_succeeds_and_leaves_nothing(app, store, settings, example) -> None:
    record = build(app, store, settings, request(example, "feature"))
    assert record.state is BuildState.succeeded, record.reason
    assert [s.state for s in record.steps] == [StepState.succeeded] * len(record.steps)
    assert record.tests is not None and record.tests.exit_code == 0
    assert "Ran 3 tests" in record.tests.log_tail
    assert record.attempts == 1
    assert record.started is not None and record.finished is not None
    assert record.finished >= record.started >= record.created
    assert leftovers(settings.state_dir, record) == []
    assert Path(record.tests.log_path).is_file()  # the log is kept after teardown


def test_failing_tests_fail_the_build_with_exit_code_and_tail(app, store, settings, example) -> None:
    record = build(app, store, settings, request(example, "failing"))
    assert record.state is BuildState.failed
    assert record.reason == "tests failed with exit code 1"
    assert record.tests is not None and record.tests.exit_code == 1
    assert "AssertionError: 1 != 2" in record.tests.log_tail
    states = {s.name: s.state for s in record.steps}
    assert states["run_tests"] is StepState.failed
    assert states["teardown"] is StepState.succeeded
    assert leftovers(settings.state_dir, record) == []


def test_merge_conflict_fails_naming_the_files(app, store, settings, tmp_path) -> None:
    repo = Repo(tmp_path / "conflict", {"notes.txt": "one\n"})
    repo.branch("topic", {"notes.txt": "topic's line\n"})
    repo.commit({"notes.txt": "main's line\n"})
    record = build(app, store, settings, request(repo.path, "topic"))
    assert record.state is BuildState.failed
    assert "merge conflict" in record.reason and "notes.txt" in record.reason
    states = {s.name: s.state for s in record.steps}
    assert states["checkout"] is StepState.failed
    assert states["create_pod"] is StepState.skipped
    assert states["teardown"] is StepState.succeeded
    assert leftovers(settings.state_dir, record) == []


def test_setup_that_never_completes_errors_after_its_timeout(app, store, settings, tmp_path) -> None:
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    config = config.replace("setup:\n  ready: true", "setup:\n  file: .never-there").replace(
        "setup: 60", "setup: 2"
    )
    repo = Repo(tmp_path / "stuck", {".podci.yml": config})
    record = build(app, store, settings, request(repo.path, "main", target=None))
    assert record.state is BuildState.error
    assert record.reason.startswith("setup did not complete within 2 s (waiting for .never-there; ")
    assert "`counter` last said: counter listening on 0.0.0.0:" in record.reason
    # parked after its first look, it looked again on its own only when its budget had ended
    assert record.step_record("wait_setup").checks == 1
    assert leftovers(settings.state_dir, record) == []


def test_malformed_config_errors_naming_the_field_and_starts_nothing(app, store, settings, tmp_path) -> None:
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    repo = Repo(tmp_path / "bad", {".podci.yml": config.replace("tests: 120", "tests: soon")})
    record = build(app, store, settings, request(repo.path, "main", target=None))
    assert record.state is BuildState.error
    assert "`timeouts.tests`" in record.reason and ".podci.yml" in record.reason
    states = {s.name: s.state for s in record.steps}
    assert all(states[s] is StepState.skipped for s in ("create_service", "create_volume", "create_pod"))
    assert not (Path(record.log_dir) / "containers").exists()  # no container was ever started
    assert leftovers(settings.state_dir, record) == []


def test_missing_branch_is_an_error_with_a_sentence(app, store, settings, example) -> None:
    record = build(app, store, settings, request(example, "no-such-branch"))
    assert record.state is BuildState.error
    assert record.reason == f"the source branch `no-such-branch` does not exist in {example}"


def test_two_builds_on_the_same_container_port_do_not_collide(app, store, settings, example) -> None:
    first = submit(app, store, settings, request(example, "feature"))
    second = submit(app, store, settings, request(example, "feature"))
    done = [wait_for(store, r.id) for r in (first, second)]
    assert [r.state for r in done] == [BuildState.succeeded, BuildState.succeeded], [r.reason for r in done]
    ports = [re.search(r"counter=127\.0\.0\.1:(\d+)", r.step_record("create_service").detail) for r in done]
    assert all(ports) and ports[0].group(1) != ports[1].group(1)  # type: ignore[union-attr]
    # they really ran side by side: each one's tests started before the other's pod was torn down
    a, b = (r.step_record("run_tests").started for r in done)
    a_end, b_end = (r.step_record("teardown").started for r in done)
    assert a is not None and b is not None and a_end is not None and b_end is not None
    assert a < b_end and b < a_end
    for r in done:
        assert leftovers(settings.state_dir, r) == []


def test_build_numbers_never_repeat(app, store, settings, example) -> None:
    ids = [submit(app, store, settings, request(example, "feature", job="numbers")) for _ in range(3)]
    numbers = [r.number for r in ids]
    assert len(set(numbers)) == 3 and numbers == sorted(numbers)
    for r in ids:
        wait_for(store, r.id)


def test_a_lost_first_message_is_sent_again_by_the_reconciler(app, store, settings, example) -> None:
    # The record is written but its first message never sent, as if the submitter died in between.
    record = store.create(request(example, "feature"), log_root=str(settings.logs_dir), due=0)
    done = wait_for(store, record.id)
    assert done.state is BuildState.succeeded, done.reason


def test_a_build_waiting_behind_a_backlog_is_not_sent_again(settings: Settings, example: Path) -> None:
    # A database no worker reads: the message stays queued, as behind a long backlog.
    queued = other_db(settings, 11)
    app, store = make_app(queued), BuildStore(Redis.from_url(queued.require_redis_url()))
    store.redis.flushdb()
    try:
        record = store.create(request(example, "feature"), log_root=str(settings.logs_dir), due=0)
        send(app, record.step, record.id, record.seq, store=store)
        assert [reconcile(app, store, grace=60) for _ in range(3)] == [0, 0, 0]
        assert store.redis.llen(QUEUE_NEW) == 1
        store.received(record.id)  # a worker took it and died before moving the build on
        store.redis.zadd(DUE, {record.id: 0})
        assert reconcile(app, store, grace=60) == 1
        assert store.redis.llen(QUEUE_NEW) == 2
    finally:
        store.redis.flushdb()


def test_a_message_taken_by_a_worker_that_died_before_receiving_it_is_sent_again(
    settings: Settings, example: Path
) -> None:
    # A worker took the message off the queue and was SIGKILLed before it could clear the build's
    # queued-mark: the mark must not hold the reconciler back (for its whole TTL) once the queue shows
    # the message has left it, while a build whose message still waits is left alone.
    queued = other_db(settings, 13)
    app, store = make_app(queued), BuildStore(Redis.from_url(queued.require_redis_url()))
    store.redis.flushdb()
    try:
        taken, waiting, last = (
            store.create(request(example, branch, job=f"taken-{n}"), log_root=str(settings.logs_dir), due=0)
            for n, branch in enumerate(("feature", "feature", "feature"))
        )
        for record in (taken, waiting):
            send(app, record.step, record.id, record.seq, store=store)
        store.redis.rpop(QUEUE_NEW)  # the oldest message, `taken`'s, into a worker that dies with it
        assert reconcile(app, store, grace=60) == 2  # `taken`, and `last` (never sent at all)
        store.redis.rpop(QUEUE_NEW)  # `waiting`'s goes the same way: now the queue holds `taken`'s again
        assert store.redis.llen(QUEUE_NEW) == 2
        store.redis.zadd(DUE, {r.id: 0 for r in (taken, waiting, last)})
        assert reconcile(app, store, grace=60) == 1  # `waiting`: the others' resent messages still wait
    finally:
        store.redis.flushdb()


def test_redis_gone_mid_step_leaves_the_build_to_the_reconciler(
    settings: Settings, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis restarting while a step talks to it: nothing can be recorded, and the build did nothing
    # wrong. The step must not turn it into `error` (Redis may be back by the time that is written).
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.process import ProcessResources
    from workers.steps import STEP_FUNCTIONS
    from workers.tasks import run_step

    isolated = other_db(settings, 12)
    app, proc = make_app(isolated), ProcessResources(isolated)
    proc.store.redis.flushdb()

    def redis_gone(*_: object) -> None:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setitem(STEP_FUNCTIONS, "checkout", redis_gone)
    try:
        record = proc.store.create(request(example, "feature"), log_root=str(settings.logs_dir), due=0)
        with pytest.raises(RedisConnectionError):
            run_step(app, proc, "checkout", record.id, record.seq, task=None)
        after = proc.store.get(record.id)
        assert after is not None and after.state is BuildState.running and after.reason == ""
        assert (after.step, after.seq) == ("checkout", record.seq)  # the reconciler's resend is taken
        assert record.id in proc.store.overdue(now=float("inf"))
    finally:
        proc.store.redis.flushdb()


GATED_CONFIG = """\
test:
  container: app
  command:
    - python3
    - -c
    - "import os, time\\nwhile not os.path.exists(os.environ['TESTS_GATE']): time.sleep(0.1)"
setup:
  file: .setup-done
"""


def gated_pod(setup_gate: Path, tests_gate: Path) -> str:
    """Setup completes, and the tests end, only when the test opens their gates."""
    script = (
        f"import os, pathlib, signal, time\nwhile not os.path.exists({str(setup_gate)!r}): time.sleep(0.1)\n"
        "pathlib.Path('.setup-done').touch(); signal.pause()"
    )
    container = {"name": "app", "image": "python:3.12-slim", "command": ["python3", "-c", script],
                 "env": [{"name": "TESTS_GATE", "value": str(tests_gate)}]}  # fmt: skip
    return yaml.safe_dump({"containers": [container]})


@pytest.mark.parametrize("kill_at", ["wait_setup", "run_tests"])
def test_worker_killed_mid_build_then_restarted_finishes(
    app, store, settings, tmp_path, worker: Worker, kill_at: str
) -> None:
    setup_gate, tests_gate = tmp_path / "setup-gate", tmp_path / "tests-gate"
    files = {".podci.yml": GATED_CONFIG, ".podci/pod.yaml": gated_pod(setup_gate, tests_gate)}
    repo = Repo(tmp_path / f"kill-{kill_at}", files, from_example=False)
    record = submit(app, store, settings, request(repo.path, "main", target=None))
    if kill_at == "run_tests":
        setup_gate.touch()
    wait_for(store, record.id, until=kill_at)
    worker.kill()
    worker.start()
    setup_gate.touch()
    tests_gate.touch()
    done = wait_for(store, record.id)
    assert done.state is BuildState.succeeded, done.reason
    assert leftovers(settings.state_dir, done) == []


def exec_probe_pod(gate: Path) -> str:
    """A container that becomes ready (its exec probe passes) only once the test opens `gate`."""
    script = (
        f"import os, pathlib, signal, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.1)\n"
        "pathlib.Path('.warm').touch(); signal.pause()"
    )
    container = {"name": "tests", "image": "none", "command": ["python3", "-c", script],
                 "readinessProbe": {"exec": {"command": ["test", "-f", ".warm"]}}}  # fmt: skip
    return yaml.safe_dump({"containers": [container]})


def test_setup_waits_for_an_exec_readiness_probe(app, store, settings, tmp_path) -> None:
    config = "test:\n  container: tests\n  command: [test, -f, .warm]\nsetup:\n  ready: true\n"
    gate = tmp_path / "warm-gate"
    files = {".podci.yml": config, ".podci/pod.yaml": exec_probe_pod(gate)}
    repo = Repo(tmp_path / "exec", files, from_example=False)
    started = submit(app, store, settings, request(repo.path, "main", target=None))
    wait_until(lambda: _looked_at_setup(store, started.id))  # the probe failed: not ready yet
    gate.touch()
    record = wait_for(store, started.id)
    assert record.state is BuildState.succeeded, record.reason
    setup = record.step_record("wait_setup")
    assert setup.detail == "all containers ready"
    assert setup.checks >= 1
    assert leftovers(settings.state_dir, record) == []


def _looked_at_setup(store: BuildStore, build_id: str) -> bool:
    record = store.get(build_id)
    return record is not None and record.step_record("wait_setup").checks >= 1


JUNIT_CONFIG = """\
test:
  container: tests
  command: "cp fixture-report.xml report.xml; exit 1"
  junit: report.xml
setup:
  ready: true
"""
JUNIT_POD = "containers:\n  - name: tests\n    image: none\n    command: [sleep, infinity]\n"
JUNIT_REPORT = """<testsuite tests="3"><testcase classname="app.Checkout" name="pays"/>
<testcase classname="app.Checkout" name="refunds"><failure message="expected 10, got 9"/></testcase>
<testcase classname="app.Checkout" name="later"><skipped/></testcase></testsuite>"""


def test_junit_report_lands_in_the_record(app, store, settings, tmp_path) -> None:
    files = {".podci.yml": JUNIT_CONFIG, ".podci/pod.yaml": JUNIT_POD, "fixture-report.xml": JUNIT_REPORT}
    repo = Repo(tmp_path / "junit", files, from_example=False)
    record = build(app, store, settings, request(repo.path, "main", target=None))
    assert record.state is BuildState.failed and record.tests is not None
    assert (record.tests.total, record.tests.failed, record.tests.skipped) == (3, 1, 1)
    assert [(f.name, f.message) for f in record.tests.failures] == [
        ("app.Checkout.refunds", "expected 10, got 9")
    ]
    assert set(record.logs) == {"tests", "containers/tests"}
    assert all(Path(path).is_file() for path in record.logs.values())


WORKDIR_CONFIG = """\
test:
  container: app
  command: "test -f sub/started"
setup:
  file: sub/started
"""


def workdir_pod(working_dir: str) -> str:
    return f"""\
containers:
  - name: app
    image: alpine:3.20
    workingDir: {working_dir}
    command: [sh, -c, "touch started; exec sleep 600"]
"""


def test_a_working_dir_in_the_workspace_is_where_the_container_runs(app, store, settings, tmp_path) -> None:
    files = {".podci.yml": WORKDIR_CONFIG, ".podci/pod.yaml": workdir_pod("/workspace/sub"), "sub/.keep": ""}
    repo = Repo(tmp_path / "workdir", files, from_example=False)
    record = build(app, store, settings, request(repo.path, "main", target=None))
    assert record.state is BuildState.succeeded, record.reason
    assert leftovers(settings.state_dir, record) == []


def test_a_working_dir_outside_the_workspace_is_refused_on_the_local_backend(
    app, store, settings, tmp_path
) -> None:
    files = {".podci.yml": WORKDIR_CONFIG, ".podci/pod.yaml": workdir_pod("/app"), "sub/.keep": ""}
    repo = Repo(tmp_path / "elsewhere", files, from_example=False)
    record = build(app, store, settings, request(repo.path, "main", target=None))
    assert record.state is BuildState.error
    assert "container `app` names `workingDir: /app`, outside the workspace (/workspace)" in record.reason
    assert leftovers(settings.state_dir, record) == []
