"""The Kubernetes backend's steps: the build's Service, PV/PVC and Pod, through `api`.

Objects come from the pure builders in `objects`, pod state from the watch-fed cache classified
by `pod_state`. The code reaches the pod by an init container that re-does the merge on the volume
(so no worker's disk is needed); the tests run detached through one exec, and the `podci-agent`
sidecar ends when they have, which the watch sees: waiting costs no API requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.names import attempt_name
from schemas.public import mask
from schemas.record import BuildState
from schemas.settings import Settings
from store import keys
from store.connection import as_text
from workers import gitops
from workers.backends.base import BuildContext, SetupStatus, TestStatus, WaitHint
from workers.backends.kubernetes.api import KubeApi, Obj
from workers.backends.kubernetes.cleanup import remember_node, remove_workspace
from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    BUILD_LABEL,
    BUNDLE,
    CHECKOUT_CONTAINER,
    RECEIVE_SCRIPT,
    RERUN_NOT_RUN,
    RERUN_SCRIPT,
    START_TESTS_SCRIPT,
)
from workers.backends.kubernetes.objects import make_pod, make_pv, make_pvc, make_service
from workers.backends.kubernetes.pod_state import (
    PodState,
    awaiting_code,
    classify,
    deleted,
    exit_code_from_agent_log,
    sign_of,
    strip_exit_mark,
    wake_signal,
    without_exit_mark,
)
from workers.backends.kubernetes.policy import check_policy
from workers.backends.kubernetes.watch import PodCache
from workers.errors import NotRunning, PermanentError, PodGone, PodLost, TransientError
from workers.logfiles import first_error_line, log_files, write_atomic

log = logging.getLogger(__name__)
_KINDS_IN_TEARDOWN_ORDER = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")
_DAY = 24 * 3600
# A claim on a one-off action (exec the tests, read the agent's log) keeps duplicate looks from doing it
# twice. Its holder releases it when the action fails, but a holder killed mid-action cannot: then the
# claim's expiry is what lets the next look try, so it is short. A look that outlives it costs at most
# one more request, since both actions are safe to repeat.
_CLAIM_SECONDS = 15
_NOT_YET_RUNNING = 2.0  # seconds until a look again when an exec found a container not running yet
_DELIVERY_TIMEOUT = 600  # seconds for the receiving end to finish once all bytes were sent
_LOG_BUDGET = 20  # seconds teardown spends at most saving container logs before it deletes


def _agent_ended(pod: Obj) -> bool:
    """The agent terminated: its log is whole, no stream of it will say more."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == AGENT_CONTAINER:
            return "terminated" in (status.get("state") or {})
    return True  # no agent (yet?) in the status: nothing to follow


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings, api: KubeApi, cache: PodCache) -> None:
        self.settings, self.api, self.cache = settings, api, cache
        self.secrets = settings.secret_values()  # masked in every log kept
        self._hint: tuple[str, WaitHint] = ("", WaitHint())  # (pod, the last look's): `wait_hint`

    # --- objects -------------------------------------------------------------------------------
    def create_service(self, ctx: BuildContext) -> str:
        check_policy(ctx, self.settings)  # before the first object: a refused template creates nothing
        created = self.api.create("services", make_service(ctx, self.settings))
        return f"service {ctx.name} {'created' if created else 'exists'}"

    def create_volume(self, ctx: BuildContext) -> str:
        pv = make_pv(ctx, self.settings)
        if pv is not None:
            self.api.create("persistentvolumes", pv)
        self.api.create("persistentvolumeclaims", make_pvc(ctx, self.settings))
        return f"volume claim {ctx.name}" + (" on a static volume" if pv is not None else "")

    def create_pod(self, ctx: BuildContext) -> str:
        pod = make_pod(ctx, self.settings, ctx.attempt, on_demand=ctx.on_demand)
        self.api.create("pods", pod)
        return f"pod {pod['metadata']['name']}" + (" (on-demand nodes)" if ctx.on_demand else "")

    # --- waiting -------------------------------------------------------------------------------
    def _pod(self, ctx: BuildContext) -> tuple[PodState | None, Obj | None]:
        """The pod's state (and JSON) from the watch-fed cache; None until the watch has seen the pod
        (it then wakes the build). Never a GET: waiting must not cost API requests."""
        name = attempt_name(ctx.name, ctx.attempt)
        self._hint = (name, WaitHint())
        known, pod = self.cache.get(name)
        if not known:
            return None, None
        state = classify(pod, ctx.config) if pod is not None else deleted(self.cache.last_state(name))
        if state.kind == "lost":
            raise PodLost(state.message, node_loss=state.node_loss)
        assert pod is not None  # a deleted pod is lost
        self._hint = (name, WaitHint(sign=f"{name}:{sign_of(wake_signal(pod))}"))
        return state, pod

    def wait_hint(self, ctx: BuildContext) -> WaitHint:
        """The pod's sign as the watch writes it (`keys.wait_sign`) when the last look's answer rested
        on the pod alone. Not when it also rested on something no pod event follows: another
        worker's claim (the code or the agent's log on its way; the look comes again when the claim
        lapses, as its holder may have died) or an exec the container refused although its status
        said running (again in a moment)."""
        pod, hint = self._hint
        return hint if pod == attempt_name(ctx.name, ctx.attempt) else WaitHint()

    def _unsigned(self, ctx: BuildContext, within: float) -> None:
        self._hint = (attempt_name(ctx.name, ctx.attempt), WaitHint(within=within))

    def _claim_left(self, claim: str) -> float:
        """Seconds until another worker's claim lapses (and a little more)."""
        left = int(self.cache.redis.pttl(claim))
        return (left / 1000 if left > 0 else _CLAIM_SECONDS) + 0.5

    def _state(self, ctx: BuildContext) -> PodState | None:
        return self._pod(ctx)[0]

    def setup_status(self, ctx: BuildContext) -> SetupStatus:
        state, pod = self._pod(ctx)
        if state is None:
            return SetupStatus(False, "waiting for the pod watch to report the pod")
        if state.kind in ("pulling_failed", "failed"):
            return SetupStatus(False, "", failure=state.message)
        if state.kind == "unscheduled":
            return SetupStatus(False, state.message, unscheduled=True)
        if state.kind in ("setup_done", "tests_done"):
            return SetupStatus(True, "setup complete")
        if self.settings.kube_code_delivery == "bundle" and awaiting_code(pod):
            return SetupStatus(False, self._deliver_code(ctx))
        return SetupStatus(False, state.message or "starting")

    def _deliver_code(self, ctx: BuildContext) -> str:
        """Stream the worker's merge into the waiting checkout container, once per pod: a git bundle
        over exec, as `kubectl cp` streams a tar. A duplicate look finds the marker and only waits; a
        delivery that failed releases it, so the next look sends again (the receiving end writes a
        file of its own and renames it, so even two sends at once leave one whole bundle)."""
        pod = attempt_name(ctx.name, ctx.attempt)
        marker = keys.code_delivered(pod)
        if not self.cache.redis.set(marker, "sending", nx=True, ex=_CLAIM_SECONDS):
            self._unsigned(ctx, self._claim_left(marker))  # the sender may have died
            return "the code is on its way to the pod"
        try:
            gitops.ensure_merge(
                ctx.source, ctx.target, ctx.checkout_dir, ctx.created, ctx.merge_commit,
                remote_only=ctx.remote_only, credentials=self.settings.git_credentials,
            )  # fmt: skip
            bundle = gitops.bundle(ctx.checkout_dir, ctx.merge_commit)
            size = bundle.stat().st_size
            target = f"{ctx.config.volume.mount_path.rstrip('/')}/{BUNDLE}"
            argv = ["sh", "-c", RECEIVE_SCRIPT, "podci-receive", str(size), target]
            code, output = self.api.exec(
                pod, CHECKOUT_CONTAINER, argv, timeout=_DELIVERY_TIMEOUT, stdin=bundle
            )
        except PodGone as gone:
            self.cache.redis.delete(marker)
            raise PodLost(f"pod deleted while its code was sent ({gone})") from None
        except NotRunning:
            self.cache.redis.delete(marker)  # started or finished meanwhile: the next look sees which
            self._unsigned(ctx, _NOT_YET_RUNNING)
            return "waiting for the checkout container"
        except Exception:
            self.cache.redis.delete(marker)
            raise
        if code != 0:
            self.cache.redis.delete(marker)
            raise TransientError(f"sending the code to pod {pod} failed: {first_error_line(output)}")
        self.cache.redis.set(marker, "sent", ex=_DAY)
        return f"sent the code to the pod ({size:,} bytes)"

    def explain(self, ctx: BuildContext) -> str:
        """What the cluster said about the pod lately: a readiness probe refused, an image backing off."""
        return "; ".join(self.api.warnings(attempt_name(ctx.name, ctx.attempt)))

    def start_tests(self, ctx: BuildContext) -> None:
        """One exec per attempt, however often (and however many at once) the step looks: the marker
        says `starting` while one look execs, `started` for good once the exec succeeded. A worker
        killed mid-exec leaves only `starting`, which expires, and START_TESTS_SCRIPT run twice in the
        same pod starts the tests once."""
        marker = keys.tests_started(attempt_name(ctx.name, ctx.attempt))
        if not self.cache.redis.set(marker, "starting", nx=True, ex=_CLAIM_SECONDS):
            return
        argv = [
            "sh",
            "-c",
            START_TESTS_SCRIPT,
            "podci-tests",
            ctx.config.volume.mount_path,
            *ctx.config.test.argv(),
        ]
        try:
            code, output = self.api.exec(attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, argv)
        except PodGone as gone:  # deleted between setup and the exec: a loss like any other
            self.cache.redis.delete(marker)
            raise PodLost(f"pod deleted before the tests started ({gone})") from None
        except NotRunning as stopped:  # terminating: the watch tells a loss from a failure
            self.cache.redis.delete(marker)
            self._state(ctx)  # raises PodLost when the cache already knows
            raise TransientError(str(stopped)) from None
        except Exception:
            self.cache.redis.delete(marker)  # not started: the next look tries again
            raise
        if code != 0:
            self.cache.redis.delete(marker)
            raise TransientError(f"starting the tests failed with exit code {code}: {output[-300:]}")
        self.cache.redis.set(marker, "started", ex=_DAY)

    # The known-flaky failures run again (`.podci.yml` `flaky.rerun`) through one exec in the test
    # container that lasts as long as they do: the agent has reported the tests' end and exited, so no
    # pod event would say when a detached rerun ends. A few tests hold a worker slot (under its lease)
    # for their run; a worker that dies meanwhile leaves the step to run again, rerun included.
    def start_rerun(self, ctx: BuildContext, argv: list[str]) -> None:
        exit_file = ctx.log_dir / "rerun.exit"
        if exit_file.is_file():
            return
        mount = ctx.config.volume.mount_path
        command = ["sh", "-c", RERUN_SCRIPT, "podci-rerun", mount, *argv]
        try:
            code, output = self.api.exec(
                attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, command,
                timeout=ctx.config.timeouts.tests,
            )  # fmt: skip
        except (PodGone, NotRunning) as gone:  # the first run's failures stand
            code, output = RERUN_NOT_RUN, f"[the tests could not be run again: {gone}]\n"
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(ctx.log_dir / "rerun.log", mask(output, self.secrets))
        write_atomic(exit_file, str(code))

    def rerun_status(self, ctx: BuildContext) -> TestStatus | None:
        exit_file = ctx.log_dir / "rerun.exit"
        if not exit_file.is_file():
            return None
        return TestStatus(int(exit_file.read_text()), ctx.log_dir / "rerun.log")

    def test_status(self, ctx: BuildContext) -> TestStatus | None:
        state = self._state(ctx)
        log_path = ctx.log_dir / "tests.log"
        if state is None:
            return None
        if state.kind not in ("failed", "tests_done"):
            return None
        text = self._save_agent_log(ctx, log_path)
        if text is None:
            return None  # another look is fetching the log; the record will have it
        if state.kind == "failed":
            return TestStatus(exit_code=1, log_path=log_path, reason=state.message)
        code = exit_code_from_agent_log(text)
        if code is None:
            raise PermanentError("the podci-agent ended without reporting the tests' exit code")
        return TestStatus(exit_code=code, log_path=log_path)

    def _save_agent_log(self, ctx: BuildContext, path: Path) -> str | None:
        """The agent's log, fetched once per pod: the look that claims it reads it, a duplicate look
        reads Redis (or, while the first is still reading, gets None). Written atomically, since a
        concurrent look may be reading the file."""
        pod = attempt_name(ctx.name, ctx.attempt)
        key, claim = keys.agent_log(pod), keys.agent_log_claim(pod)
        cached = self.cache.redis.get(key)
        if cached is None and not self.cache.redis.set(claim, "1", nx=True, ex=_CLAIM_SECONDS):
            self._unsigned(ctx, self._claim_left(claim))  # the reader may have died
            return None
        if cached is None:
            try:
                text = mask(self.api.pod_log(pod, AGENT_CONTAINER), self.secrets)
            except Exception:
                self.cache.redis.delete(claim)  # the retry must not wait for the claim to expire
                raise
            self.cache.redis.set(key, text, ex=_DAY)
        else:
            text = as_text(cached)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, strip_exit_mark(text))
        return text

    def follow_tests(self, ctx: BuildContext, skip: int) -> Iterator[bytes]:
        """The agent's log as it streams the test log (AGENT_SCRIPT), from byte `skip` on: the stream
        starts at the log's beginning, so a resuming follower drops what it had. A stream that broke
        (a read idle too long, the API server restarting) is followed again; it ends for good when
        the agent has terminated or the pod is gone."""
        pod = attempt_name(ctx.name, ctx.attempt)
        while True:
            seen = 0
            for data in without_exit_mark(self.api.follow_log(pod, AGENT_CONTAINER)):
                if seen + len(data) > skip:
                    yield data[max(skip - seen, 0) :]
                    skip = seen + len(data)
                seen += len(data)
            known, found = self.cache.get(pod)
            if not known or found is None or _agent_ended(found):
                return
            time.sleep(1)  # a follower thread, not a task: the stream broke off early; follow again

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        full = f"{ctx.config.volume.mount_path.rstrip('/')}/{path}"
        try:
            code, output = self.api.exec(
                attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, ["cat", full]
            )
        except (PodGone, NotRunning):  # the pod went after its tests: the report went with it
            return None
        return output.encode() if code == 0 else None

    # --- logs and teardown ---------------------------------------------------------------------
    def kept_until(self, state: BuildState, now: datetime) -> datetime | None:
        """A failed build's pod stays `PODCI_KUBE_KEEP_FAILED_POD_MINUTES` for `kubectl exec`."""
        minutes = self.settings.kube_keep_failed_pod_minutes
        if state is not BuildState.failed or minutes <= 0:
            return None
        return now + timedelta(minutes=minutes)

    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        """Every container's log, fetched once before the pods are deleted, into `log_dir`: best
        effort, within `_LOG_BUDGET` seconds. A log that cannot be read (the node unreachable, the pod
        gone) is noted in its file instead; it never holds up the deletes, which cost money while
        they wait."""
        marker = keys.container_logs_saved(name)
        if self.cache.redis.set(marker, "1", nx=True, ex=_DAY):
            deadline = time.monotonic() + _LOG_BUDGET
            try:
                pods = self.api.select("pods", f"{BUILD_LABEL}={name}")
            except (TransientError, PermanentError) as exc:
                log.warning("build=%s container logs not saved: %s", name, exc)
                pods = []
            for pod in pods:
                self._save_pod_logs(pod, log_dir, deadline)
        return log_files(log_dir)

    def _save_pod_logs(self, pod: dict[str, Any], log_dir: Path, deadline: float) -> None:
        spec, pod_name = pod.get("spec") or {}, pod["metadata"]["name"]
        containers = [c["name"] for c in spec.get("containers", []) if c["name"] != AGENT_CONTAINER]
        containers += [c["name"] for c in spec.get("initContainers", []) if c["name"] == CHECKOUT_CONTAINER]
        for container in containers:
            path = log_dir / "containers" / f"{pod_name}.{container}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TransientError(f"no time left of the {_LOG_BUDGET} s for logs")
                text = self.api.pod_log(pod_name, container, timeout=min(left, 10))
            except (TransientError, PermanentError) as exc:
                text = f"[podci could not read this log before teardown: {exc}]\n"
            write_atomic(path, mask(text, self.secrets))

    def teardown(self, name: str, keep_pods: bool = False) -> str | None:
        """Send the deletes once, then report done only when the watch has seen the pods go and no
        other object of the build is listed; None means "look again" (the watch wakes the step).

        A static volume (hostPath, NFS) keeps its data after its objects are deleted, so there the
        claim stays until a cleanup pod has removed the build's directory through it. With `keep_pods`
        (a failed build kept for debugging) the pods and their volume stay; `gc` finishes the job."""
        selector = f"{BUILD_LABEL}={name}"
        pods_key = keys.teardown_pods(name)
        static = self.settings.kube_static_volumes != "none"
        deleted_now = ("services",) if static or keep_pods else ("services", "persistentvolumeclaims")
        # The marker expires: if a worker died between setting it and deleting, the deletes go again.
        # A delete that fails releases it at once, so that the retry sends them again.
        marker = keys.teardown_sent(name)
        if self.cache.redis.set(marker, "1", nx=True, ex=60):
            try:
                listed = self.api.select("pods", selector)
                self._remember_node(name, listed)
                pods = [] if keep_pods else listed
                if pods:
                    self.cache.redis.sadd(pods_key, *[p["metadata"]["name"] for p in pods])
                    self.cache.redis.expire(pods_key, _DAY)
                for pod in pods:
                    self.api.delete("pods", pod["metadata"]["name"])
                for kind in deleted_now:
                    self.api.delete(kind, name)
            except Exception:
                self.cache.redis.delete(marker)
                raise
        done_key, check_key = keys.teardown_done(name), keys.teardown_check(name)
        if (done := self.cache.redis.get(done_key)) is not None:
            return as_text(done)
        pending = [p for p in self._members(pods_key) if self.cache.get(p) != (True, None)]
        if pending:
            return None
        if static and not keep_pods and not self._workspace_removed(name):
            return None
        # One look at a time lists what is left; a duplicate look waits and then reads its result.
        if not self.cache.redis.set(check_key, "1", nx=True, ex=30):
            return None
        try:
            remaining = ("services", "persistentvolumeclaims", "persistentvolumes")[: 3 if static else 2]
            if keep_pods:
                remaining = deleted_now
            left = [obj for kind in remaining for obj in self.api.select(kind, selector)]
            # An object whose deletion was accepted (a claim waiting for its pods' volumes to be let go)
            # is on its way: deciding now, not a look later, keeps the requests a build costs fixed.
            if any(not obj["metadata"].get("deletionTimestamp") for obj in left):
                self.cache.redis.delete(keys.teardown_sent(name))  # send the deletes again next time
                return None
            detail = f"deleted {', '.join(self._kinds())}"
            if keep_pods:
                detail = "deleted services (pods and their volume kept for debugging)"
            elif static:
                detail += ", and the workspace directory"
            self.cache.redis.set(done_key, detail, ex=_DAY)
            return detail
        finally:
            self.cache.redis.delete(check_key)

    def _remember_node(self, name: str, pods: list[Obj]) -> None:
        remember_node(self.cache.redis, name, pods)

    def _workspace_removed(self, name: str) -> bool:
        """The cleanup pod's part of teardown: run it once the build's pods are gone, wait for it, then
        delete it and the claim and volume it used. True once nothing but the deletes is left."""
        return remove_workspace(self.api, self.cache.redis, self.settings, name)

    def _members(self, key: str) -> list[str]:
        return [as_text(m) for m in self.cache.redis.smembers(key)]

    def _kinds(self) -> tuple[str, ...]:
        static = self.settings.kube_static_volumes != "none"
        return _KINDS_IN_TEARDOWN_ORDER if static else _KINDS_IN_TEARDOWN_ORDER[:3]
