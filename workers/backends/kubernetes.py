"""The Kubernetes backend: the build's Service, PV/PVC and Pod, through `k8s_api`.

Objects come from the pure builders in `k8s_objects`, pod state from the watch-fed cache classified
by `pod_state`. The code reaches the pod by an init container that re-does the merge on the volume
(so no worker's disk is needed); the tests run detached through one exec, and the `podci-agent`
sidecar ends when they have, which the watch sees: waiting costs no API requests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.settings import Settings
from workers.backends.base import BuildContext, SetupStatus, TestStatus
from workers.backends.k8s_api import KubeApi
from workers.backends.k8s_names import AGENT_CONTAINER, BUILD_LABEL, CHECKOUT_CONTAINER, START_TESTS_SCRIPT
from workers.backends.k8s_objects import make_pod, make_pv, make_pvc, make_service
from workers.backends.k8s_policy import check_policy
from workers.backends.k8s_watch import PodCache
from workers.backends.pod_state import classify, exit_code_from_agent_log, strip_exit_mark
from workers.errors import PermanentError, PodLost, TransientError
from workers.names import attempt_name

_KINDS_IN_TEARDOWN_ORDER = ("pods", "services", "persistentvolumeclaims", "persistentvolumes")


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
    def _pod(self, ctx: BuildContext) -> dict[str, Any] | None:
        name = attempt_name(ctx.name, ctx.attempt)
        known, pod = self.cache.get(name)
        if not known:  # the watch has not reported it yet (just created, or no watcher): ask once
            pod = self.api.read_pod(name)
            if pod is not None:
                self.cache.put(pod)
        return pod

    def _state(self, ctx: BuildContext) -> Any:
        state = classify(self._pod(ctx), ctx.config, datetime.now(UTC))
        if state.kind == "lost":
            raise PodLost(state.message, node_loss=state.node_loss)
        return state

    def setup_status(self, ctx: BuildContext) -> SetupStatus:
        state = self._state(ctx)
        if state.kind in ("pulling_failed", "failed"):
            return SetupStatus(False, "", failure=state.message)
        if state.kind == "unscheduled":
            return SetupStatus(False, state.message, unscheduled=True)
        if state.kind in ("setup_done", "tests_done"):
            return SetupStatus(True, "setup complete")
        return SetupStatus(False, state.message or "starting")

    def start_tests(self, ctx: BuildContext) -> None:
        marker = f"podci:k8s:tests-started:{attempt_name(ctx.name, ctx.attempt)}"
        if self.cache.redis.exists(marker):
            return  # one exec per attempt, however often the step looks
        argv = [
            "sh",
            "-c",
            START_TESTS_SCRIPT,
            "podci-tests",
            ctx.config.volume.mount_path,
            *ctx.config.test.argv(),
        ]
        code, output = self.api.exec(attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, argv)
        if code != 0:
            raise TransientError(f"starting the tests failed with exit code {code}: {output[-300:]}")
        self.cache.redis.set(marker, "1", ex=7 * 24 * 3600)

    def test_status(self, ctx: BuildContext) -> TestStatus | None:
        state = self._state(ctx)
        log_path = ctx.log_dir / "tests.log"
        if state.kind == "failed":
            self._save_agent_log(ctx, log_path)
            return TestStatus(exit_code=1, log_path=log_path, reason=state.message)
        if state.kind != "tests_done":
            return None
        text = self._save_agent_log(ctx, log_path)
        code = exit_code_from_agent_log(text)
        if code is None:
            raise PermanentError("the podci-agent ended without reporting the tests' exit code")
        return TestStatus(exit_code=code, log_path=log_path)

    def _save_agent_log(self, ctx: BuildContext, path: Path) -> str:
        text = self.api.pod_log(attempt_name(ctx.name, ctx.attempt), AGENT_CONTAINER)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(strip_exit_mark(text))
        return text

    def workspace_file(self, ctx: BuildContext, path: str) -> bytes | None:
        full = f"{ctx.config.volume.mount_path.rstrip('/')}/{path}"
        code, output = self.api.exec(
            attempt_name(ctx.name, ctx.attempt), ctx.config.test.container, ["cat", full]
        )
        return output.encode() if code == 0 else None

    # --- logs and teardown ---------------------------------------------------------------------
    def logs(self, name: str, log_dir: Path) -> dict[str, Path]:
        saved: dict[str, Path] = {}
        if (log_dir / "tests.log").exists():
            saved["tests"] = log_dir / "tests.log"
        for pod in self.api.select("pods", f"{BUILD_LABEL}={name}"):
            spec = pod.get("spec") or {}
            containers = [c["name"] for c in spec.get("containers", []) if c["name"] != AGENT_CONTAINER]
            containers += [
                c["name"] for c in spec.get("initContainers", []) if c["name"] == CHECKOUT_CONTAINER
            ]
            for container in containers:
                key = f"{pod['metadata']['name']}/{container}"
                path = log_dir / "containers" / f"{key.replace('/', '.')}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(self.api.pod_log(pod["metadata"]["name"], container))
                saved[f"containers/{key}"] = path
        return saved

    def teardown(self, name: str, keep_pods: bool = False) -> str:
        """Delete everything labelled with the build, and succeed only once none of it remains."""
        selector = f"{BUILD_LABEL}={name}"
        if not keep_pods:
            for pod in self.api.select("pods", selector):
                self.api.delete("pods", pod["metadata"]["name"])
        for kind in self._kinds()[1:]:
            self.api.delete(kind, name)
        kinds = self._kinds()[1:] if keep_pods else self._kinds()
        left = [f"{kind}/{o['metadata']['name']}" for kind in kinds for o in self.api.select(kind, selector)]
        if left:
            raise TransientError(f"waiting for {', '.join(left)} to be deleted")
        return f"deleted {', '.join(kinds)}" + (" (pods kept for debugging)" if keep_pods else "")

    def _kinds(self) -> tuple[str, ...]:
        static = self.settings.kube_static_volumes != "none"
        return _KINDS_IN_TEARDOWN_ORDER if static else _KINDS_IN_TEARDOWN_ORDER[:3]
