"""The fake Kubernetes API server (tests/fake_k8s), driven only through the official client.

Everything goes through `CoreV1Api`, `watch.Watch` and `stream.stream` exactly as the backend will use
them, so a test that passes here says the fake speaks what the client expects.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException
from kubernetes.stream import stream

from testkit.fake_k8s import FakeCluster, SimSettings, core_v1, serve
from tests.helpers import wait_until
from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    AGENT_SCRIPT,
    BUILD_LABEL,
    CHECKOUT_CONTAINER,
    CHECKOUT_SCRIPT,
    EXIT_MARK,
    START_TESTS_SCRIPT,
)

NS = "default"
WS = "/workspace"


# Quicker than the defaults (which test_pod_lifecycle_* uses) to keep the suite fast.
QUICK = SimSettings(
    schedule_delay=0.05,
    start_delay=0.02,
    init_duration=0.05,
    ready_delay=0.05,
    setup_delay=0.1,
    test_duration=0.15,
    terminate_delay=0.05,
    pvc_bind_delay=0.02,
)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(settings=QUICK)


@pytest.fixture
def v1(cluster: FakeCluster) -> Iterator[Any]:
    with serve(cluster) as url:
        yield core_v1(url)
    assert cluster.self_check() == []


def pod(
    name: str, build: str | None = None, *, image: str = "python:3.12", claim: str | None = None
) -> client.V1Pod:
    """A podci-like pod: checkout init container, the tests container, the agent."""
    volumes, mounts = None, None
    if claim:
        volumes = [
            client.V1Volume(
                name="podci-workspace",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name=claim),
            )
        ]
        mounts = [client.V1VolumeMount(name="podci-workspace", mount_path=WS)]
    return client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(
            name=name, labels={BUILD_LABEL: build or name, "app.kubernetes.io/managed-by": "podci"}
        ),
        spec=client.V1PodSpec(
            restart_policy="Never",
            init_containers=[
                client.V1Container(
                    name=CHECKOUT_CONTAINER,
                    image="alpine/git:2.45",
                    command=["sh", "-c", CHECKOUT_SCRIPT],
                    volume_mounts=mounts,
                )
            ],
            containers=[
                client.V1Container(
                    name="tests", image=image, command=["sleep", "infinity"], volume_mounts=mounts
                ),
                client.V1Container(
                    name=AGENT_CONTAINER,
                    image="busybox:1.36",
                    command=["sh", "-c", AGENT_SCRIPT, "podci-agent", WS],
                    volume_mounts=mounts,
                ),
            ],
            volumes=volumes,
        ),
    )


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def condition(p: client.V1Pod, kind: str) -> Any:
    """The pod's condition of that type (a V1PodCondition), or None."""
    return next((c for c in p.status.conditions or [] if c.type == kind), None)


def is_ready(p: client.V1Pod) -> bool:
    ready = condition(p, "Ready")
    return ready is not None and ready.status == "True"


def container_status(p: client.V1Pod, name: str) -> client.V1ContainerStatus:
    statuses = (p.status.init_container_statuses or []) + (p.status.container_statuses or [])
    return next(s for s in statuses if s.name == name)


def wait_pod(v1: Any, name: str, check: Any, timeout: float = 60) -> client.V1Pod:
    return wait_until(lambda: (p := v1.read_namespaced_pod(name, NS)) and check(p) and p, timeout=timeout)


def run(v1: Any, name: str, *command: str, container: str = "tests") -> tuple[int, str, str]:
    """exec as the backend will: keep the WSClient to read the exit code from the error channel."""
    resp = stream(
        v1.connect_get_namespaced_pod_exec,
        name,
        NS,
        command=list(command),
        container=container,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=5)
    code = resp.returncode
    return code, resp.read_channel(1), resp.read_channel(2)


def start_tests(v1: Any, name: str, *argv: str) -> int:
    return run(v1, name, "sh", "-c", START_TESTS_SCRIPT, "podci-tests", WS, *argv)[0]


def watch_until(list_call: Any, stop: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Watch events until `stop(event)` is true (or 5 s pass), without waiting for the stream's end."""
    events: list[dict[str, Any]] = []
    w = watch.Watch()
    for event in w.stream(list_call, NS, timeout_seconds=5, **kwargs):
        events.append(event)
        if stop(event):
            w.stop()
    return events


def agent_done(p: client.V1Pod) -> bool:
    return container_status(p, AGENT_CONTAINER).state.terminated is not None


# -- CRUD -----------------------------------------------------------------------------------------------


def test_crud_of_every_kind(v1: Any, cluster: FakeCluster) -> None:
    ns = v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="t1")))
    assert ns.status.phase == "Active" and ns.metadata.uid
    assert "t1" in [n.metadata.name for n in v1.list_namespace().items]

    svc = v1.create_namespaced_service(
        "t1",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="b-1", labels={BUILD_LABEL: "b-1"}),
            spec=client.V1ServiceSpec(
                selector={BUILD_LABEL: "b-1"}, ports=[client.V1ServicePort(name="http", port=80)]
            ),
        ),
    )
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].target_port == 80
    assert svc.metadata.namespace == "t1" and svc.metadata.creation_timestamp is not None

    pvc = v1.create_namespaced_persistent_volume_claim(
        "t1",
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="b-1"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    assert pvc.status.phase == "Pending"
    bound = wait_until(
        lambda: (c := v1.read_namespaced_persistent_volume_claim("b-1", "t1")).status.phase == "Bound" and c
    )
    pv = v1.read_persistent_volume(bound.spec.volume_name)
    assert pv.spec.claim_ref.name == "b-1" and pv.status.phase == "Bound"

    manual = v1.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name="manual"),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "1Gi"},
                access_modes=["ReadWriteOnce"],
                host_path=client.V1HostPathVolumeSource(path="/tmp/x"),
            ),
        )
    )
    assert manual.status.phase == "Available"
    assert {"manual", bound.spec.volume_name} <= {p.metadata.name for p in v1.list_persistent_volume().items}

    event = v1.create_namespaced_event(
        "t1",
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="ev1"),
            reason="Testing",
            message="hello",
            involved_object=client.V1ObjectReference(kind="Pod", name="x", namespace="t1"),
        ),
    )
    assert v1.read_namespaced_event("ev1", "t1").message == "hello" == event.message

    created = v1.create_namespaced_pod("t1", pod("b-1"))
    assert created.metadata.uid and created.status.phase == "Pending"
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"  # defaulted like the server
    assert v1.read_namespaced_pod("b-1", "t1").metadata.uid == created.metadata.uid
    assert [p.metadata.name for p in v1.list_namespaced_pod("t1").items] == ["b-1"]
    assert [
        p.metadata.name for p in v1.list_pod_for_all_namespaces(label_selector=f"{BUILD_LABEL}=b-1").items
    ] == ["b-1"]

    # Deletes answer the object (pods, services, claims, volumes) or a Status (events, namespaces).
    assert v1.delete_namespaced_service("b-1", "t1").metadata.name == "b-1"
    assert v1.delete_namespaced_event("ev1", "t1").status == "Success"
    assert v1.delete_persistent_volume("manual").metadata.name == "manual"
    deleted = v1.delete_namespaced_pod("b-1", "t1")
    assert deleted.metadata.deletion_timestamp is not None  # graceful: Terminating first
    wait_until(lambda: not v1.list_namespaced_pod("t1").items)
    wait_until(lambda: v1.read_namespaced_persistent_volume_claim("b-1", "t1").status.phase == "Bound")
    v1.delete_namespaced_persistent_volume_claim("b-1", "t1")
    wait_until(
        lambda: bound.spec.volume_name not in {p.metadata.name for p in v1.list_persistent_volume().items}
    )
    for call, args in [
        (v1.read_namespaced_service, ("b-1", "t1")),
        (v1.read_namespaced_event, ("ev1", "t1")),
        (v1.read_persistent_volume, ("manual",)),
        (v1.delete_namespaced_pod, ("nope", "t1")),
        (v1.delete_namespaced_persistent_volume_claim, ("b-1", "t1")),
    ]:
        with pytest.raises(ApiException) as err:
            call(*args)
        assert err.value.status == 404, call

    assert v1.delete_namespace("t1").status == "Success"
    wait_until(lambda: "t1" not in [n.metadata.name for n in v1.list_namespace().items])
    assert [o["kind"] for o in cluster.validated][:1] == ["Namespace"]


def test_conflicts_and_missing_objects_are_status_objects(v1: Any) -> None:
    v1.create_namespaced_pod(NS, pod("b-2"))
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod(NS, pod("b-2"))
    assert err.value.status == 409
    assert status_of(err.value) | {"details": None} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "b-2" already exists',
        "reason": "AlreadyExists",
        "code": 409,
        "details": None,
    }
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_pod("nope", NS)
    assert err.value.status == 404 and status_of(err.value)["reason"] == "NotFound"
    assert status_of(err.value)["message"] == 'pods "nope" not found'
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod("no-such-namespace", pod("b-2"))
    assert (
        err.value.status == 404
        and status_of(err.value)["message"] == 'namespaces "no-such-namespace" not found'
    )


def test_objects_without_kind_get_it_from_the_path(v1: Any, cluster: FakeCluster) -> None:
    body = pod("b-3")
    body.api_version = body.kind = None  # the client then sends neither
    created = v1.create_namespaced_pod(NS, body)
    assert created.kind == "Pod" and created.api_version == "v1"
    assert cluster.validated[-1]["kind"] == "Pod"


def test_label_and_field_selectors(v1: Any) -> None:
    for name, labels in [
        ("a", {"tier": "web", "env": "ci"}),
        ("b", {"tier": "db", "env": "ci"}),
        ("c", {"tier": "web"}),
    ]:
        v1.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=f"ns-{name}", labels=labels))
        )

    def names(**kwargs: str) -> list[str]:
        return sorted(
            n.metadata.name[3:]
            for n in v1.list_namespace(**kwargs).items
            if n.metadata.name.startswith("ns-")
        )

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web") == ["a", "c"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(label_selector="tier=web,env=ci") == ["a"]
    assert names(label_selector="tier in (db,web),env notin (ci)") == ["c"]
    assert names(field_selector="metadata.name=ns-b") == ["b"]
    assert names(field_selector="metadata.name!=ns-b", label_selector="tier") == ["a", "c"]
    with pytest.raises(ApiException) as err:
        v1.list_namespace(label_selector="bad key=1")
    assert err.value.status == 400


def test_invalid_objects_are_refused_with_422(v1: Any, cluster: FakeCluster) -> None:
    # The client's models refuse a nameless container themselves, so the body goes as a dict.
    nameless = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"image": "busybox"}]},
    }
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod(NS, nameless)
    status = status_of(err.value)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == "Pod \"bad\" is invalid: spec.containers[0]: 'name' is a required property"
    unknown_field = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "x", "image": "busybox", "imagePullPolicie": "Always"}]},
    }
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod(NS, unknown_field)
    assert err.value.status == 422 and "imagePullPolicie" in status_of(err.value)["message"]
    assert [o["metadata"]["name"] for o, _ in cluster.refused] == ["bad", "bad"]
    with pytest.raises(ApiException):
        v1.read_namespaced_pod("bad", NS)


def test_patch_merges_labels_and_annotations(v1: Any) -> None:
    v1.create_namespaced_pod(NS, pod("b-4"))
    # Once ready (and no tests started) the simulated pod changes no more, so the resourceVersions
    # below move only with this test's own writes.
    created = wait_pod(v1, "b-4", is_ready)
    patched = v1.patch_namespaced_pod(
        "b-4", NS, {"metadata": {"labels": {"extra": "1"}, "annotations": {"a": "b"}}}
    )
    assert patched.metadata.labels == {**created.metadata.labels, "extra": "1"}
    assert patched.metadata.annotations == {"a": "b"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    patched = v1.patch_namespaced_pod("b-4", NS, {"metadata": {"labels": {"extra": None}}})
    assert "extra" not in patched.metadata.labels
    patched = v1.patch_namespaced_pod("b-4", NS, [{"op": "add", "path": "/metadata/labels/j", "value": "p"}])
    assert patched.metadata.labels["j"] == "p"
    with pytest.raises(ApiException) as err:
        v1.patch_namespaced_pod("b-4", NS, {"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"
    # PUT: a replace with the current resourceVersion works, with a stale one it conflicts.
    current = v1.read_namespaced_pod("b-4", NS)
    current.metadata.annotations = {"replaced": "yes"}
    replaced = v1.replace_namespaced_pod("b-4", NS, current)
    assert replaced.metadata.annotations == {"replaced": "yes"} and replaced.status.phase  # status kept
    with pytest.raises(ApiException) as err:
        v1.replace_namespaced_pod("b-4", NS, current)
    assert err.value.status == 409


# -- watch and the pod lifecycle -----------------------------------------------------------------------


def test_pod_lifecycle_reaches_ready_as_seen_by_a_watch(v1: Any, cluster: FakeCluster) -> None:
    cluster.configure(**dataclasses.asdict(SimSettings()))  # the default delays
    created = v1.create_namespaced_pod(NS, pod("b-5"))
    events: list[tuple[str, client.V1Pod]] = []
    w = watch.Watch()
    for event in w.stream(
        v1.list_namespaced_pod,
        NS,
        label_selector=f"{BUILD_LABEL}=b-5",
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    ):
        events.append((event["type"], event["object"]))
        if is_ready(event["object"]):
            w.stop()
    assert events and is_ready(events[-1][1]), "no Ready within the watch"
    assert {t for t, _ in events} == {"MODIFIED"}
    versions = [int(p.metadata.resource_version) for _, p in events]
    assert versions == sorted(set(versions)) and versions[0] > int(created.metadata.resource_version)

    def step(p: client.V1Pod) -> str:
        checkout = container_status(p, CHECKOUT_CONTAINER) if p.status.init_container_statuses else None
        if p.spec.node_name is None:
            return "pending"
        if checkout is not None and checkout.state.terminated is None:
            return "initializing"
        if not all(c.state.running for c in p.status.container_statuses):
            return "starting"
        if not is_ready(p):
            return "running"
        return "ready"

    steps = [step(p) for _, p in events]
    order = ["pending", "initializing", "starting", "running", "ready"]
    assert [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s] == order[1:]
    last = events[-1][1]
    assert last.status.phase == "Running" and last.spec.node_name
    assert {c.type: c.status for c in last.status.conditions} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    checkout = container_status(last, CHECKOUT_CONTAINER).state.terminated
    assert checkout.exit_code == 0 and checkout.reason == "Completed"
    # The agent is ready last: after the setup delay, while the tests container already was.
    running = [p for _, p in events if step(p) == "running"]
    assert running and container_status(running[-1], "tests").ready
    assert not container_status(running[-1], AGENT_CONTAINER).ready


def test_watch_resumes_from_a_resource_version_and_expires_when_compacted(
    v1: Any, cluster: FakeCluster
) -> None:
    before = v1.list_namespaced_service(NS).metadata.resource_version
    for name in ("s1", "s2", "s3"):
        v1.create_namespaced_service(
            NS,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
            ),
        )

    def last(event: dict[str, Any]) -> bool:
        return bool(event["object"].metadata.name == "s3")

    seen = [
        (e["type"], e["object"].metadata.name, e["object"].metadata.resource_version)
        for e in watch_until(v1.list_namespaced_service, last, resource_version=before)
    ]
    assert [(t, n) for t, n, _ in seen] == [("ADDED", "s1"), ("ADDED", "s2"), ("ADDED", "s3")]
    resumed = watch_until(v1.list_namespaced_service, last, resource_version=seen[0][2])
    assert [e["object"].metadata.name for e in resumed] == ["s2", "s3"]
    # Without a resourceVersion: the current objects, as synthetic ADDED events.
    current = [(e["type"], e["object"].metadata.name) for e in watch_until(v1.list_namespaced_service, last)]
    assert current == [("ADDED", "s1"), ("ADDED", "s2"), ("ADDED", "s3")]
    cluster.compact()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_namespaced_service, NS, resource_version=before, timeout_seconds=1))
    assert err.value.status == 410 and "Expired" in err.value.reason
    # From the current resourceVersion nothing is missing: no error, and the stream ends on its timeout.
    now = v1.list_namespaced_service(NS).metadata.resource_version
    assert (
        list(watch.Watch().stream(v1.list_namespaced_service, NS, resource_version=now, timeout_seconds=1))
        == []
    )


def test_a_live_watch_is_woken_by_changes_from_another_thread(v1: Any) -> None:
    rv = v1.list_namespaced_service(NS).metadata.resource_version
    threading.Timer(
        0.3,
        lambda: v1.create_namespaced_service(
            NS,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="late"),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=1)]),
            ),
        ),
    ).start()
    w = watch.Watch()
    started = time.monotonic()
    names = []
    # A watch nobody wakes would only answer when the server ends it, after `timeout_seconds`.
    for event in w.stream(v1.list_namespaced_service, NS, resource_version=rv, timeout_seconds=120):
        names.append(event["object"].metadata.name)
        w.stop()
    assert names == ["late"] and time.monotonic() - started < 120


def test_deleting_a_pod_goes_through_terminating(v1: Any) -> None:
    created = v1.create_namespaced_pod(NS, pod("b-6"))
    v1.delete_namespaced_pod("b-6", NS)
    events = [
        (e["type"], e["object"].metadata.deletion_timestamp is not None)
        for e in watch_until(
            v1.list_namespaced_pod,
            lambda e: e["type"] == "DELETED",
            resource_version=created.metadata.resource_version,
        )
    ]
    assert events[-2:] == [("MODIFIED", True), ("DELETED", True)]


# -- exec and logs -------------------------------------------------------------------------------------


def test_start_tests_then_the_agent_terminates_with_the_exit_mark(v1: Any, cluster: FakeCluster) -> None:
    v1.create_namespaced_pod(NS, pod("b-7"))
    wait_pod(v1, "b-7", is_ready)
    assert start_tests(v1, "b-7", "pytest", "-q") == 0
    assert start_tests(v1, "b-7", "pytest", "-q") == 0  # idempotent: the second one does nothing
    done = wait_pod(v1, "b-7", agent_done)
    agent = container_status(done, AGENT_CONTAINER)
    assert agent.state.terminated.exit_code == 0 and not agent.ready
    assert done.status.phase == "Running"  # the tests container still runs
    log = v1.read_namespaced_pod_log("b-7", NS, container=AGENT_CONTAINER)
    assert log == f"pytest -q\nOK\n{EXIT_MARK} 0\n"
    assert log.splitlines()[-1] == f"{EXIT_MARK} 0"
    assert run(v1, "b-7", "cat", f"{WS}/.podci/tests.exit") == (0, "0\n", "")
    assert [e.command[3:] for e in cluster.execs if e.command[0] == "sh"] == [
        ["podci-tests", WS, "pytest", "-q"]
    ] * 2


def test_a_failing_test_run_is_configured_per_build(v1: Any, cluster: FakeCluster) -> None:
    cluster.configure("b-8", test_exit_code=3, test_output="1 failed, 2 passed")
    v1.create_namespaced_pod(NS, pod("b-8"))
    v1.create_namespaced_pod(NS, pod("b-9"))
    for name in ("b-8", "b-9"):
        wait_pod(v1, name, is_ready)
        assert start_tests(v1, name, "make", "test") == 0
    for name in ("b-8", "b-9"):
        wait_pod(v1, name, agent_done)
    assert (
        v1.read_namespaced_pod_log("b-8", NS, container=AGENT_CONTAINER)
        == f"1 failed, 2 passed\n{EXIT_MARK} 3\n"
    )
    assert v1.read_namespaced_pod_log("b-9", NS, container=AGENT_CONTAINER).endswith(f"OK\n{EXIT_MARK} 0\n")


def test_exec_reads_registered_files_and_reports_exit_codes(v1: Any, cluster: FakeCluster) -> None:
    cluster.add_file("b-10", f"{WS}/reports/junit.xml", "<testsuite tests='1'/>")
    v1.create_namespaced_pod(NS, pod("b-10"))
    wait_pod(v1, "b-10", lambda p: p.status.phase == "Running")
    assert run(v1, "b-10", "cat", f"{WS}/reports/junit.xml") == (0, "<testsuite tests='1'/>", "")
    code, out, err = run(v1, "b-10", "cat", f"{WS}/missing.xml")
    assert (code, out) == (1, "") and "No such file" in err
    assert run(v1, "b-10", "test", "-f", f"{WS}/reports/junit.xml")[0] == 0
    assert run(v1, "b-10", "test", "-f", f"{WS}/missing.xml")[0] == 1
    assert run(v1, "b-10", "echo", "anything")[0] == 0
    # The one-call form gives stdout+stderr only, as the client does.
    plain = stream(
        v1.connect_get_namespaced_pod_exec,
        "b-10",
        NS,
        command=["cat", f"{WS}/reports/junit.xml"],
        container="tests",
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert plain == "<testsuite tests='1'/>"


def test_exec_refusals_reach_the_client(v1: Any) -> None:
    with pytest.raises(ApiException) as err:
        run(v1, "nope", "true")
    assert err.value.status == 0 and "404" in err.value.reason  # websocket-client's handshake error
    v1.create_namespaced_pod(NS, pod("b-11"))
    with pytest.raises(ApiException) as err:  # not scheduled yet
        run(v1, "b-11", "true")
    assert "400" in err.value.reason
    wait_pod(v1, "b-11", lambda p: p.status.phase == "Running")
    with pytest.raises(ApiException) as err:
        run(v1, "b-11", "true", container="nope")
    assert "not valid for pod" in err.value.reason


def test_logs(v1: Any) -> None:
    v1.create_namespaced_pod(NS, pod("b-12"))
    wait_pod(v1, "b-12", is_ready)
    assert v1.read_namespaced_pod_log("b-12", NS, container="tests") == "tests started\n"
    assert (
        v1.read_namespaced_pod_log("b-12", NS, container=CHECKOUT_CONTAINER)
        == f"{CHECKOUT_CONTAINER} started\n"
    )
    assert v1.read_namespaced_pod_log("b-12", NS, container=AGENT_CONTAINER) == ""
    for container in ("nope", None):
        with pytest.raises(ApiException) as err:
            v1.read_namespaced_pod_log("b-12", NS, container=container)
        assert err.value.status == 400
    assert start_tests(v1, "b-12", "pytest") == 0
    followed = list(
        watch.Watch().stream(v1.read_namespaced_pod_log, "b-12", NS, container=AGENT_CONTAINER, follow=True)
    )
    assert followed == ["pytest", "OK", f"{EXIT_MARK} 0"]


# -- faults --------------------------------------------------------------------------------------------


def test_unschedulable_pods_stay_pending_until_lifted(v1: Any, cluster: FakeCluster) -> None:
    cluster.unschedulable("b-13")
    v1.create_namespaced_pod(NS, pod("b-13"))
    stuck = wait_pod(v1, "b-13", lambda p: condition(p, "PodScheduled").reason == "Unschedulable")
    scheduled = condition(stuck, "PodScheduled")
    assert (
        scheduled.status == "False" and scheduled.message == "0/3 nodes are available: 3 Insufficient memory."
    )
    assert stuck.status.phase == "Pending" and stuck.spec.node_name is None
    cluster.settle(0.3)
    assert v1.read_namespaced_pod("b-13", NS).spec.node_name is None
    events = v1.list_namespaced_event(NS, field_selector="involvedObject.name=b-13").items
    assert [e.reason for e in events] == ["FailedScheduling"]
    cluster.schedulable("b-13")
    wait_pod(v1, "b-13", is_ready)


def test_a_pod_waits_for_its_claim(v1: Any) -> None:
    v1.create_namespaced_pod(NS, pod("b-14", claim="b-14"))
    stuck = wait_pod(v1, "b-14", lambda p: condition(p, "PodScheduled").reason == "Unschedulable")
    assert condition(stuck, "PodScheduled").message == 'persistentvolumeclaim "b-14" not found'
    v1.create_namespaced_persistent_volume_claim(
        NS,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="b-14"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    wait_pod(v1, "b-14", is_ready)
    # pvc-protection: the claim waits, Terminating, until its pod is gone.
    v1.delete_namespaced_persistent_volume_claim("b-14", NS)
    assert v1.read_namespaced_persistent_volume_claim("b-14", NS).metadata.deletion_timestamp is not None
    v1.delete_namespaced_pod("b-14", NS)
    wait_until(lambda: not v1.list_namespaced_persistent_volume_claim(NS).items)


def test_image_pull_failure(v1: Any, cluster: FakeCluster) -> None:
    cluster.image_pull_fails("b-15", "registry.invalid/app:1")
    created = v1.create_namespaced_pod(NS, pod("b-15", image="registry.invalid/app:1"))

    def waiting(p: client.V1Pod) -> client.V1ContainerStateWaiting | None:
        return container_status(p, "tests").state.waiting if p.status.container_statuses else None

    events = watch_until(
        v1.list_namespaced_pod,
        lambda e: (w := waiting(e["object"])) is not None and w.reason == "ImagePullBackOff",
        resource_version=created.metadata.resource_version,
    )
    states = [
        (w.reason, w.message) for e in events if (w := waiting(e["object"])) and w.reason != "PodInitializing"
    ]
    assert [r for i, (r, _) in enumerate(states) if i == 0 or states[i - 1][0] != r] == [
        "ErrImagePull",
        "ImagePullBackOff",
    ]
    assert "registry.invalid/app:1" in states[0][1]
    assert states[-1][1] == 'Back-off pulling image "registry.invalid/app:1"'
    backoff = events[-1]["object"]
    assert container_status(backoff, AGENT_CONTAINER).state.running is not None
    assert backoff.status.phase == "Pending"


@pytest.mark.parametrize(
    ("fault", "reason", "message", "disruption"),
    [
        ("evict", "Evicted", "The node was low on resource: memory.", "EvictionByEvictionAPI"),
        (
            "shutdown_node",
            "Terminated",
            "Pod was terminated in response to imminent node shutdown.",
            "TerminationByKubelet",
        ),
    ],
)
def test_pod_failures_that_leave_the_pod(
    v1: Any, cluster: FakeCluster, fault: str, reason: str, message: str, disruption: str
) -> None:
    v1.create_namespaced_pod(NS, pod("b-16"))
    wait_pod(v1, "b-16", is_ready)
    getattr(cluster, fault)("b-16")
    failed = v1.read_namespaced_pod("b-16", NS)
    assert (failed.status.phase, failed.status.reason, failed.status.message) == ("Failed", reason, message)
    target = condition(failed, "DisruptionTarget")
    assert (target.status, target.reason) == ("True", disruption)
    assert condition(failed, "Ready").status == "False"
    cluster.settle(0.3)
    assert v1.read_namespaced_pod("b-16", NS).status.phase == "Failed"  # and there it stays


@pytest.mark.parametrize("fault", ["lose_node", "delete_pod"])
def test_pod_losses_that_delete_the_pod(v1: Any, cluster: FakeCluster, fault: str) -> None:
    created = v1.create_namespaced_pod(NS, pod("b-17"))
    wait_pod(v1, "b-17", is_ready)
    getattr(cluster, fault)("b-17")
    events = [
        (e["type"], e["object"])
        for e in watch_until(
            v1.list_namespaced_pod,
            lambda e: e["type"] == "DELETED",
            resource_version=created.metadata.resource_version,
        )
    ]
    assert events[-1][0] == "DELETED" and events[-2][1].metadata.deletion_timestamp is not None
    if fault == "lose_node":
        lost = next(p for _, p in events if condition(p, "DisruptionTarget"))
        assert condition(lost, "DisruptionTarget").reason == "DeletionByTaintManager"
        assert condition(lost, "Ready").status == "False"


def test_oom_kill(v1: Any, cluster: FakeCluster) -> None:
    v1.create_namespaced_pod(NS, pod("b-18"))
    wait_pod(v1, "b-18", is_ready)
    cluster.oom("b-18", "tests")
    killed = container_status(v1.read_namespaced_pod("b-18", NS), "tests").state.terminated
    assert (killed.reason, killed.exit_code) == ("OOMKilled", 137)


def test_lose_on_tests_loses_the_first_attempts(v1: Any, cluster: FakeCluster) -> None:
    cluster.configure(
        schedule_delay=0.02, init_duration=0.02, ready_delay=0.02, setup_delay=0.05, test_duration=0.1
    )
    cluster.lose_on_tests("b-19", times=2, how="evict")
    outcomes = []
    for attempt in ("b-19", "b-19-a2", "b-19-a3"):
        v1.create_namespaced_pod(NS, pod(attempt, build="b-19"))
        wait_pod(v1, attempt, is_ready)
        assert start_tests(v1, attempt, "pytest") == 0
        end = wait_pod(v1, attempt, lambda p: p.status.phase == "Failed" or agent_done(p))
        outcomes.append(end.status.reason or container_status(end, AGENT_CONTAINER).state.terminated.reason)
    assert outcomes == ["Evicted", "Evicted", "Completed"]


def test_fail_next_with_429_and_500(v1: Any, cluster: FakeCluster) -> None:
    impatient = core_v1(v1.api_client.configuration.host, retries=False)
    cluster.fail_next(1, status=429, retry_after=1)
    with pytest.raises(ApiException) as err:
        impatient.list_namespaced_pod(NS)
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"
    assert status_of(err.value)["reason"] == "TooManyRequests"
    assert impatient.list_namespaced_pod(NS).items == []  # only the next one failed
    # The default client lets urllib3 retry a GET answered 429 with Retry-After, up to 3 times...
    cluster.fail_next(2, status=429, retry_after=0)
    assert v1.list_namespaced_pod(NS).items == []
    # ... but not a POST.
    cluster.fail_next(1, status=429, retry_after=0, method="POST")
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_pod(NS, pod("b-20"))
    assert err.value.status == 429
    cluster.fail_next(1, status=500)
    with pytest.raises(ApiException) as err:
        v1.read_namespace(NS)
    assert err.value.status == 500 and status_of(err.value)["reason"] == "InternalError"
    assert (
        cluster.count(resource="pods", method="GET") == 5
        and cluster.count(resource="pods", method="POST") == 1
    )


def test_request_log(v1: Any, cluster: FakeCluster) -> None:
    v1.create_namespaced_pod(NS, pod("b-21"))
    v1.create_namespaced_pod(NS, pod("b-21-a2", build="b-21"))
    v1.create_namespaced_pod(NS, pod("b-22"))
    v1.read_namespaced_pod("b-21-a2", NS)
    v1.list_namespaced_pod(NS, label_selector=f"{BUILD_LABEL}=b-21")
    assert len(watch_until(v1.list_namespaced_pod, lambda e: True, label_selector=f"{BUILD_LABEL}=b-21")) == 1
    wait_until(
        lambda: (cluster.get("pods", "b-21") or {})["status"]["phase"] == "Running"
    )  # not through the API
    run(v1, "b-21", "true")
    assert cluster.count(build="b-21") == 6 and cluster.count(build="b-22") == 1
    assert cluster.count("POST", resource="pods") == 3
    assert cluster.count(build="b-21", watch=True) == 1
    exec_record = next(r for r in cluster.requests if r.websocket)
    assert (exec_record.status, exec_record.subresource, exec_record.build) == (101, "exec", "b-21")
    assert "command=true" in exec_record.query and exec_record.time <= time.time()
    assert [r.status for r in cluster.requests_for("b-22")] == [201]


def test_delete_collection(v1: Any) -> None:
    for name in ("b-23", "b-23-a2", "b-24"):
        v1.create_namespaced_pod(NS, pod(name, build=name[:4]))
    v1.delete_collection_namespaced_pod(NS, label_selector=f"{BUILD_LABEL}=b-23")
    wait_until(lambda: [p.metadata.name for p in v1.list_namespaced_pod(NS).items] == ["b-24"])


def test_volume_markers_model_the_real_start_script_on_a_reused_volume(v1: Any, cluster: FakeCluster) -> None:
    """With `volume_markers`, START_TESTS_SCRIPT sees `.podci/tests.started` left on the build's volume by
    a lost attempt, as the real script would, and starts nothing until someone removes it."""
    cluster.volume_markers = True
    cluster.lose_on_tests("b-25", times=1, how="delete")
    v1.create_namespaced_pod(NS, pod("b-25"))
    wait_pod(v1, "b-25", is_ready)
    assert start_tests(v1, "b-25", "pytest") == 0
    wait_until(lambda: not v1.list_namespaced_pod(NS).items)
    v1.create_namespaced_pod(NS, pod("b-25-a2", build="b-25"))
    wait_pod(v1, "b-25-a2", is_ready)
    assert run(v1, "b-25-a2", "test", "-f", f"{WS}/.podci/tests.started")[0] == 0
    assert start_tests(v1, "b-25-a2", "pytest") == 0
    cluster.settle(0.4)
    assert not agent_done(v1.read_namespaced_pod("b-25-a2", NS))  # nothing was started
    assert run(v1, "b-25-a2", "rm", "-f", f"{WS}/.podci/tests.started")[0] == 0
    assert start_tests(v1, "b-25-a2", "pytest") == 0
    wait_pod(v1, "b-25-a2", agent_done)


# -- what a real node would not run ----------------------------------------------------------------------


def plain_pod(name: str, container: client.V1Container) -> client.V1Pod:
    return client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name=name, labels={BUILD_LABEL: name}),
        spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
    )


def test_a_relative_file_without_a_working_dir_fails_as_in_an_image_rooted_at_slash(v1: Any) -> None:
    bare = client.V1Container(name="svc", image="python:3.12-slim", command=["python3", "service/counter.py"])
    v1.create_namespaced_pod(NS, plain_pod("b-30", bare))
    failed = wait_pod(v1, "b-30", lambda p: p.status.phase == "Failed")
    ended = container_status(failed, "svc").state.terminated
    assert ended.exit_code == 2
    assert "can't open file '//service/counter.py'" in ended.message
    placed = client.V1Container(
        name="svc", image="python:3.12-slim", command=["python3", "service/counter.py"], working_dir="/ws"
    )
    v1.create_namespaced_pod(NS, plain_pod("b-31", placed))
    assert container_status(wait_pod(v1, "b-31", is_ready), "svc").state.running is not None


def test_a_probe_on_a_loopback_only_port_is_refused_and_never_ready(v1: Any, cluster: FakeCluster) -> None:
    probe = client.V1Probe(tcp_socket=client.V1TCPSocketAction(port=8080), period_seconds=1)
    svc = client.V1Container(
        name="svc", image="python:3.12-slim", command=["python3", "-m", "http.server", "--bind", "127.0.0.1"],
        working_dir="/ws", readiness_probe=probe, ports=[client.V1ContainerPort(container_port=8080)],
    )  # fmt: skip
    v1.create_namespaced_pod(NS, plain_pod("b-32", svc))
    running = wait_pod(v1, "b-32", lambda p: p.status.phase == "Running")
    events = wait_until(
        lambda: [e for e in v1.list_namespaced_event(NS, field_selector="involvedObject.name=b-32").items
                 if e.reason == "Unhealthy"]
    )  # fmt: skip
    assert events[0].type == "Warning"
    assert events[0].message == (
        f"Readiness probe failed: dial tcp {running.status.pod_ip}:8080: connect: connection refused"
    )
    cluster.settle(0.5)
    assert not container_status(v1.read_namespaced_pod("b-32", NS), "svc").ready


def test_without_a_provisioner_a_claim_stays_pending_and_its_pod_unschedulable() -> None:
    with FakeCluster(dynamic_provisioning=False) as cluster, serve(cluster) as url:
        v1 = core_v1(url)
        claim = client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="b-33"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        )
        v1.create_namespaced_persistent_volume_claim(NS, claim)
        v1.create_namespaced_pod(NS, pod("b-33", claim="b-33"))
        stuck = wait_pod(v1, "b-33", lambda p: condition(p, "PodScheduled").reason == "Unschedulable")
        assert condition(stuck, "PodScheduled").message == (
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        )
        cluster.settle(0.3)
        assert v1.read_namespaced_persistent_volume_claim("b-33", NS).status.phase == "Pending"


def test_access_reviews_answer_what_rbac_allows(v1: Any, cluster: FakeCluster) -> None:
    auth = client.AuthorizationV1Api(v1.api_client)

    def allowed(verb: str, resource: str, subresource: str = "") -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"namespace": NS, "verb": verb, "resource": resource,
                                                  "subresource": subresource}}}  # fmt: skip
        return bool(auth.create_self_subject_access_review(review).status.allowed)

    assert allowed("create", "pods", "exec")
    cluster.deny("create", "pods", "exec")
    try:
        assert not allowed("create", "pods", "exec") and allowed("create", "pods")
    finally:
        cluster.denied.clear()
