"""What happened to a build's pod, decided from its API JSON alone (kopf's pure classifier style).

`classify` is the one place that reads pod status. It is pure so every rule is a row in a table of
status snippets as the API returns them, and the watch-fed backend only has to act on the kind:

- `lost`: the infrastructure took the pod away (deleted, evicted, node gone or shut down, preempted):
  relaunched, never counted as a test failure;
- `unscheduled`, `pulling_failed`, `starting`: still waiting; the caller applies the config's budgets
  (from when its step started waiting);
- `setup_done`: the environment reports setup complete; the tests may be started;
- `tests_done`: the agent exited; the exit code is in its log (`exit_code_from_agent_log`);
- `failed`: a container of the build died on its own (OOM, non-zero exit, the checkout failed).

The order of the rules is the point: a loss wins over the container failures it causes (an evicted
pod's containers all exit 137), and the tests being done wins over a later loss, because the result is
already in the agent's log and relaunching would run the tests again for nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas.repo_config import RepoConfig
from workers.backends.kubernetes.names import AGENT_CONTAINER, CHECKOUT_CONTAINER, EXIT_MARK, WORKSPACE_VOLUME
from workers.logfiles import first_error_line

Kind = Literal["unscheduled", "pulling_failed", "starting", "setup_done", "tests_done", "lost", "failed"]
Json = dict[str, Any]

PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# Pod-level `status.reason`s that mean the node, not the build, ended the pod.
_SHUTDOWN = frozenset({"Terminated", "NodeShutdown", "Shutdown"})
# The kubelet refused to admit the pod after it was bound (resources, affinity changed, device plugin):
# another try may land on a node that accepts it.
_REJECTED = frozenset({"UnexpectedAdmissionError", "NodeAffinity", "NodeSelector", "Preempting"})
# DisruptionTarget reasons that mean the node is going or gone: NoExecute taint of an unreachable or
# not-ready node, the pod GC after the Node object vanished, a drain (kubectl drain, the autoscaler's
# scale-down, spot interruption handlers all evict through the Eviction API), the kubelet's shutdown.
_NODE_GONE = frozenset(
    {"DeletionByTaintManager", "DeletionByPodGC", "EvictionByEvictionAPI", "TerminationByKubelet"}
)

_MARK = re.compile(rf"{re.escape(EXIT_MARK)} (\d+)\s*\Z")
_MARK_LINE = re.compile(rb"%s \d+\s*" % re.escape(EXIT_MARK.encode()))


@dataclass(frozen=True)
class PodState:
    """`message` is a sentence for the build's reason. `node_loss` is set for a
    `lost` pod whose node went away (shut down, vanished, drained): the relaunch may then avoid spot
    nodes; an eviction for memory pressure or a plain deletion is not a node loss."""

    kind: Kind
    message: str
    node_loss: bool = False


# --- reading the JSON ---------------------------------------------------------------------------------


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _condition(status: Json, kind: str) -> Json | None:
    return next((c for c in _items(status.get("conditions")) if c.get("type") == kind), None)


def _sentence(*parts: Any) -> str:
    return ": ".join(str(p).strip() for p in parts if p and str(p).strip())


# --- the rules ----------------------------------------------------------------------------------------


def _loss(pod: Json) -> tuple[str, bool] | None:
    """Why the pod was taken away and whether its node went away with it (a spot reclaim looks like a
    shutdown, a vanished node, or a drain), or None when it was not taken away."""
    status = _mapping(pod.get("status"))
    reason = status.get("reason")
    message = status.get("message")
    if reason == "Evicted":
        return _sentence("pod evicted", message), False
    if reason in _SHUTDOWN:
        return _sentence("node shut down", message), True
    if reason == "NodeLost":
        return _sentence("node lost", message), True
    rejected = isinstance(reason, str) and (reason in _REJECTED or reason.startswith("OutOf"))
    if status.get("phase") == "Failed" and rejected:
        return _sentence("pod rejected by its node", reason, message), False
    disruption = _condition(status, "DisruptionTarget")
    if disruption is not None and disruption.get("status") == "True":
        cause = disruption.get("reason")
        sentence = _sentence("pod disrupted", cause, disruption.get("message"))
        return sentence, cause in _NODE_GONE
    if _mapping(pod.get("metadata")).get("deletionTimestamp"):
        return "pod deleted", False
    return None


def _images(pod: Json) -> dict[str, str]:
    spec = _mapping(pod.get("spec"))
    return {
        str(c.get("name")): str(c.get("image"))
        for c in _items(spec.get("initContainers")) + _items(spec.get("containers"))
    }


def _pull_failure(pod: Json, statuses: list[Json]) -> str | None:
    images = _images(pod)
    for entry in statuses:
        waiting = _mapping(_mapping(entry.get("state")).get("waiting"))
        if waiting.get("reason") in PULL_FAILURES:
            name = str(entry.get("name"))
            image = images.get(name) or entry.get("image") or "?"
            return _sentence(
                f"cannot pull image `{image}` for container `{name}`",
                waiting.get("reason"),
                waiting.get("message"),
            )
    return None


def _terminated(entry: Json) -> Json | None:
    state = _mapping(entry.get("state")).get("terminated")
    return state if isinstance(state, dict) else None


def _death(who: str, terminated: Json) -> str | None:
    """A container that died on its own: OOM, or a non-zero exit. An exit 0 is not a failure."""
    code = terminated.get("exitCode")
    if terminated.get("reason") == "OOMKilled":
        return f"{who} was OOMKilled"
    if isinstance(code, int) and code != 0:
        return _sentence(
            f"{who} exited with code {code}", first_error_line(str(terminated.get("message") or ""))
        )
    return None


def _container_failure(init_statuses: list[Json], statuses: list[Json]) -> str | None:
    for entry in init_statuses:
        terminated = _terminated(entry)
        if terminated is None:
            continue
        name = entry.get("name")
        if name == CHECKOUT_CONTAINER:
            code = terminated.get("exitCode")
            if terminated.get("reason") == "OOMKilled":
                return "the checkout failed: git was OOMKilled"
            if isinstance(code, int) and code != 0:
                detail = first_error_line(str(terminated.get("message") or "")) or terminated.get("reason")
                return f"the checkout failed: {detail or 'error'} (exit code {code})"
        elif (death := _death(f"init container `{name}`", terminated)) is not None:
            return death
    for entry in statuses:
        terminated = _terminated(entry)
        if terminated is not None and entry.get("name") != AGENT_CONTAINER:
            death = _death(f"container `{entry.get('name')}`", terminated)
            if death is not None:
                return death
    return None


def _pending(pod: Json, config: RepoConfig, init_statuses: list[Json], statuses: list[Json]) -> str:
    """What setup is still waiting for, as specific as the status allows (a CreateContainerConfigError
    naming a missing secret is worth more than "starting")."""
    for kind, entries in (("init container", init_statuses), ("container", statuses)):
        for entry in entries:
            state = _mapping(entry.get("state"))
            waiting = state.get("waiting")
            who = f"{kind} `{entry.get('name')}`"
            if isinstance(waiting, dict) and waiting.get("reason") != "PodInitializing":
                return _sentence(f"{who} is waiting", waiting.get("reason"), waiting.get("message"))
            if kind == "init container" and "running" in state:
                return f"{who} is running"
    if config.setup.file is not None and any(s.get("name") == AGENT_CONTAINER for s in statuses):
        return f"waiting for `{config.setup.file}` in the workspace"
    for entry in statuses:
        if entry.get("ready") is not True:
            if _terminated(entry) is not None:
                return f"container `{entry.get('name')}` has exited and will never be ready"
            return f"container `{entry.get('name')}` is not ready yet"
    return "waiting for the pod to start"


_UNBOUND = "unbound immediate PersistentVolumeClaims"


def _unbound_claim(pod: Json, scheduler: str) -> str:
    """The scheduler only says some claim is unbound; name the workspace claim and the likely cause."""
    claim = next(
        (
            str(_mapping(v.get("persistentVolumeClaim")).get("claimName"))
            for v in _items(_mapping(pod.get("spec")).get("volumes"))
            if v.get("name") == WORKSPACE_VOLUME
        ),
        "?",
    )
    return (
        f"the workspace claim `{claim}` is not bound: no provisioner bound it and no volume matches "
        "(set PODCI_KUBE_STORAGE_CLASS to a class with a provisioner, or PODCI_KUBE_STATIC_VOLUMES); "
        f"{scheduler}"
    )


def awaiting_code(pod: Json | None) -> bool:
    """The checkout init container is running: in `bundle` delivery, waiting for the worker's code."""
    status = _mapping((pod or {}).get("status"))
    return any(
        entry.get("name") == CHECKOUT_CONTAINER and "running" in _mapping(entry.get("state"))
        for entry in _items(status.get("initContainerStatuses"))
    )


def _setup_done(pod: Json, config: RepoConfig, statuses: list[Json]) -> bool:
    ready = {str(s.get("name")): s.get("ready") is True for s in statuses}
    if config.setup.file is not None:
        return ready.get(AGENT_CONTAINER, False)
    names = [str(c.get("name")) for c in _items(_mapping(pod.get("spec")).get("containers"))]
    return bool(names) and all(ready.get(name, False) for name in names)


def deleted(last: Json | None) -> PodState:
    """A pod that no longer exists, by its `last` state (as its DELETED event showed it, if seen): a
    pod whose node went away is a node loss however soon after it was deleted."""
    loss = _loss(last) if last is not None else None
    return PodState("lost", "pod deleted") if loss is None else PodState("lost", loss[0], node_loss=loss[1])


def classify(pod: Json | None, config: RepoConfig) -> PodState:
    """The state of the current attempt's pod; `pod` is None when it no longer exists."""
    if pod is None:
        return deleted(None)
    status = _mapping(pod.get("status"))
    init_statuses = _items(status.get("initContainerStatuses"))
    statuses = _items(status.get("containerStatuses"))
    agent = next((s for s in statuses if s.get("name") == AGENT_CONTAINER), None)
    agent_end = _terminated(agent) if agent is not None else None

    if agent_end is not None and agent_end.get("exitCode") == 0:
        return PodState("tests_done", "tests finished")
    if (loss := _loss(pod)) is not None:
        return PodState("lost", loss[0], node_loss=loss[1])
    if agent_end is not None:
        return PodState("tests_done", "tests finished")

    scheduled = _condition(status, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        reason = scheduled.get("reason")
        if reason == "Unschedulable":
            why = str(scheduled.get("message") or "no node fits the pod")
            message = _sentence("FailedScheduling", why)
            if _UNBOUND in why:
                message = _unbound_claim(pod, message)
            return PodState("unscheduled", message)
        if reason == "SchedulingGated":
            message = _sentence("SchedulingGated", scheduled.get("message") or "scheduling gates remain")
            return PodState("unscheduled", message)

    if (pull := _pull_failure(pod, init_statuses + statuses)) is not None:
        return PodState("pulling_failed", pull)
    if (failure := _container_failure(init_statuses, statuses)) is not None:
        return PodState("failed", failure)
    if status.get("phase") == "Failed":
        if status.get("reason") == "DeadlineExceeded":
            return PodState(
                "failed", _sentence("the pod ran past its activeDeadlineSeconds", status.get("message"))
            )
        return PodState("failed", _sentence("pod failed", status.get("reason"), status.get("message")))
    if _setup_done(pod, config, statuses):
        return PodState("setup_done", "setup complete")
    return PodState("starting", _pending(pod, config, init_statuses, statuses))


# --- the agent's log ----------------------------------------------------------------------------------


def exit_code_from_agent_log(text: str) -> int | None:
    """The tests' exit code from the agent's last line `PODCI-EXIT <n>`; None when it is missing (the
    agent was killed before the tests finished). The mark may follow test output that had no final
    newline, so it is looked for at the end of the text, not only at the start of a line."""
    match = _MARK.search(text)
    return int(match.group(1)) if match else None


def strip_exit_mark(text: str) -> str:
    """The test log as the tests wrote it: the agent's output without its closing mark."""
    match = _MARK.search(text)
    return text[: match.start()] if match else text


def wake_signal(pod: Json) -> tuple[Any, ...]:
    """The part of a pod's status that can change what a waiting step decides.

    The watch sees every change a pod makes (scheduled, each init container starting and ending, each
    container starting and becoming ready), and waking the build's step for each one ran the step a
    dozen times a build. A step acts only on: the checkout container starting (the code is sent then),
    setup complete (the agent ready, or every container ready), the agent's end, a failure, a loss
    and scheduling trouble; so the watch wakes it only when this tuple changes, a handful of times a
    build however long it runs.
    """
    status = _mapping(pod.get("status"))
    phase = status.get("phase")
    statuses = _items(status.get("containerStatuses"))
    agent = next((s for s in statuses if s.get("name") == AGENT_CONTAINER), {})
    others = [s for s in statuses if s.get("name") != AGENT_CONTAINER]

    def failures(key: str) -> tuple[Any, ...]:
        out = []
        for entry in _items(status.get(key)):
            end = _terminated(entry) or {}
            waiting = _mapping(_mapping(entry.get("state")).get("waiting")).get("reason")
            if (
                end.get("exitCode") not in (None, 0)
                or end.get("reason") == "OOMKilled"
                or waiting in PULL_FAILURES
            ):
                out.append((entry.get("name"), end.get("exitCode"), end.get("reason"), waiting))
        return tuple(out)

    checkout = next(
        (s for s in _items(status.get("initContainerStatuses")) if s.get("name") == CHECKOUT_CONTAINER), {}
    )
    checkout_state = _mapping(checkout.get("state"))
    return (
        phase if phase in ("Failed", "Succeeded") else None,
        status.get("reason"),
        "running" in checkout_state or "terminated" in checkout_state,  # once: the code is wanted
        bool(_mapping(pod.get("metadata")).get("deletionTimestamp")),
        (_condition(status, "PodScheduled") or {}).get("reason") == "Unschedulable",
        (_condition(status, "DisruptionTarget") or {}).get("status"),
        failures("initContainerStatuses"),
        failures("containerStatuses"),
        agent.get("ready") is True,
        bool(others) and all(s.get("ready") is True for s in others),
        _terminated(agent) is not None,
    )


def sign_of(signal: tuple[Any, ...]) -> str:
    """A short digest of a pod's `wake_signal`: equal for two states a waiting step decides alike.

    The watch caches it beside each build's pod and a parked look keeps the one it saw, so a safety
    look can ask Redis whether anything a look acts on changed, without running the look."""
    return hashlib.blake2b(repr(signal).encode(), digest_size=8).hexdigest()


def without_exit_mark(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The agent's log as the tests wrote it: whole lines as they come, and not the agent's own last
    line (`PODCI-EXIT <code>`), which is podci's, not the tests'. A line is held until its end comes,
    so what is given out always ends at a line end, except a last line the tests left unended."""
    held = b""
    for chunk in chunks:
        held += chunk
        end = held.rfind(b"\n") + 1
        lines, held = held[:end], held[end:]
        kept = b"".join(line for line in lines.splitlines(keepends=True) if not _MARK_LINE.fullmatch(line))
        if kept:
            yield kept
    if held and not _MARK_LINE.fullmatch(held):
        yield held
