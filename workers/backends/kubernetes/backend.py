"""The Kubernetes backend's steps: the build's Service, PV/PVC and Pod, through `api`.

Objects come from the pure builders in `objects`, pod state from the watch-fed cache classified
by `pod_state`. The code reaches the pod by an init container that re-does the merge on the volume
(so no worker's disk is needed); the tests run detached through one exec, and the `podci-agent`
sidecar ends when they have, which the watch sees: waiting costs no API requests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.names import attempt_name
from schemas.record import BuildState
from schemas.settings import Settings
from store import keys
from store.connection import as_text
from workers.backends.base import BuildContext, SetupStatus, TestStatus
from workers.backends.kubernetes.api import KubeApi
from workers.backends.kubernetes.names import (
    AGENT_CONTAINER,
    BUILD_LABEL,
    CHECKOUT_CONTAINER,
    START_TESTS_SCRIPT,
)
from workers.backends.kubernetes.objects import make_pod, make_pv, make_pvc, make_service
from workers.backends.kubernetes.pod_state import (
    PodState,
    classify,
    exit_code_from_agent_log,
    strip_exit_mark,
)
from workers.backends.kubernetes.policy import check_policy
from workers.backends.kubernetes.watch import PodCache
from workers.errors import PermanentError, PodLost, TransientError
from workers.logfiles import log_files, write_atomic

_KINDS_IN_TEARDOWN_ORDER = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")
_DAY = 24 * 3600
# A claim on a one-off action (exec the tests, read the agent's log) keeps duplicate looks from doing it
# twice. Its holder releases it when the action fails, but a holder killed mid-action cannot: then the
# claim's expiry is what lets the next look try, so it is short. A look that outlives it costs at most
# one more request, since both actions are safe to repeat.
_CLAIM_SECONDS = 15


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings, api: KubeApi, cache: PodCache) -> None:
        self.settings, self.api, self.cache = settings, api, cache

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
    def _state(self, ctx: BuildContext) -> PodState | None:
        """The pod's state from the watch-fed cache; None until the watch has seen the pod (it then
        wakes the build). Never a GET: waiting must not cost API requests."""
        known, pod = self.cache.get(attempt_name(ctx.name, ctx.attempt))
        if not known:
            return None
        state = classify(pod, ctx.config)
        if state.kind == "lost":
            raise PodLost(state.message, node_loss=state.node_loss)
        return state

    def setup_status(self, ctx: BuildContext) -> SetupStatus:
        state = self._state(ctx)
        if state is None:
            return SetupStatus(False, "waiting for the pod watch to report the pod")
        if state.kind in ("pulling_failed", "failed"):
            return SetupStatus(False, "", failure=state.message)
        if state.kind == "unscheduled":
            return SetupStatus(False, state.message, unscheduled=True)
        if state.kind in ("setup_done", "tests_done"):
            return SetupStatus(True, "setup complete")
        return SetupStatus(False, state.message or "starting")

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
        except Exception:
            self.cache.redis.delete(marker)  # not started: the next look tries again
            raise
        if code != 0:
            self.cache.redis.delete(marker)
            raise TransientError(f"starting the tests failed with exit code {code}: {output[-300:]}")
        self.cache.redis.set(marker, "started", ex=_DAY)

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
            return None
        if cached is None:
            try:
                text = self.api.pod_log(pod, AGENT_CONTAINER)
            except Exception:
                self.cache.redis.delete(claim)  # the retry must not wait for the claim to expire
                raise
            self.cache.redis.set(key, text, ex=_DAY)
        else:
            text = as_text(cached)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, strip_exit_mark(text))
        return text

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        full = f"{ctx.config.volume.mount_path.rstrip('/')}/{path}"
        code, output = self.api.exec(
            attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, ["cat", full]
        )
        return output.encode() if code == 0 else None

    # --- logs and teardown ---------------------------------------------------------------------
    def kept_until(self, state: BuildState, now: datetime) -> datetime | None:
        """A failed build's pod stays `PODCI_KUBE_KEEP_FAILED_POD_MINUTES` for `kubectl exec`."""
        minutes = self.settings.kube_keep_failed_pod_minutes
        if state is not BuildState.failed or minutes <= 0:
            return None
        return now + timedelta(minutes=minutes)

    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        """Every container's log, fetched once (before the pods are deleted) into `log_dir`; when a
        fetch fails, the retry fetches them all again rather than teardown going on without them."""
        marker = keys.container_logs_saved(name)
        if self.cache.redis.set(marker, "1", nx=True, ex=_DAY):
            try:
                for pod in self.api.select("pods", f"{BUILD_LABEL}={name}"):
                    self._save_pod_logs(pod, log_dir)
            except Exception:
                self.cache.redis.delete(marker)
                raise
        return log_files(log_dir)

    def _save_pod_logs(self, pod: dict[str, Any], log_dir: Path) -> None:
        spec, pod_name = pod.get("spec") or {}, pod["metadata"]["name"]
        containers = [c["name"] for c in spec.get("containers", []) if c["name"] != AGENT_CONTAINER]
        containers += [c["name"] for c in spec.get("initContainers", []) if c["name"] == CHECKOUT_CONTAINER]
        for container in containers:
            path = log_dir / "containers" / f"{pod_name}.{container}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, self.api.pod_log(pod_name, container))

    def teardown(self, name: str, keep_pods: bool = False) -> str | None:
        """Send the deletes once, then report done only when the watch has seen the pods go and no
        other object of the build is listed; None means "look again" (the watch wakes the step)."""
        selector = f"{BUILD_LABEL}={name}"
        pods_key = keys.teardown_pods(name)
        # The marker expires: if a worker died between setting it and deleting, the deletes go again.
        # A delete that fails releases it at once, so that the retry sends them again.
        marker = keys.teardown_sent(name)
        if self.cache.redis.set(marker, "1", nx=True, ex=60):
            try:
                pods = [] if keep_pods else [p["metadata"]["name"] for p in self.api.select("pods", selector)]
                if pods:
                    self.cache.redis.sadd(pods_key, *pods)
                for pod in pods:
                    self.api.delete("pods", pod)
                for kind in self._kinds()[1:]:
                    self.api.delete(kind, name)
            except Exception:
                self.cache.redis.delete(marker)
                raise
        done_key, check_key = keys.teardown_done(name), keys.teardown_check(name)
        if (done := self.cache.redis.get(done_key)) is not None:
            return as_text(done)
        pending = [p for p in self._members(pods_key) if self.cache.get(p) != (True, None)]
        # One look at a time lists what is left; a duplicate look waits and then reads its result.
        if pending or not self.cache.redis.set(check_key, "1", nx=True, ex=30):
            return None
        try:
            if any(self.api.select(kind, selector) for kind in self._kinds()[1:]):
                self.cache.redis.delete(keys.teardown_sent(name))  # send the deletes again next time
                return None
            detail = f"deleted {', '.join(self._kinds())}" + (
                " (pods kept for debugging)" if keep_pods else ""
            )
            self.cache.redis.set(done_key, detail, ex=_DAY)
            return detail
        finally:
            self.cache.redis.delete(check_key)

    def _members(self, key: str) -> list[str]:
        return [as_text(m) for m in self.cache.redis.smembers(key)]

    def _kinds(self) -> tuple[str, ...]:
        static = self.settings.kube_static_volumes != "none"
        return _KINDS_IN_TEARDOWN_ORDER if static else _KINDS_IN_TEARDOWN_ORDER[:3]
