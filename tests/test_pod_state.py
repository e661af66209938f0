"""workers/backends/pod_state.py: pod JSON as the API returns it -> what happened, one row per rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.repo_config import RepoConfig, SetupSpec
from schemas.repo_config import TestSpec as _TestSpec  # not `Test*`: pytest would try to collect it
from workers.backends.kubernetes.names import AGENT_CONTAINER, CHECKOUT_CONTAINER
from workers.backends.kubernetes.pod_state import (
    PodState,
    classify,
    deleted,
    exit_code_from_agent_log,
    strip_exit_mark,
    wake_signal,
    without_exit_mark,
)

NOW = datetime(2024, 5, 1, 12, 10, tzinfo=UTC)
CREATED = "2024-05-01T12:00:00Z"
STARTED = "2024-05-01T12:01:00Z"
FILE = RepoConfig(test=_TestSpec(container="tests", command="pytest"), setup=SetupSpec(file=".podci/ready"))
READY = RepoConfig(test=_TestSpec(container="tests", command="pytest"), setup=SetupSpec(ready=True))

IMAGES = {
    CHECKOUT_CONTAINER: "alpine/git:2.45.2",
    "tests": "python:3.12-slim",
    "db": "postgres:16",
    AGENT_CONTAINER: "busybox:1.36",
}
Json = dict[str, Any]


# --- status snippets, shaped as the kubelet reports them -----------------------------------------------


def _status(name: str, state: Json, ready: bool = False, started: bool | None = None) -> Json:
    entry: Json = {
        "name": name,
        "image": IMAGES.get(name, "alpine:3.20"),
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    }
    if "running" in state or "terminated" in state:
        entry["imageID"] = f"docker.io/library/{entry['image']}@sha256:{'0' * 64}"
        entry["containerID"] = f"containerd://{'1' * 64}"
    if started is not None:
        entry["started"] = started
    return entry


def running(name: str, ready: bool = False) -> Json:
    return _status(name, {"running": {"startedAt": STARTED}}, ready=ready, started=True)


def waiting(name: str, reason: str = "PodInitializing", message: str | None = None) -> Json:
    state: Json = {"reason": reason}
    if message is not None:
        state["message"] = message
    return _status(name, {"waiting": state}, started=False)


def terminated(name: str, code: int, reason: str | None = None, message: str | None = None) -> Json:
    state: Json = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": STARTED,
        "finishedAt": "2024-05-01T12:05:00Z",
        "containerID": f"containerd://{'1' * 64}",
    }
    if message is not None:
        state["message"] = message
    return _status(name, {"terminated": state}, started=False)


def condition(
    kind: str, status: str, reason: str | None = None, message: str | None = None, at: str = STARTED
) -> Json:
    entry: Json = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": at}
    if reason is not None:
        entry["reason"] = reason
    if message is not None:
        entry["message"] = message
    return entry


SCHEDULED = condition("PodScheduled", "True")


def pod(
    phase: str = "Running",
    *,
    init: list[Json] | None = None,
    containers: list[Json] | None = None,
    conditions: list[Json] | None = None,
    deleting: bool = False,
    reason: str | None = None,
    message: str | None = None,
    start: bool = True,
) -> Json:
    """A whole pod of the build, with `status` overridden piece by piece."""
    metadata: Json = {
        "name": "web-7",
        "namespace": "ci",
        "uid": "6f1c1e7e-2b7c-4bb4-9a44-0e3c0e5c2d10",
        "resourceVersion": "4711",
        "creationTimestamp": CREATED,
        "labels": {
            "app.kubernetes.io/managed-by": "podci",
            "podci.io/build": "web-7",
            "podci.io/attempt": "1",
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T12:09:00Z"
        metadata["deletionGracePeriodSeconds"] = 30
    status: Json = {"phase": phase, "qosClass": "Burstable", "conditions": conditions or [SCHEDULED]}
    if start:
        status.update({"hostIP": "10.0.0.4", "podIP": "10.244.1.9", "startTime": STARTED})
    if init is not None:
        status["initContainerStatuses"] = init
    if containers is not None:
        status["containerStatuses"] = containers
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "initContainers": [{"name": CHECKOUT_CONTAINER, "image": IMAGES[CHECKOUT_CONTAINER]}],
            "containers": [{"name": n, "image": IMAGES[n]} for n in ("tests", "db", AGENT_CONTAINER)],
            "restartPolicy": "Never",
            "nodeName": "node-b" if start else None,
        },
        "status": status,
    }


CHECKED_OUT = [terminated(CHECKOUT_CONTAINER, 0)]


def main(tests: Json | None = None, db: Json | None = None, agent: Json | None = None) -> list[Json]:
    return [
        tests or running("tests", ready=True),
        db or running("db", ready=True),
        agent or running(AGENT_CONTAINER),
    ]


ALL_READY = main(agent=running(AGENT_CONTAINER, ready=True))
DONE = main(agent=terminated(AGENT_CONTAINER, 0))
UNSCHEDULABLE = (
    "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
    "2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
    "2 No preemption victims found for incoming pod."
)
PULL_MESSAGE = (
    'failed to pull and unpack image "docker.io/library/postgres:61": failed to resolve reference '
    '"docker.io/library/postgres:61": docker.io/library/postgres:61: not found'
)
GIT_LOG = (
    "Initialized empty Git repository in /workspace/.git/\nfatal: couldn't find remote ref feature/nope\n"
)

CASES: list[tuple[str, Json | None, RepoConfig, PodState]] = [
    # --- lost ---------------------------------------------------------------------------------------
    ("gone", None, FILE, PodState("lost", "pod deleted")),
    (
        "deleting",
        pod(init=CHECKED_OUT, containers=main(), deleting=True),
        FILE,
        PodState("lost", "pod deleted"),
    ),
    (
        "evicted-memory",
        pod(
            "Failed",
            init=CHECKED_OUT,
            containers=main(tests=terminated("tests", 137), db=terminated("db", 137)),
            reason="Evicted",
            message="The node was low on resource: memory. Threshold quantity: 100Mi, available: 91Mi. ",
            conditions=[
                SCHEDULED,
                condition(
                    "DisruptionTarget",
                    "True",
                    "TerminationByKubelet",
                    "The node was low on resource: memory.",
                ),
            ],
        ),
        FILE,
        PodState(
            "lost",
            "pod evicted: The node was low on resource: memory. Threshold quantity: 100Mi, available: 91Mi.",
        ),
    ),
    (
        "node-graceful-shutdown",
        pod(
            "Failed",
            init=CHECKED_OUT,
            containers=main(tests=terminated("tests", 143), agent=terminated(AGENT_CONTAINER, 143)),
            reason="Terminated",
            message="Pod was terminated in response to imminent node shutdown.",
            conditions=[SCHEDULED, condition("DisruptionTarget", "True", "TerminationByKubelet")],
        ),
        FILE,
        PodState(
            "lost",
            "node shut down: Pod was terminated in response to imminent node shutdown.",
            node_loss=True,
        ),
    ),
    (
        "node-shutdown-admission",
        pod("Failed", reason="NodeShutdown", message="Pod was rejected as the node is shutting down."),
        FILE,
        PodState("lost", "node shut down: Pod was rejected as the node is shutting down.", node_loss=True),
    ),
    (
        "node-lost",
        pod(
            "Unknown",
            init=CHECKED_OUT,
            containers=main(),
            reason="NodeLost",
            message="Node node-b which was running pod web-7 is unresponsive",
        ),
        FILE,
        PodState(
            "lost", "node lost: Node node-b which was running pod web-7 is unresponsive", node_loss=True
        ),
    ),
    (
        "taint-manager",
        pod(
            init=CHECKED_OUT,
            containers=main(),
            deleting=True,
            conditions=[
                SCHEDULED,
                condition(
                    "DisruptionTarget",
                    "True",
                    "DeletionByTaintManager",
                    "Taint manager: deleting due to NoExecute taint",
                ),
            ],
        ),
        FILE,
        PodState(
            "lost",
            "pod disrupted: DeletionByTaintManager: Taint manager: deleting due to NoExecute taint",
            node_loss=True,
        ),
    ),
    (
        "node-object-gone",
        pod(
            "Failed",
            init=CHECKED_OUT,
            containers=main(),
            conditions=[
                SCHEDULED,
                condition("DisruptionTarget", "True", "DeletionByPodGC", "PodGC: node no longer exists"),
            ],
        ),
        FILE,
        PodState("lost", "pod disrupted: DeletionByPodGC: PodGC: node no longer exists", node_loss=True),
    ),
    (
        "preempted",
        pod(
            init=CHECKED_OUT,
            containers=main(),
            deleting=True,
            conditions=[
                SCHEDULED,
                condition(
                    "DisruptionTarget",
                    "True",
                    "PreemptionByScheduler",
                    "default-scheduler: preempting to accommodate a higher priority pod",
                ),
            ],
        ),
        FILE,
        PodState(
            "lost",
            "pod disrupted: PreemptionByScheduler: "
            "default-scheduler: preempting to accommodate a higher priority pod",
        ),
    ),
    (
        "drained",
        pod(
            init=CHECKED_OUT,
            containers=main(),
            deleting=True,
            conditions=[
                SCHEDULED,
                condition("DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"),
            ],
        ),
        FILE,
        PodState("lost", "pod disrupted: EvictionByEvictionAPI: Eviction API: evicting", node_loss=True),
    ),
    (
        "rejected-at-admission",
        pod(
            "Failed",
            reason="OutOfmemory",
            message="Pod was rejected: Node didn't have enough resource: memory, "
            "requested: 4294967296, used: 0, capacity: 2147483648",
        ),
        FILE,
        PodState(
            "lost",
            "pod rejected by its node: OutOfmemory: Pod was rejected: Node didn't have enough resource: "
            "memory, requested: 4294967296, used: 0, capacity: 2147483648",
        ),
    ),
    (
        "disruption-target-false",  # a condition that was withdrawn is no loss
        pod(
            init=CHECKED_OUT,
            containers=ALL_READY,
            conditions=[SCHEDULED, condition("DisruptionTarget", "False", "PreemptionByScheduler")],
        ),
        FILE,
        PodState("setup_done", "setup complete"),
    ),
    # --- unscheduled ----------------------------------------------------------------------------------
    (
        "unschedulable",
        pod(
            "Pending",
            start=False,
            conditions=[
                condition("PodScheduled", "False", "Unschedulable", UNSCHEDULABLE, at="2024-05-01T12:00:01Z")
            ],
        ),
        FILE,
        PodState("unscheduled", f"FailedScheduling: {UNSCHEDULABLE}"),
    ),
    (
        "scheduling-gated",
        pod(
            "Pending",
            start=False,
            conditions=[
                condition(
                    "PodScheduled",
                    "False",
                    "SchedulingGated",
                    "Scheduling is blocked due to non-empty scheduling gates",
                )
            ],
        ),
        FILE,
        PodState("unscheduled", "SchedulingGated: Scheduling is blocked due to non-empty scheduling gates"),
    ),
    # --- image pulls ------------------------------------------------------------------------------------
    (
        "pull-main-container",
        pod(
            "Pending",
            init=CHECKED_OUT,
            containers=main(db=waiting("db", "ErrImagePull", PULL_MESSAGE)),
            conditions=[SCHEDULED, condition("Ready", "False", "ContainersNotReady")],
        ),
        FILE,
        PodState(
            "pulling_failed",
            f"cannot pull image `postgres:16` for container `db`: ErrImagePull: {PULL_MESSAGE}",
        ),
    ),
    (
        "pull-backoff-init",
        pod(
            "Pending",
            init=[
                waiting(CHECKOUT_CONTAINER, "ImagePullBackOff", 'Back-off pulling image "alpine/git:2.45.2"')
            ],
            containers=[waiting("tests"), waiting("db"), waiting(AGENT_CONTAINER)],
        ),
        FILE,
        PodState(
            "pulling_failed",
            "cannot pull image `alpine/git:2.45.2` for container `podci-checkout`: ImagePullBackOff: "
            'Back-off pulling image "alpine/git:2.45.2"',
        ),
    ),
    (
        "invalid-image-name",
        pod(
            "Pending",
            init=CHECKED_OUT,
            containers=main(
                tests=waiting(
                    "tests",
                    "InvalidImageName",
                    'Failed to apply default image tag "Python:3": couldn\'t parse image name',
                ),
            ),
        ),
        FILE,
        PodState(
            "pulling_failed",
            "cannot pull image `python:3.12-slim` for container `tests`: InvalidImageName: "
            'Failed to apply default image tag "Python:3": couldn\'t parse image name',
        ),
    ),
    # --- tests done -------------------------------------------------------------------------------------
    (
        "agent-exited",
        pod("Running", init=CHECKED_OUT, containers=DONE),
        FILE,
        PodState("tests_done", "tests finished"),
    ),
    (
        "agent-exited-nonzero",  # the tests' code is in the log; the agent's own exit does not matter
        pod("Running", init=CHECKED_OUT, containers=main(agent=terminated(AGENT_CONTAINER, 1))),
        READY,
        PodState("tests_done", "tests finished"),
    ),
    (
        "done-then-deleted",  # the result is in the log already: no relaunch
        pod("Running", init=CHECKED_OUT, containers=DONE, deleting=True),
        FILE,
        PodState("tests_done", "tests finished"),
    ),
    (
        "done-then-evicted",
        pod(
            "Failed",
            init=CHECKED_OUT,
            containers=DONE,
            reason="Evicted",
            message="The node was low on resource: ephemeral-storage.",
        ),
        FILE,
        PodState("tests_done", "tests finished"),
    ),
    (
        "done-while-a-service-died",  # a service dying after the tests ended changes nothing
        pod(
            "Running",
            init=CHECKED_OUT,
            containers=main(db=terminated("db", 1), agent=terminated(AGENT_CONTAINER, 0)),
        ),
        FILE,
        PodState("tests_done", "tests finished"),
    ),
    # --- failed -----------------------------------------------------------------------------------------
    (
        "service-oom",
        pod("Running", init=CHECKED_OUT, containers=main(db=terminated("db", 137, "OOMKilled"))),
        FILE,
        PodState("failed", "container `db` was OOMKilled"),
    ),
    (
        "test-container-exited",
        pod("Running", init=CHECKED_OUT, containers=main(tests=terminated("tests", 3))),
        READY,
        PodState("failed", "container `tests` exited with code 3"),
    ),
    (
        "exited-with-message",
        pod(
            "Running",
            init=CHECKED_OUT,
            containers=main(db=terminated("db", 1, message="FATAL: data directory has wrong ownership\n")),
        ),
        READY,
        PodState("failed", "container `db` exited with code 1: FATAL: data directory has wrong ownership"),
    ),
    (
        "checkout-failed",
        pod(
            "Failed",
            init=[terminated(CHECKOUT_CONTAINER, 128, message=GIT_LOG)],
            containers=[waiting("tests"), waiting("db"), waiting(AGENT_CONTAINER)],
            conditions=[
                SCHEDULED,
                condition(
                    "Initialized",
                    "False",
                    "ContainersNotInitialized",
                    "containers with incomplete status: [podci-checkout]",
                ),
            ],
        ),
        FILE,
        PodState(
            "failed", "the checkout failed: fatal: couldn't find remote ref feature/nope (exit code 128)"
        ),
    ),
    (
        "checkout-failed-with-hints-after-the-cause",
        pod(
            "Failed",
            init=[
                terminated(
                    CHECKOUT_CONTAINER,
                    128,
                    message=(
                        "fatal: '/srv/repo' does not appear to be a git repository\n"
                        "fatal: Could not read from remote repository.\n\n"
                        "Please make sure you have the correct access rights\nand the repository exists.\n"
                    ),
                )
            ],
            containers=[waiting("tests")],
        ),
        FILE,
        PodState(
            "failed",
            "the checkout failed: fatal: '/srv/repo' does not appear to be a git repository (exit code 128)",
        ),
    ),
    (
        "checkout-failed-silently",
        pod("Failed", init=[terminated(CHECKOUT_CONTAINER, 1)], containers=[waiting("tests")]),
        FILE,
        PodState("failed", "the checkout failed: Error (exit code 1)"),
    ),
    (
        "template-init-failed",
        pod(
            "Failed",
            init=[*CHECKED_OUT, _status("migrate", {"terminated": {"exitCode": 2, "reason": "Error"}})],
            containers=[waiting("tests")],
        ),
        FILE,
        PodState("failed", "init container `migrate` exited with code 2"),
    ),
    (
        "deadline-exceeded",
        pod(
            "Failed",
            init=CHECKED_OUT,
            containers=main(),
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        ),
        FILE,
        PodState(
            "failed",
            "the pod ran past its activeDeadlineSeconds: "
            "Pod was active on the node longer than the specified deadline",
        ),
    ),
    # --- setup ------------------------------------------------------------------------------------------
    (
        "file-setup-agent-ready",
        pod(
            init=CHECKED_OUT,
            containers=main(db=running("db", ready=False), agent=running(AGENT_CONTAINER, ready=True)),
        ),
        FILE,
        PodState("setup_done", "setup complete"),
    ),
    (
        "file-setup-waiting",
        pod(init=CHECKED_OUT, containers=main()),
        FILE,
        PodState("starting", "waiting for `.podci/ready` in the workspace"),
    ),
    (
        "ready-setup-all-ready",  # the agent has no probe: ready as soon as it runs
        pod(init=CHECKED_OUT, containers=ALL_READY),
        READY,
        PodState("setup_done", "setup complete"),
    ),
    (
        "ready-setup-one-not-ready",
        pod(init=CHECKED_OUT, containers=main(db=running("db", ready=False))),
        READY,
        PodState("starting", "container `db` is not ready yet"),
    ),
    (
        "ready-setup-one-exited-cleanly",
        pod(init=CHECKED_OUT, containers=main(db=terminated("db", 0))),
        READY,
        PodState("starting", "container `db` has exited and will never be ready"),
    ),
    # --- starting ---------------------------------------------------------------------------------------
    (
        "just-created",
        pod("Pending", start=False, conditions=[]),
        FILE,
        PodState("starting", "waiting for the pod to start"),
    ),
    (
        "checkout-running",
        pod(
            "Pending",
            init=[running(CHECKOUT_CONTAINER)],
            containers=[waiting("tests"), waiting("db"), waiting(AGENT_CONTAINER)],
        ),
        FILE,
        PodState("starting", "init container `podci-checkout` is running"),
    ),
    (
        "creating",
        pod("Pending", init=CHECKED_OUT, containers=main(db=waiting("db", "ContainerCreating"))),
        READY,
        PodState("starting", "container `db` is waiting: ContainerCreating"),
    ),
    (
        "config-error",
        pod(
            "Pending",
            init=CHECKED_OUT,
            containers=main(db=waiting("db", "CreateContainerConfigError", 'secret "db-password" not found')),
        ),
        READY,
        PodState(
            "starting",
            'container `db` is waiting: CreateContainerConfigError: secret "db-password" not found',
        ),
    ),
]


@pytest.mark.parametrize(
    ("pod_json", "config", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify(pod_json: Json | None, config: RepoConfig, expected: PodState) -> None:
    assert classify(pod_json, config) == expected


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("taint-manager", True),
        ("node-object-gone", True),
        ("evicted-memory", False),
        ("checkout-running", False),
    ],
)
def test_a_deleted_pod_is_a_node_loss_when_its_last_state_says_so(case: str, expected: bool) -> None:
    """The DELETED event's last state decides, as the pod itself would have (a spot node's pod is
    often deleted before any look); without it, a deletion is a plain one."""
    last = next(pod_json for name, pod_json, _, _ in CASES if name == case)
    assert last is not None
    assert deleted(last).kind == "lost" and deleted(last).node_loss is expected
    assert deleted(None) == PodState("lost", "pod deleted")


def test_every_kind_is_covered_by_the_table() -> None:
    kinds = {c[3].kind for c in CASES}
    assert kinds == {
        "unscheduled",
        "pulling_failed",
        "starting",
        "setup_done",
        "tests_done",
        "lost",
        "failed",
    }


def test_a_pod_without_a_creation_stamp_is_starting() -> None:
    unstamped = pod("Pending", start=False, conditions=[])
    del unstamped["metadata"]["creationTimestamp"]
    assert classify(unstamped, FILE) == PodState("starting", "waiting for the pod to start")


# --- the agent's log --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "stripped"),
    [
        ("test_a ... ok\nOK\nPODCI-EXIT 0\n", 0, "test_a ... ok\nOK\n"),
        ("FAILED (failures=2)\nPODCI-EXIT 1\n", 1, "FAILED (failures=2)\n"),
        ("PODCI-EXIT 137", 137, ""),
        ("no newline at the endPODCI-EXIT 2\n", 2, "no newline at the end"),
        ("PODCI-EXIT 0\nmore output\n", None, "PODCI-EXIT 0\nmore output\n"),  # not the last line
        ("killed before the end\n", None, "killed before the end\n"),
        ("PODCI-EXIT \n", None, "PODCI-EXIT \n"),  # tests.exit was empty
        ("", None, ""),
    ],
)
def test_agent_log(text: str, code: int | None, stripped: str) -> None:
    assert exit_code_from_agent_log(text) == code
    assert strip_exit_mark(text) == stripped


# (what changed, before, after, whether the watch wakes the build's step)
WAKES: list[tuple[str, Json, Json, bool]] = [
    # the checkout container running is when the worker delivers the code; its end closes that window
    ("the checkout starts", pod("Pending", init=[waiting(CHECKOUT_CONTAINER)]),
     pod("Pending", init=[running(CHECKOUT_CONTAINER)]), True),
    ("the checkout ends well", pod("Pending", init=[running(CHECKOUT_CONTAINER)]),
     pod("Pending", init=CHECKED_OUT), False),
    ("the pod is scheduled", pod("Pending", conditions=[condition("PodScheduled", "False")], start=False),
     pod("Pending", conditions=[condition("PodScheduled", "True")], start=False), False),
    ("another init container starts", pod("Pending", init=[*CHECKED_OUT, waiting("migrate")]),
     pod("Pending", init=[*CHECKED_OUT, running("migrate")]), False),
    ("the checkout fails", pod("Pending", init=[running(CHECKOUT_CONTAINER)]),
     pod("Pending", init=[terminated(CHECKOUT_CONTAINER, 128)]), True),
    ("a container starts, not ready", pod(containers=main(tests=waiting("tests", "ContainerCreating"))),
     pod(containers=main(tests=running("tests"))), False),
    ("one service of two becomes ready",
     pod(containers=main(tests=running("tests"), db=running("db"))),
     pod(containers=main(tests=running("tests", ready=True), db=running("db"))), False),
    ("the last service becomes ready", pod(containers=main(db=running("db"))), pod(containers=main()), True),
    ("the agent becomes ready", pod(containers=main()), pod(containers=ALL_READY), True),
    ("the agent ends", pod(containers=ALL_READY), pod(containers=DONE), True),
    ("an image cannot be pulled", pod(containers=main(db=waiting("db", "ContainerCreating"))),
     pod(containers=main(db=waiting("db", "ErrImagePull"))), True),
    ("the scheduler gives up", pod("Pending", conditions=[condition("PodScheduled", "False")], start=False),
     pod("Pending", conditions=[condition("PodScheduled", "False", "Unschedulable")], start=False), True),
    ("evicted", pod(containers=ALL_READY), pod("Failed", containers=ALL_READY, reason="Evicted"), True),
    ("deleted", pod(containers=ALL_READY), pod(containers=ALL_READY, deleting=True), True),
    ("only the resourceVersion moves", pod(containers=ALL_READY), pod(containers=ALL_READY), False),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after", "wakes"), [c[1:] for c in WAKES], ids=[c[0] for c in WAKES])
def test_the_watch_wakes_a_step_only_when_a_decision_can_change(
    before: Json, after: Json, wakes: bool
) -> None:
    assert (wake_signal(before) != wake_signal(after)) is wakes


@pytest.mark.parametrize(
    ("chunks", "out"),
    [([b"line 1\nli", b"ne 2\n", b"PODCI-EXIT 0\n"], [b"line 1\n", b"line 2\n"]),
     ([b"a\nPODCI-EXIT 3"], [b"a\n"]),  # the mark without its line end, at the very end
     ([b"no end"], [b"no end"]),  # a last line the tests left unended is still given out
     ([b"x\n", b"", b"PODCI-EXIT 1\ny\n"], [b"x\n", b"y\n"]),
     ([b"say PODCI-EXIT 0 here\n"], [b"say PODCI-EXIT 0 here\n"])],  # only a whole line is the mark
)  # fmt: skip
def test_the_live_test_log_leaves_out_the_agent_s_exit_mark(chunks: list[bytes], out: list[bytes]) -> None:
    assert list(without_exit_mark(chunks)) == out
