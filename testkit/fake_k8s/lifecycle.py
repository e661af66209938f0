"""The simulated scheduler and kubelet: what happens to a pod after it is created.

A real pod goes Pending -> scheduled -> init containers run and complete -> containers start -> they
become ready, and podci's agent container terminates once the tests have run. The backend decides
everything from the watch events these steps produce, so each step here changes the pod's status the
way the kubelet would and publishes one MODIFIED event.

One small clock drives all pods: a thread that pops due actions from a heap (under the cluster lock),
so that faults injected from the test thread and HTTP requests on uvicorn's loop see a consistent pod.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    BUILD_LABEL,
    CHECKOUT_CONTAINER,
    EXIT_MARK,
    STATE_DIR,
)

from . import workspace
from .nodes import Node, fitting, unschedulable_message

if TYPE_CHECKING:
    from .cluster import FakeCluster

Obj = dict[str, Any]

EVICTED_MESSAGE = "The node was low on resource: memory."
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."


def iso(at: datetime | None = None) -> str:
    """RFC 3339 in UTC with seconds, as the API server writes timestamps."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_in(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


@dataclass(frozen=True)
class SimSettings:
    """Delays in seconds (fast by default) and the simulated test run's result."""

    schedule_delay: float = 0.1  # created -> bound to a node
    start_delay: float = 0.05  # image pull and container start
    init_duration: float = 0.1  # how long each (non-sidecar) init container runs
    ready_delay: float = 0.1  # started -> ready, every container but the agent
    setup_delay: float = 0.2  # started -> ready, the agent (podci's "setup complete")
    test_duration: float = 0.3  # tests started (exec) -> agent terminates
    test_exit_code: int = 0
    test_output: str | None = None  # None: the test argv joined, then "OK"
    terminate_delay: float = 0.1  # deletionTimestamp set -> DELETED
    pvc_bind_delay: float = 0.05  # 0: a claim is Bound in the create answer already


@dataclass(eq=False)
class ContainerSim:
    name: str
    image: str
    kind: str  # "init", "sidecar" (init container with restartPolicy Always) or "main"
    state: str = "waiting"
    reason: str | None = "PodInitializing"
    message: str | None = None
    ready: bool = False
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str = ""
    pulled: bool = False
    log: str = ""
    spec: Obj = field(default_factory=dict)  # the container as the pod declares it

    def start(self) -> None:
        self.state, self.reason, self.message = "running", None, None
        self.started_at = iso()
        self.container_id = "containerd://" + secrets.token_hex(32)
        self.pulled = True
        if self.name != AGENT_CONTAINER:  # the agent prints nothing until the tests have finished
            self.log += f"{self.name} started\n"

    def terminate(self, code: int, reason: str, message: str | None = None) -> None:
        self.state, self.exit_code, self.reason, self.message = "terminated", code, reason, message
        self.ready = False
        self.finished_at = iso()

    def render(self) -> Obj:
        state: Obj
        if self.state == "waiting":
            state = {"waiting": {"reason": self.reason or "ContainerCreating"}}
            if self.message:
                state["waiting"]["message"] = self.message
        elif self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        else:
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": self.reason,
                    "startedAt": self.started_at or self.finished_at,
                    "finishedAt": self.finished_at,
                    "containerID": self.container_id,
                }
            }
            if self.message:
                state["terminated"]["message"] = self.message
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": image_id(self.image) if self.pulled else "",
            "ready": self.ready,
            "restartCount": 0,
            "started": self.state == "running",
            "state": state,
            "lastState": {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def image_id(image: str) -> str:
    repo = re.sub(r":[^:/]+$", "", image.split("@")[0])
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _qos(containers: list[Obj]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        if not all(k in limits for k in ("cpu", "memory")):
            return "Burstable"
        if any(requests.get(k, limits[k]) != limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


@dataclass(eq=False)
class PodSim:
    """What the kubelet knows about one pod; `render_status` turns it into `pod.status`."""

    namespace: str
    name: str
    uid: str
    build: str | None
    restart_policy: str
    init: list[ContainerSim]
    main: list[ContainerSim]
    claims: list[str]
    qos: str
    placement: Obj  # nodeSelector and tolerations: what the scheduler's filters read
    node: str | None = None
    host_ip: str = ""
    pod_ip: str = ""
    start_time: str = ""
    unschedulable: str | None = None  # the scheduler's message while it cannot place the pod
    override: tuple[str, str, str] | None = None  # phase, reason, message (eviction, node shutdown)
    disruption: tuple[str, str] | None = None  # DisruptionTarget reason, message
    node_lost: bool = False
    frozen: bool = False  # no simulated progress any more (evicted, terminating, node gone)
    tests_started: bool = False
    lose_counted: bool = False
    printed: int = 0  # characters of the test output the agent has printed so far
    reported_unschedulable: str | None = None
    cond_times: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_pod(cls, pod: Obj) -> PodSim:
        spec, meta = pod["spec"], pod["metadata"]
        init = [
            ContainerSim(
                c["name"],
                c.get("image", ""),
                "sidecar" if c.get("restartPolicy") == "Always" else "init",
                spec=c,
            )
            for c in spec.get("initContainers") or []
        ]
        main = [
            ContainerSim(c["name"], c.get("image", ""), "main", spec=c) for c in spec.get("containers") or []
        ]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes") or []
            if v.get("persistentVolumeClaim")
        ]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            build=(meta.get("labels") or {}).get(BUILD_LABEL),
            restart_policy=spec.get("restartPolicy", "Always"),
            init=init,
            main=main,
            claims=claims,
            qos=_qos(list(spec.get("containers") or []) + list(spec.get("initContainers") or [])),
            placement={k: copy.deepcopy(spec[k]) for k in ("nodeSelector", "tolerations") if k in spec},
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def containers(self) -> list[ContainerSim]:
        return self.init + self.main

    def container(self, name: str) -> ContainerSim | None:
        return next((c for c in self.containers if c.name == name), None)

    def phase(self) -> str:
        """The kubelet's getPhase(), reduced to what is simulated (no restarts, no unknown state)."""
        if self.override:
            return self.override[0]
        if self.node is None:
            return "Pending"
        for c in self.init:
            if c.kind == "init" and c.state == "terminated" and c.exit_code != 0:
                if self.restart_policy == "Never":
                    return "Failed"
                return "Pending"
        if any(c.kind == "init" and c.state != "terminated" for c in self.init):
            return "Pending"
        waiting = sum(c.state == "waiting" for c in self.main)
        running = sum(c.state == "running" for c in self.main)
        stopped = [c for c in self.main if c.state == "terminated"]
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if self.restart_policy == "Always":
                return "Running"
            if all(c.exit_code == 0 for c in stopped):
                return "Succeeded"
            return "Failed" if self.restart_policy == "Never" else "Running"
        return "Pending"

    def _condition(
        self, kind: str, status: str, reason: str | None = None, message: str | None = None
    ) -> Obj:
        previous = self.cond_times.get(kind)
        if previous is None or previous[0] != status:
            self.cond_times[kind] = (status, iso())
        cond: Obj = {"type": kind, "status": status, "lastTransitionTime": self.cond_times[kind][1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def conditions(self) -> list[Obj]:
        conds: list[Obj] = []
        if self.disruption:
            conds.append(self._condition("DisruptionTarget", "True", *self.disruption))
        if self.node is None:
            if self.unschedulable:
                conds.append(self._condition("PodScheduled", "False", "Unschedulable", self.unschedulable))
            else:
                conds.append(self._condition("PodScheduled", "False"))
            return conds
        running_anything = any(c.state == "running" for c in self.containers)
        conds.append(
            self._condition(
                "PodReadyToStartContainers", "True" if not self.frozen or running_anything else "False"
            )
        )
        incomplete = [
            c.name
            for c in self.init
            if (c.kind == "init" and not (c.state == "terminated" and c.exit_code == 0))
            or (c.kind == "sidecar" and c.state == "waiting")
        ]
        if incomplete:
            conds.append(
                self._condition(
                    "Initialized",
                    "False",
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                )
            )
        else:
            conds.append(self._condition("Initialized", "True"))
        unready = [c.name for c in self.main + [s for s in self.init if s.kind == "sidecar"] if not c.ready]
        message = f"containers with unready status: [{' '.join(unready)}]"
        if self.node_lost:
            conds.append(self._condition("Ready", "False"))
        elif unready:
            conds.append(self._condition("Ready", "False", "ContainersNotReady", message))
        else:
            conds.append(self._condition("Ready", "True"))
        if unready:
            conds.append(self._condition("ContainersReady", "False", "ContainersNotReady", message))
        else:
            conds.append(self._condition("ContainersReady", "True"))
        conds.append(self._condition("PodScheduled", "True"))
        return conds

    def render_status(self) -> Obj:
        status: Obj = {"phase": self.phase(), "conditions": self.conditions(), "qosClass": self.qos}
        if self.override:
            status["reason"], status["message"] = self.override[1], self.override[2]
        if self.node is not None:
            status.update(
                hostIP=self.host_ip,
                hostIPs=[{"ip": self.host_ip}],
                podIP=self.pod_ip,
                podIPs=[{"ip": self.pod_ip}],
                startTime=self.start_time,
            )
            if self.init:
                status["initContainerStatuses"] = [c.render() for c in self.init]
            status["containerStatuses"] = [c.render() for c in self.main]
        return status


Action = Callable[[], None]


class Simulator:
    """The clock thread and every simulated step; all methods run with the cluster lock held."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.pods: dict[tuple[str, str], PodSim] = {}
        self._heap: list[tuple[float, int, PodSim | None, bool, Action]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(cluster.lock)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._ips = itertools.count(2)
        self._turns = itertools.count()  # round robin over the nodes a pod fits

    # -- the clock -----------------------------------------------------------------------------------

    def at(self, delay: float, sim: PodSim | None, action: Action, *, even_frozen: bool = False) -> None:
        """Run `action` after `delay` seconds, unless the pod is gone (or frozen) by then."""
        with self._wake:
            heapq.heappush(
                self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), sim, even_frozen, action)
            )
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="fake-k8s-clock", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                while self._heap and self._heap[0][0] <= time.monotonic() and not self._stopped:
                    _, _, sim, even_frozen, action = heapq.heappop(self._heap)
                    if sim is not None and (
                        self.pods.get(sim.key) is not sim or (sim.frozen and not even_frozen)
                    ):
                        continue
                    try:
                        action()
                    except Exception:
                        self.cluster.problems.append("simulator step failed:\n" + traceback.format_exc())
                delay = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                self._wake.wait(timeout=min(max(delay, 0.0), 1.0))

    def run_until(self, moment: float, timeout: float = 60) -> None:
        """Return once the clock has passed `moment` and every action due by then has run, however
        long a busy machine takes for that: tests wait for the simulation, not for wall time."""
        deadline = time.monotonic() + timeout

        def behind() -> bool:
            return time.monotonic() < moment or bool(self._heap and self._heap[0][0] <= moment)

        with self._wake:
            while not self._stopped and behind():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the simulation did not reach {moment:.1f} within {timeout:g} s")
                self._wake.notify()
                self._wake.wait(timeout=0.05)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, sim: PodSim) -> None:
        """Write the rendered status into the stored pod; a MODIFIED event only when it changed."""
        obj = self.cluster.store.get("pods", sim.namespace, sim.name)
        if obj is None or obj["metadata"].get("uid") != sim.uid:
            return
        new = copy.deepcopy(obj)
        new["status"] = sim.render_status()
        if sim.node is not None:
            new["spec"]["nodeName"] = sim.node
        if new != obj:
            self.cluster.store.put("pods", new, "MODIFIED")

    # -- the lifecycle -------------------------------------------------------------------------------

    def prepare(self, pod: Obj) -> PodSim:
        """Build the simulation of a pod about to be stored, and give it its initial status."""
        sim = PodSim.from_pod(pod)
        if pod["spec"].get("nodeName"):  # bound by the creator: no scheduler involved
            self._bind(sim, pod["spec"]["nodeName"])
        pod["status"] = sim.render_status()
        return sim

    def begin(self, sim: PodSim) -> None:
        self.pods[sim.key] = sim
        settings = self.cluster.settings_for(sim.build)
        if sim.node is None:
            self.at(settings.schedule_delay, sim, lambda: self._schedule(sim))
        else:
            self._next_init(sim, 0, settings.start_delay)

    def _bind(self, sim: PodSim, node: str) -> None:
        sim.node = node
        sim.host_ip = self.cluster.node_address(node)
        ip = next(self._ips)
        sim.pod_ip = f"10.244.{ip // 250}.{ip % 250 + 2}"
        sim.start_time = iso()

    def _why_unschedulable(self, sim: PodSim) -> str | None:
        if sim.build is not None and sim.build in self.cluster.unschedulable_builds:
            return self.cluster.unschedulable_builds[sim.build]
        for claim in sim.claims:
            pvc = self.cluster.store.get("persistentvolumeclaims", sim.namespace, claim)
            if pvc is None:
                return f'persistentvolumeclaim "{claim}" not found'
            if pvc["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim}" is being deleted'
            if (pvc.get("status") or {}).get("phase") != "Bound":
                nodes = len(self.cluster.nodes)
                return f"0/{nodes} nodes are available: pod has unbound immediate PersistentVolumeClaims."
        if not fitting(sim.placement, self.cluster.nodes):
            return unschedulable_message(sim.placement, self.cluster.nodes)
        return None

    def _pick_node(self, sim: PodSim) -> Node:
        """The next of the nodes the pod fits, in turn: with plain nodes, plain round robin."""
        fits = fitting(sim.placement, self.cluster.nodes)
        return fits[next(self._turns) % len(fits)]

    def _schedule(self, sim: PodSim) -> None:
        settings = self.cluster.settings_for(sim.build)
        blocked = self._why_unschedulable(sim)
        if blocked:
            sim.unschedulable = blocked
            if sim.reported_unschedulable != blocked:
                sim.reported_unschedulable = blocked
                self.cluster.record_event(sim, "Warning", "FailedScheduling", blocked, "default-scheduler")
            self.publish(sim)
            self.at(0.05, sim, lambda: self._schedule(sim))  # the scheduler retries
            return
        sim.unschedulable = None
        node = self._pick_node(sim).name
        self._bind(sim, node)
        self.cluster.record_event(
            sim,
            "Normal",
            "Scheduled",
            f"Successfully assigned {sim.namespace}/{sim.name} to {node}",
            "default-scheduler",
        )
        self.publish(sim)
        self._next_init(sim, 0, settings.start_delay)

    def _next_init(self, sim: PodSim, index: int, delay: float) -> None:
        if index < len(sim.init):
            self.at(delay, sim, lambda: self._start_init(sim, index))
        else:
            self.at(delay, sim, lambda: self._start_main(sim))

    def _pull_fails(self, sim: PodSim, container: ContainerSim) -> bool:
        images = self.cluster.failing_images.get(sim.build or "", set())
        if container.image not in images:
            return False
        container.state, container.reason = "waiting", "ErrImagePull"
        container.message = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{container.image}": '
            f'failed to resolve reference "{container.image}": not found'
        )
        self.cluster.record_event(
            sim,
            "Warning",
            "Failed",
            f'Failed to pull image "{container.image}": {container.message}',
            "kubelet",
        )
        settings = self.cluster.settings_for(sim.build)
        self.at(max(settings.start_delay, 0.05), sim, lambda: self._back_off(sim, container))
        return True

    def _back_off(self, sim: PodSim, container: ContainerSim) -> None:
        if container.state == "waiting" and container.reason == "ErrImagePull":
            container.reason, container.message = (
                "ImagePullBackOff",
                f'Back-off pulling image "{container.image}"',
            )
            self.cluster.record_event(sim, "Normal", "BackOff", container.message, "kubelet")
            self.publish(sim)

    def _start_init(self, sim: PodSim, index: int) -> None:
        settings = self.cluster.settings_for(sim.build)
        container = sim.init[index]
        if self._pull_fails(sim, container):
            self.publish(sim)
            return
        if index == 0:
            self._make_dirs(sim)
        if self._refuses_to_start(sim, container):
            return
        container.start()
        self.publish(sim)
        if container.kind == "sidecar":
            self._ready_later(sim, container)
            self._next_init(sim, index + 1, settings.start_delay)
        elif container.name == CHECKOUT_CONTAINER and not workspace.already_checked_out(
            self.cluster, sim, container
        ):
            self._check_out(sim, container, index)
        else:
            self.at(settings.init_duration, sim, lambda: self._finish_init(sim, index))

    def _check_out(self, sim: PodSim, container: ContainerSim, index: int) -> None:
        """Clone delivery completes after a while; bundle delivery waits for the worker's code."""
        settings = self.cluster.settings_for(sim.build)
        if workspace.checkout_mode(container) == "clone":
            files = self.cluster.files.setdefault(self.cluster.fs_key(sim), {})
            files[f"{workspace.workspace_of(container)}/{STATE_DIR}/checkout.done"] = ""
            self.at(settings.init_duration, sim, lambda: self._finish_init(sim, index))
            return
        if self.cluster.bundles.get(self.cluster.fs_key(sim)) is not None:
            self.code_arrived(sim, container)
            return
        wait = float(workspace.env_of(container.spec).get("CODE_WAIT") or 300)

        def never_came() -> None:
            if container.state == "running" and not workspace.already_checked_out(
                self.cluster, sim, container
            ):
                message = f"fatal: the code did not arrive from the podci worker within {wait:g} s\n"
                container.log += message
                container.terminate(1, "Error", message)
                self.publish(sim)

        self.at(wait, sim, never_came)

    def code_arrived(self, sim: PodSim, container: ContainerSim) -> None:
        """The bundle is on the volume: check the merge out of it (the real git), then complete."""
        settings = self.cluster.settings_for(sim.build)
        index = sim.init.index(container)

        def unpack() -> None:
            if container.state != "running":
                return
            bundle = self.cluster.bundles.get(self.cluster.fs_key(sim), b"")
            error = workspace.extract(self.cluster, sim, container, bundle)
            if error is None:
                self._finish_init(sim, index)
                return
            container.log += error
            container.terminate(128, "Error", error)
            self.publish(sim)

        self.at(settings.init_duration, sim, unpack)

    def _make_dirs(self, sim: PodSim) -> None:
        pod = self.cluster.store.get("pods", sim.namespace, sim.name)
        if pod is not None:
            workspace.make_dirs(self.cluster, sim, pod)

    def _refuses_to_start(self, sim: PodSim, container: ContainerSim) -> bool:
        """A relative file with no `workingDir`: the image's working directory is `/`, where python
        finds no `service/counter.py` and exits at once, as it would on a real node."""
        missing = workspace.relative_file(container.spec) if container.spec.get("image") else None
        if missing is None:
            return False
        container.start()
        message = f"python3: can't open file '//{missing}': [Errno 2] No such file or directory\n"
        container.log += message
        container.terminate(2, "Error", message)
        self.publish(sim)
        return True

    def _finish_init(self, sim: PodSim, index: int) -> None:
        sim.init[index].terminate(0, "Completed")
        self.publish(sim)
        self._next_init(sim, index + 1, self.cluster.settings_for(sim.build).start_delay)

    def _start_main(self, sim: PodSim) -> None:
        if not sim.init:
            self._make_dirs(sim)
        for container in sim.main:
            if self._pull_fails(sim, container) or self._refuses_to_start(sim, container):
                continue
            container.start()
            if workspace.is_cleanup(container):
                self._clean_later(sim, container)
            else:
                self._ready_later(sim, container)
        self.publish(sim)

    def _clean_later(self, sim: PodSim, container: ContainerSim) -> None:
        self.at(self.cluster.settings_for(sim.build).init_duration, sim, lambda: self._clean(sim, container))

    def _clean(self, sim: PodSim, container: ContainerSim) -> None:
        pod = self.cluster.store.get("pods", sim.namespace, sim.name)
        if pod is not None:
            workspace.clean(self.cluster, sim, pod, container)
        container.terminate(0, "Completed")
        self.publish(sim)

    def _ready_later(self, sim: PodSim, container: ContainerSim) -> None:
        settings = self.cluster.settings_for(sim.build)
        delay = settings.setup_delay if container.name == AGENT_CONTAINER else settings.ready_delay
        self.at(delay, sim, lambda: self._ready(sim, container))

    def _ready(self, sim: PodSim, container: ContainerSim) -> None:
        if container.state == "running" and self._probe_refused(sim, container):
            return
        if container.state == "running":
            container.ready = True
            self.publish(sim)
            if all(c.ready for c in sim.main):
                self.cluster.marks.append((time.time(), sim.build, "ready"))

    def _probe_refused(self, sim: PodSim, container: ContainerSim) -> bool:
        """A readiness probe on a port the container binds to 127.0.0.1 only: the kubelet dials the pod's
        IP and is refused, again and again (one event here), and the container never becomes ready."""
        port = workspace.probed_port(container.spec)
        loopback = (
            workspace.binds_loopback(container.spec)
            or (sim.build, container.name) in self.cluster.loopback_only
        )
        if port is None or not loopback:
            return False
        message = f"Readiness probe failed: dial tcp {sim.pod_ip}:{port}: connect: connection refused"
        self.cluster.record_event(sim, "Warning", "Unhealthy", message, "kubelet")
        return True

    # -- the test run --------------------------------------------------------------------------------

    def start_tests(self, sim: PodSim, workspace: str, argv: list[str]) -> bool:
        """START_TESTS_SCRIPT exec'd: start the simulated run once per pod (False if already started)."""
        files = self.cluster.files.setdefault(self.cluster.fs_key(sim), {})
        marker = f"{workspace.rstrip('/')}/{STATE_DIR}/tests.started"
        if sim.tests_started or (self.cluster.volume_markers and marker in files):
            return False
        sim.tests_started = True
        files[marker] = ""
        settings = self.cluster.settings_for(sim.build)
        self._print_as_it_runs(sim, argv)
        self.at(settings.test_duration, sim, lambda: self._finish_tests(sim, workspace, argv))
        plan = self.cluster.lose_plans.get(sim.build or "")
        if plan is not None and plan[0] > 0 and not sim.lose_counted:
            ways = plan[1]
            how = ways.pop(0) if len(ways) > 1 else ways[0]  # each loss its own way; the last repeats
            plan[0] -= 1
            sim.lose_counted = True
            self.at(min(0.05, settings.test_duration / 2), sim, lambda: self.lose(sim, how))
        return True

    @staticmethod
    def _output(settings: SimSettings, argv: list[str]) -> str:
        output = settings.test_output if settings.test_output is not None else " ".join(argv) + "\nOK"
        return output + "\n" if output and not output.endswith("\n") else output

    def _print_as_it_runs(self, sim: PodSim, argv: list[str]) -> None:
        """The agent prints the test log as it grows (AGENT_SCRIPT): here each line of the output
        appears in the agent's log at its share of `test_duration`, the last one as the tests end."""
        settings = self.cluster.settings_for(sim.build)
        lines = self._output(settings, argv).splitlines(keepends=True)
        for index in range(1, len(lines)):
            so_far = "".join(lines[:index])
            self.at(settings.test_duration * index / len(lines), sim, partial(self._print, sim, so_far))

    def _print(self, sim: PodSim, so_far: str) -> None:
        agent = sim.container(AGENT_CONTAINER)
        if agent is not None and agent.state == "running" and len(so_far) > sim.printed:
            agent.log += so_far[sim.printed :]
            sim.printed = len(so_far)

    def _finish_tests(self, sim: PodSim, workspace: str, argv: list[str]) -> None:
        settings = self.cluster.settings_for(sim.build)
        output = self._output(settings, argv)
        code = settings.test_exit_code
        files = self.cluster.files.setdefault(self.cluster.fs_key(sim), {})
        files[f"{workspace.rstrip('/')}/{STATE_DIR}/tests.log"] = output
        files[f"{workspace.rstrip('/')}/{STATE_DIR}/tests.exit"] = f"{code}\n"
        agent = sim.container(AGENT_CONTAINER)
        self.cluster.marks.append((time.time(), sim.build, "tests-finished"))
        if agent is not None and agent.state == "running":
            agent.log += output[sim.printed :] + f"{EXIT_MARK} {code}\n"
            agent.terminate(0, "Completed")
            self.publish(sim)

    # -- faults --------------------------------------------------------------------------------------

    def _kill_all(self, sim: PodSim, code: int) -> None:
        for container in sim.containers:
            if container.state == "running":
                container.terminate(code, "Error")

    def lose(self, sim: PodSim, how: str) -> None:
        {
            "evict": self.evict,
            "delete": self.delete_like_a_user,
            "lose_node": self.lose_node,
            "shutdown_node": self.shutdown_node,
        }[how](sim)

    def evict(self, sim: PodSim) -> None:
        sim.override = ("Failed", "Evicted", EVICTED_MESSAGE)
        sim.disruption = ("EvictionByEvictionAPI", "Eviction API: evicting")
        sim.frozen = True
        self._kill_all(sim, 137)
        self.cluster.record_event(sim, "Warning", "Evicted", EVICTED_MESSAGE, "kubelet")
        self.publish(sim)

    def shutdown_node(self, sim: PodSim) -> None:
        sim.override = ("Failed", "Terminated", SHUTDOWN_MESSAGE)
        sim.disruption = ("TerminationByKubelet", SHUTDOWN_MESSAGE)
        sim.frozen = True
        self._kill_all(sim, 143)
        self.publish(sim)

    def lose_node(self, sim: PodSim) -> None:
        if sim.node is not None:
            self.cluster.take_node_away(sim.node)
        sim.disruption = ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
        sim.node_lost = True
        sim.frozen = True
        self.publish(sim)
        self.begin_delete(sim, 30)

    def delete_like_a_user(self, sim: PodSim) -> None:
        self.begin_delete(sim, 30)

    def oom(self, sim: PodSim, container: ContainerSim) -> None:
        container.terminate(137, "OOMKilled")
        self.publish(sim)

    # -- deletion ------------------------------------------------------------------------------------

    def begin_delete(self, sim: PodSim, grace: int) -> Obj:
        """Graceful deletion: deletionTimestamp set (MODIFIED), then DELETED after `terminate_delay`."""
        store = self.cluster.store
        obj = store.get("pods", sim.namespace, sim.name)
        assert obj is not None
        if obj["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(obj)
        sim.frozen = True
        delay = self.cluster.settings_for(sim.build).terminate_delay
        if grace == 0 or delay <= 0:
            result = store.delete("pods", sim.namespace, sim.name)
            assert result is not None
            self._gone(sim)
            return result
        new = copy.deepcopy(obj)
        new["metadata"]["deletionTimestamp"] = iso_in(grace)
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        result = store.put("pods", new, "MODIFIED")
        running = [c.name for c in sim.containers if c.state == "running"]
        if running:
            self.cluster.record_event(sim, "Normal", "Killing", f"Stopping container {running[0]}", "kubelet")
        self.at(delay, sim, lambda: self._finish_delete(sim), even_frozen=True)
        return result

    def _finish_delete(self, sim: PodSim) -> None:
        self.cluster.store.delete("pods", sim.namespace, sim.name)
        self._gone(sim)

    def _gone(self, sim: PodSim) -> None:
        if self.pods.get(sim.key) is sim:
            del self.pods[sim.key]
        self.cluster.release_claims(sim.namespace)
