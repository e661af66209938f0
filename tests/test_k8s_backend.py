"""The Kubernetes backend end to end: a real worker and Redis, the official client, and the fake API
server of `tests/fake_k8s` (real HTTP, watch, exec over websockets, logs, strict schema checks)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from redis import Redis

from dispatch.app import make_app
from dispatch.submit import submit
from schemas.record import BuildRecord, BuildState, StepState
from schemas.request import BuildRequest, Revision
from schemas.settings import Settings
from store.builds import BuildStore
from testkit.fake_k8s import FakeCluster, core_v1, serve, write_kubeconfig
from testkit.gitrepo import Repo
from tests.conftest import FAST
from tests.helpers import TaskMessages, Worker, wait_for, wait_until
from tests.test_k8s_objects import context
from tests.test_webhooks import other_db
from workers.backends.kubernetes.names import BUILD_LABEL, CHECKOUT_CONTAINER, MANAGED_BY

NAMESPACE = "podci-builds"
KINDS = ("pods", "services", "persistentvolumeclaims")
_numbers = itertools.count(1)


@dataclass
class Kube:
    cluster: FakeCluster
    url: str
    app: Celery
    store: BuildStore
    settings: Settings
    worker: Worker
    repo: Repo
    env: dict[str, str]


@pytest.fixture(scope="module")
def kube(
    settings: Settings, worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    with running(FakeCluster(), settings, worker_env, tmp_path_factory.mktemp("k8s"), db=9) as started:
        yield started


@contextmanager
def running(
    cluster: FakeCluster, settings: Settings, worker_env: dict[str, str], tmp: Path, db: int, **extra: str
) -> Iterator[Kube]:
    """The fake serving `cluster` and a real worker on Redis database `db` (its own, as each module
    using this has its own cluster), with `extra` added to the worker's environment."""
    with serve(cluster) as url:
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", url, NAMESPACE)
        configured = other_db(settings, db, backend="kubernetes", state_dir=tmp / "state")
        env = {
            **worker_env, **FAST, "PODCI_REDIS_URL": configured.require_redis_url(),
            "PODCI_BACKEND": "kubernetes", "PODCI_STATE_DIR": str(tmp / "state"),
            "KUBECONFIG": str(kubeconfig), "PODCI_KUBE_NAMESPACE": NAMESPACE,
            # long enough that a busy machine does not make the reconciler re-send steps (and so
            # add requests the request-count test would see), short enough for the kill test
            "PODCI_STALL_GRACE": "10",
            # a safety look every 3 s: the builds here wait longer than that, so each safety look is
            # exercised (and must cost no message while nothing changed)
            "PODCI_SAFETY_LOOK": "3",
            **extra,
        }  # fmt: skip
        redis = Redis.from_url(configured.require_redis_url())
        redis.flushdb()
        worker = Worker(env, tmp / "worker.log")
        worker.start()
        try:
            yield Kube(cluster, url, make_app(configured), BuildStore(redis), configured, worker,
                       Repo(tmp / "repo"), env)  # fmt: skip
        finally:
            worker.stop()
            redis.flushdb()


def new_build(kube: Kube, job: str, ref: str = "main", **config: Any) -> str:
    """The name the build will have (`job-N`), so the fake can be set up for it before it starts."""
    number = next(_numbers)
    name = f"{job}-{number}"
    if config:
        kube.cluster.configure(name, **config)
    return name


def start(
    kube: Kube, name: str, ref: str = "main", repo: Repo | None = None, fork: bool = False
) -> BuildRecord:
    job, number = name.rsplit("-", 1)
    url = str((repo or kube.repo).path)
    request = BuildRequest(job=job, number=int(number), repo="team/webapp", fork=fork,
                           source=Revision(clone_url=url, ref=ref))  # fmt: skip
    return submit(kube.app, kube.store, kube.settings, request)


def leftovers(kube: Kube, name: str, deadline: float = 30) -> list[str]:
    """What is left of the build once deletions it had accepted (a claim still terminating) are done."""
    until = time.monotonic() + deadline
    while True:
        left = [f"{kind}/{o['metadata']['name']}" for kind in KINDS
                for o in kube.cluster.objects(kind, NAMESPACE, f"{BUILD_LABEL}={name}")]  # fmt: skip
        if not left or time.monotonic() > until:
            return left
        time.sleep(0.1)


def test_passing_build_leaves_no_object(kube: Kube) -> None:
    name = new_build(kube, "k8s-pass")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.succeeded, record.reason
    assert record.attempts == 1 and [p.pod for p in record.pods] == [name]
    assert record.tests is not None and record.tests.exit_code == 0
    assert leftovers(kube, name) == []
    assert kube.cluster.self_check() == []


def test_failing_build_is_failed_with_its_log(kube: Kube) -> None:
    name = new_build(kube, "k8s-fail", test_exit_code=3, test_output="FAIL: test_login\n")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.failed
    assert record.reason == "tests failed with exit code 3"
    assert record.tests is not None and "FAIL: test_login" in record.tests.log_tail
    assert "PODCI-EXIT" not in record.tests.log_tail
    assert leftovers(kube, name) == []


def test_a_pod_evicted_during_the_tests_is_relaunched(kube: Kube) -> None:
    name = new_build(kube, "k8s-evict")
    kube.cluster.lose_on_tests(name, times=1, how="evict")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.succeeded, record.reason
    assert record.attempts == 2
    assert [p.pod for p in record.pods] == [name, f"{name}-a2"]
    assert "evicted" in record.pods[0].ended
    assert leftovers(kube, name) == []


def test_three_losses_end_in_error(kube: Kube) -> None:
    name = new_build(kube, "k8s-lost")
    kube.cluster.lose_on_tests(name, times=3, how="delete")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.error
    assert record.reason.startswith("the pod was lost 3 time(s)")
    assert record.attempts == 3
    assert leftovers(kube, name) == []


def test_unschedulable_past_its_budget_names_the_scheduler(kube: Kube, tmp_path: Path) -> None:
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    repo = Repo(
        tmp_path / "tight", {".podci.yml": config.replace("timeouts:\n", "timeouts:\n  unscheduled: 2\n")}
    )
    name = new_build(kube, "k8s-full")
    kube.cluster.unschedulable(name)
    record = wait_for(kube.store, start(kube, name, repo=repo).id, timeout=60)
    assert record.state is BuildState.error
    assert "0/3 nodes are available: 3 Insufficient memory." in record.reason
    assert "FailedScheduling" in record.reason
    assert leftovers(kube, name) == []


def test_a_forbidden_template_is_refused_before_anything_is_created(kube: Kube, tmp_path: Path) -> None:
    pod = yaml.safe_load((Path(__file__).parent.parent / "examples/webapp/.podci/pod.yaml").read_text())
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    pod["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]
    repo = Repo(tmp_path / "evil", {".podci/pod.yaml": yaml.safe_dump(pod)})
    name = new_build(kube, "k8s-evil")
    record = wait_for(kube.store, start(kube, name, repo=repo).id, timeout=60)
    assert record.state is BuildState.error
    assert "privileged" in record.reason and "hostPath" in record.reason
    assert kube.cluster.count("POST", build=name) == 0


def test_api_requests_per_build_do_not_grow_with_test_time(kube: Kube) -> None:
    short, long = new_build(kube, "k8s-short", test_duration=2), new_build(kube, "k8s-long", test_duration=60)
    records = [start(kube, short), start(kube, long)]
    done = [wait_for(kube.store, r.id, timeout=120) for r in records]
    assert [r.state for r in done] == [BuildState.succeeded] * 2
    counts = [kube.cluster.count(build=n) for n in (short, long)]
    seen = [Counter(f"{r.method} {r.resource}/{r.subresource or ''}" for r in kube.cluster.requests_for(n))
            for n in (short, long)]  # fmt: skip
    detail = (seen[0] - seen[1], seen[1] - seen[0])
    print(f"API requests per build: {counts}")
    assert counts[0] == counts[1], detail


def test_api_errors_are_retried(kube: Kube) -> None:
    name = new_build(kube, "k8s-flaky")
    kube.cluster.fail_next(2, status=500, method="POST")  # PODCI_TRANSIENT_RETRIES is 2 here
    record = wait_for(kube.store, start(kube, name).id, timeout=90)
    assert record.state is BuildState.succeeded, record.reason
    assert leftovers(kube, name) == []


def test_worker_killed_mid_build_leaves_no_duplicates(kube: Kube) -> None:
    name = new_build(kube, "k8s-kill", test_duration=3)
    record = start(kube, name)
    wait_for(kube.store, record.id, until="run_tests", timeout=60)
    kube.worker.kill()
    kube.worker.start()
    done = wait_for(kube.store, record.id, timeout=90)
    assert done.state is BuildState.succeeded, done.reason
    created = [o for o in kube.cluster.objects("pods", NAMESPACE) if o["metadata"]["name"] == name]
    assert created == []
    assert kube.cluster.count("POST", build=name, resource="pods") >= 1
    assert leftovers(kube, name) == []


def test_a_pod_deleted_while_no_worker_watched_is_relaunched(kube: Kube) -> None:
    # The pod goes while the only worker, and so the only watch, is down: no DELETED event ever reaches
    # the cache, and the restarted watch lists only the pods that exist. The build must see the loss.
    name = new_build(kube, "k8s-unwatched", test_duration=5)
    record = start(kube, name)
    wait_for(kube.store, record.id, until="run_tests", timeout=60)
    kube.worker.kill()
    kube.cluster.delete_pod(name, NAMESPACE)
    wait_until(lambda: kube.cluster.get("pods", name, NAMESPACE) is None)
    kube.worker.start()
    done = wait_for(kube.store, record.id, timeout=90)
    assert done.state is BuildState.succeeded, done.reason
    assert [p.pod for p in done.pods] == [name, f"{name}-a2"]
    assert "deleted" in done.pods[0].ended
    assert leftovers(kube, name) == []


def test_an_exec_refused_with_429_is_retried(kube: Kube) -> None:
    # The exec's websocket handshake answered 429: a busy API server, not a refusal.
    name = new_build(kube, "k8s-exec-429")
    kube.cluster.fail_next(1, status=429, retry_after=1, path_contains="/exec")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.succeeded, record.reason
    assert kube.cluster.count(build=name, subresource="exec") >= 2


def test_a_step_waiting_for_its_retry_is_not_sent_again_by_the_reconciler(kube: Kube) -> None:
    # Retry-After longer than PODCI_STALL_GRACE (10 s here): the build is not overdue while its step
    # waits to retry. A second copy from the reconciler would be a second retry chain, more requests
    # to a struggling API server and more tries to lose.
    name = new_build(kube, "k8s-retry-after")
    kube.cluster.fail_next(1, status=429, retry_after=12, method="POST", path_contains="/services")
    record = wait_for(kube.store, start(kube, name).id, timeout=90)
    assert record.state is BuildState.succeeded, record.reason
    assert f"build={name} step=create_service overdue" not in kube.worker.log.read_text()


def test_a_failed_agent_log_read_is_tried_again_at_once(kube: Kube, tmp_path: Path) -> None:
    # A claim keeps two looks from reading the agent's log twice; the look that failed must release it,
    # or the next looks wait for the claim to expire while the tests' budget runs out.
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    repo = Repo(tmp_path / "budget", {".podci.yml": config.replace("tests: 120", "tests: 20")})
    name = new_build(kube, "k8s-log-500")
    kube.cluster.fail_next(1, status=500, method="GET", path_contains="/log")
    record = wait_for(kube.store, start(kube, name, repo=repo).id, timeout=60)
    assert record.state is BuildState.succeeded, record.reason


def test_teardown_outlasts_api_errors(kube: Kube) -> None:
    # More failed deletes than PODCI_TRANSIENT_RETRIES (2 here) allows: teardown keeps going, since what
    # it gave up on would stay in the cluster until the garbage collector's next pass.
    name = new_build(kube, "k8s-teardown-500")
    kube.cluster.fail_next(4, status=500, method="DELETE")
    record = wait_for(kube.store, start(kube, name).id, timeout=90)
    assert record.state is BuildState.succeeded, record.reason
    assert record.step_record("teardown").state is StepState.succeeded, record.step_record("teardown")
    assert "gave up" not in record.reason
    assert leftovers(kube, name) == []


class _Died(BaseException):
    """A worker killed mid-call: no `except Exception` clean-up runs (SIGKILL runs none at all)."""


def test_a_worker_dying_mid_exec_does_not_keep_the_tests_from_starting(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.backends.kubernetes import backend as backend_module
    from workers.backends.kubernetes.api import KubeApi
    from workers.backends.kubernetes.watch import PodCache

    monkeypatch.setattr(backend_module, "_CLAIM_SECONDS", 1)
    settings = kube.settings.model_copy(update={"kube_namespace": NAMESPACE})
    backend = backend_module.KubernetesBackend(
        settings, KubeApi(settings, _client(kube.url)), PodCache(kube.store.redis)
    )
    ctx = context(name=new_build(kube, "k8s-died"))
    execs: list[list[str]] = []

    def dies(pod: str, container: str, argv: list[str]) -> tuple[int, str]:
        execs.append(argv)
        raise _Died()

    def works(pod: str, container: str, argv: list[str]) -> tuple[int, str]:
        execs.append(argv)
        return 0, ""

    monkeypatch.setattr(backend.api, "exec", dies)
    with pytest.raises(_Died):
        backend.start_tests(ctx)
    monkeypatch.setattr(backend.api, "exec", works)
    backend.start_tests(ctx)  # another look while the first might still be execing: no second exec
    assert len(execs) == 1

    def started_again() -> bool:
        backend.start_tests(ctx)
        return len(execs) == 2

    wait_until(started_again, timeout=10)  # once the dead worker's claim has expired
    backend.start_tests(ctx)  # started for good: no exec any more
    assert len(execs) == 2


def test_an_exec_into_a_pod_that_is_gone_is_a_lost_pod(kube: Kube) -> None:
    # The cache may still hold a pod deleted while no worker watched: starting the tests in it is a loss
    # to relaunch after, not a refusal that ends the build; the JUnit report that went with it is missing.
    from workers.backends.kubernetes import backend as backend_module
    from workers.backends.kubernetes.api import KubeApi
    from workers.backends.kubernetes.watch import PodCache
    from workers.errors import PodLost

    settings = kube.settings.model_copy(update={"kube_namespace": NAMESPACE})
    backend = backend_module.KubernetesBackend(
        settings, KubeApi(settings, _client(kube.url)), PodCache(kube.store.redis)
    )
    ctx = context(name="k8s-never-created-1")
    with pytest.raises(PodLost, match="k8s-never-created-1"):
        backend.start_tests(ctx)
    assert backend.workspace_file(ctx, "junit.xml") is None


def test_gc_removes_leaked_objects_and_leaves_unlabelled_ones(kube: Kube) -> None:
    from workers.backends.kubernetes.api import KubeApi
    from workers.backends.kubernetes.gc import collect

    v1 = core_v1(kube.url)
    leaked = {"podci.io/build": "gone-7", MANAGED_BY: "podci"}
    v1.create_namespaced_service(NAMESPACE, {"apiVersion": "v1", "kind": "Service",
                                             "metadata": {"name": "gone-7", "labels": leaked},
                                             "spec": {"clusterIP": "None", "ports": []}})  # fmt: skip
    v1.create_namespaced_service(NAMESPACE, {"apiVersion": "v1", "kind": "Service",
                                             "metadata": {"name": "someone-elses"},
                                             "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    api = KubeApi(kube.settings.model_copy(update={"kube_namespace": NAMESPACE}), _client(kube.url))
    old = kube.settings.model_copy(update={"kube_gc_ttl_hours": 1e-6})
    now = datetime.now(UTC)
    assert "services/gone-7" in collect(api, kube.store, old, dry_run=True, now=now)
    assert kube.cluster.get("services", "gone-7", NAMESPACE) is not None  # a dry run deletes nothing
    collect(api, kube.store, old, dry_run=False, now=now)
    assert kube.cluster.get("services", "gone-7", NAMESPACE) is None
    assert kube.cluster.get("services", "someone-elses", NAMESPACE) is not None


def _client(url: str) -> Any:
    from kubernetes import client

    return client.ApiClient(client.Configuration(host=url))


@pytest.mark.parametrize(
    ("container", "said"),
    [
        ("tests", "pod deleted before the tests started"),
        (CHECKOUT_CONTAINER, "pod deleted while its code was sent"),
    ],
    ids=["before-the-tests-exec", "while-the-code-is-sent"],
)
def test_a_pod_that_vanishes_before_an_exec_is_relaunched(kube: Kube, container: str, said: str) -> None:
    name = new_build(kube, "k8s-vanish")
    kube.cluster.vanish_at_next_exec(name, container)  # that exec finds the pod gone: 404
    record = wait_for(kube.store, start(kube, name).id, timeout=90)
    assert record.state is BuildState.succeeded, record.reason
    assert [p.pod for p in record.pods] == [name, f"{name}-a2"]
    assert said in record.pods[0].ended
    assert leftovers(kube, name) == []


def test_teardown_with_unreadable_logs_deletes_everything_anyway(kube: Kube) -> None:
    name = new_build(kube, "k8s-nodeless", test_duration=5)
    record = start(kube, name)
    wait_for(kube.store, record.id, until="run_tests", timeout=60)
    kube.cluster.unreachable_node(name)  # logs (and exec) of its pod answer 500 from now on
    done = wait_for(kube.store, record.id, timeout=90)
    assert done.state is BuildState.error  # the tests' result could not be read
    assert "no preferred addresses found" in done.reason
    assert leftovers(kube, name, deadline=30) == []
    saved = [Path(p).read_text() for key, p in done.logs.items() if key.startswith("containers/")]
    assert saved and all("podci could not read this log before teardown" in text for text in saved)


def test_a_waiting_build_is_looked_at_only_when_woken(kube: Kube) -> None:
    """Parked builds cost nothing while they wait: the tests' step gets a message when the tests start
    and when the agent ends, however long they run. The safety look (every 3 s here) finds the pod as
    its last look saw it, in Redis, and sends no message; counted from the worker's own events."""
    short, long = (
        new_build(kube, "k8s-short-wait", test_duration=1),
        new_build(kube, "k8s-long-wait", test_duration=20),
    )
    with TaskMessages(kube.app) as messages:
        done = [wait_for(kube.store, start(kube, n).id, timeout=120) for n in (short, long)]
    assert [r.state for r in done] == [BuildState.succeeded] * 2
    # The tests' step gets one message when setup completes and one when the agent ends (one more
    # only if a wake-up came during a look), whether the tests take 1 s or 20 s: six safety looks of
    # the long one found nothing new. A 1 s run on a busy machine may even end before the first look.
    sent = [messages.of(r.id)["podci.run_tests"] for r in done]
    assert all(1 <= n <= 3 for n in sent), sent
    looks = [r.step_record("run_tests").checks for r in done]
    assert all(n <= 2 for n in looks), looks
    # one look per decision-relevant change of the pod (scheduled, code delivered, ready), not per second
    assert all(r.step_record("wait_setup").checks <= 10 for r in done), [
        r.step_record("wait_setup") for r in done
    ]


def test_a_setup_that_times_out_says_what_the_kubelet_said(kube: Kube, tmp_path: Path) -> None:
    config = (Path(__file__).parent.parent / "examples/webapp/.podci.yml").read_text()
    repo = Repo(tmp_path / "refused", {".podci.yml": config.replace("setup: 60", "setup: 3")})
    name = new_build(kube, "k8s-refused")
    kube.cluster.listens_on_loopback(name, "counter")
    record = wait_for(kube.store, start(kube, name, repo=repo).id, timeout=90)
    assert record.state is BuildState.error
    assert record.reason.startswith("setup did not complete within 3 s (container `counter` is not ready yet")
    assert "Unhealthy: Readiness probe failed: dial tcp " in record.reason
    assert leftovers(kube, name) == []


def test_the_role_grants_exactly_the_verbs_used(kube: Kube) -> None:
    role = yaml.safe_load((Path(__file__).parent.parent / "deploy/base/role.yaml").read_text())
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    used = set()
    for r in kube.cluster.requests:
        if r.resource is None or r.resource == "persistentvolumes":
            continue
        resource = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
        verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(r.method)
        if verb is None:
            # a followed log (`follow=true`) streams like a watch but is a `get` of pods/log to RBAC
            verb = "watch" if r.watch and not r.subresource else ("get" if r.name else "list")
        if resource == "pods/exec":
            verb = "create" if r.method == "POST" else "get"
        used.add((resource, verb))
    assert used <= granted, used - granted
    assert granted - used <= {("pods/exec", "create")}, granted - used  # exec may arrive as POST or GET
    # `podci gc` needs nothing more: it lists and deletes (`test_gc_*` ran above)


def test_an_image_that_cannot_be_pulled_is_an_error_naming_it(kube: Kube) -> None:
    name = new_build(kube, "k8s-pull")
    kube.cluster.image_pull_fails(name, "python:3.12-slim")
    record = wait_for(kube.store, start(kube, name).id, timeout=60)
    assert record.state is BuildState.error
    assert "python:3.12-slim" in record.reason
    assert leftovers(kube, name) == []


def test_podci_run_with_the_kubernetes_backend(kube: Kube, tmp_path: Path) -> None:
    env = {k: v for k, v in kube.env.items() if k not in ("PODCI_REDIS_URL", "PODCI_STATE_DIR")}
    env["PODCI_STATE_DIR"] = str(tmp_path / "cli-state")
    proc = subprocess.run(
        [sys.executable, "-m", "podci", "run", "--backend", "kubernetes", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout)
    assert record["state"] == "succeeded" and record["pods"][0]["pod"] == record["name"]
    assert leftovers(kube, record["name"]) == []


def test_a_look_that_waits_on_another_worker_s_claim_comes_back_when_it_lapses(kube: Kube) -> None:
    """The code on its way from another worker, which may have died: no sign (its lapse is no pod
    event), and the next look is due when the claim lapses, not at the safety look. A pod status
    alone is signed."""
    from store import keys
    from workers.backends.kubernetes import backend as backend_module
    from workers.backends.kubernetes.api import KubeApi
    from workers.backends.kubernetes.pod_state import sign_of, wake_signal
    from workers.backends.kubernetes.watch import PodCache

    settings = kube.settings.model_copy(update={"kube_namespace": NAMESPACE})
    cache = PodCache(kube.store.redis)
    backend = backend_module.KubernetesBackend(settings, KubeApi(settings, _client(kube.url)), cache)
    ctx = context(name="k8s-claimed-1")
    pod: dict[str, Any] = {
        "metadata": {"name": "k8s-claimed-1", "labels": {BUILD_LABEL: ctx.build_id}},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": CHECKOUT_CONTAINER, "state": {}}]},
    }
    cache.put(pod, wake_signal(pod))
    assert not backend.setup_status(ctx).ready
    signed = backend.wait_hint(ctx)
    assert signed.sign == f"k8s-claimed-1:{sign_of(wake_signal(pod))}" and signed.within is None
    assert kube.store.redis.get(keys.wait_sign(ctx.build_id)) == signed.sign.encode()
    pod["status"]["initContainerStatuses"][0]["state"] = {"running": {}}  # now it waits for the code
    cache.put(pod, wake_signal(pod))
    kube.store.redis.set(keys.code_delivered("k8s-claimed-1"), "sending", px=9000)  # another worker's
    assert backend.setup_status(ctx).detail == "the code is on its way to the pod"
    hint = backend.wait_hint(ctx)
    assert hint.sign is None and hint.within is not None and 0.5 < hint.within <= 9.5
    assert backend.wait_hint(context(name="k8s-other-1")).sign is None  # a hint is about its own pod


def test_a_rerun_is_one_exec_in_the_test_container_with_the_names_as_arguments(
    kube: Kube, tmp_path: Path
) -> None:
    """Known-flaky failures run again while the pod is still there: the tests' names (anything a
    report says) are arguments after the script, never in it; the exit code and output are the rerun's,
    kept for the next look, and a look that runs it twice execs once."""
    from dataclasses import replace

    from dispatch.actions import cancel
    from workers.backends.kubernetes import backend as backend_module
    from workers.backends.kubernetes.api import KubeApi
    from workers.backends.kubernetes.names import RERUN_SCRIPT
    from workers.backends.kubernetes.watch import PodCache

    name = new_build(kube, "k8s-rerun", test_duration=600)  # the pod stays up while this test runs
    record = start(kube, name)
    wait_for(kube.store, record.id, until="run_tests", timeout=90)
    seen: list[list[str]] = []

    def rerun(call: Any) -> tuple[int, str, str] | None:
        if call.command[:3] != ["sh", "-c", RERUN_SCRIPT]:
            return None
        seen.append(list(call.command))
        return 3, "rerun says hello\n", ""

    kube.cluster.on_exec(rerun)
    settings = kube.settings.model_copy(update={"kube_namespace": NAMESPACE})
    backend = backend_module.KubernetesBackend(
        settings, KubeApi(settings, _client(kube.url)), PodCache(kube.store.redis)
    )
    ctx = replace(context(name=name), log_dir=tmp_path / "logs")
    names = ["app.Cart.flaky[$(touch pwned)]", "-x"]
    assert backend.rerun_status(ctx) is None
    backend.start_rerun(ctx, ["python3", "run_tests.py", *names])
    backend.start_rerun(ctx, ["python3", "run_tests.py", *names])  # the look ran twice: one exec
    status = backend.rerun_status(ctx)
    assert status is not None and status.exit_code == 3
    assert "rerun says hello" in status.log_path.read_text()
    mount = ctx.config.volume.mount_path
    assert seen == [["sh", "-c", RERUN_SCRIPT, "podci-rerun", mount, "python3", "run_tests.py", *names]]
    kube.cluster.on_exec(None)
    cancel(kube.app, kube.store, record.id, "the test")  # the pod was only needed for the exec
    assert wait_for(kube.store, record.id, timeout=90).state is BuildState.stopped
    assert leftovers(kube, name, deadline=90) == []
