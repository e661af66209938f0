"""All configuration in one typed object, read from `PODCI_*` environment variables and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "podci"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODCI_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None, description="Celery broker and build records; unset: `podci run` embeds a Redis"
    )
    backend: Literal["local", "kubernetes"] = "local"
    state_dir: Path = Field(default_factory=_default_state_dir, description="checkouts, volumes, logs")
    worker_concurrency: int = Field(default=2, ge=1)
    # A waiting build is parked and woken by what it waits for (the pod watch, the local watcher); it
    # also looks on its own at this interval, and when a budget ends, should a wake-up be lost.
    safety_look: float = Field(default=60.0, gt=0)
    # A build whose next step is overdue by this much is re-sent by the reconciler (lost message,
    # killed worker). Duplicates are harmless: every message is fenced by the record's `seq`.
    stall_grace: float = Field(default=30.0, gt=0)
    reconcile_interval: float = Field(default=10.0, gt=0)
    visibility_timeout: int = Field(default=3600, ge=10)
    transient_retries: int = Field(default=5, ge=0)
    # Teardown does not give up after `transient_retries` like the other steps: what it leaves behind
    # stays until the garbage collector's next pass, so through an API brownout it keeps looking, this long.
    teardown_timeout: float = Field(default=600.0, gt=0)
    teardown_grace: float = Field(default=3.0, ge=0)
    log_tail_lines: int = Field(default=40, ge=1)
    job_default: str = "local"
    # Builds of one repository that may run at once; more wait in `queued`, in order. 0: no limit.
    repo_concurrency: int = Field(default=4, ge=0)

    # --- the Kubernetes backend ---
    kube_context: str | None = Field(default=None, description="kubeconfig context; in a pod: in-cluster")
    kube_namespace: str | None = Field(
        default=None,
        description="where build objects are created; unset: the kubeconfig context's, in a pod its own",
    )
    kube_version: str = Field(default="1.30.0", description="Kubernetes version objects are checked against")
    kube_storage_class: str | None = Field(default=None, description="for dynamically provisioned volumes")
    kube_static_volumes: Literal["none", "nfs", "hostpath"] = "none"
    kube_nfs_server: str | None = None
    kube_nfs_path: str = "/exports/podci"
    kube_hostpath_root: str = "/var/lib/podci"
    kube_node_selector: dict[str, str] = Field(default={}, description="JSON; added to every build pod")
    kube_tolerations: list[dict[str, str]] = Field(default=[], description="JSON; added to every build pod")
    kube_on_demand_node_selector: dict[str, str] | None = Field(
        default=None, description="JSON; replaces kube_node_selector for a relaunch after a spot loss"
    )
    kube_on_demand_tolerations: list[dict[str, str]] | None = None
    kube_labels: dict[str, str] = Field(default={}, description="JSON; added to every object")
    kube_service_account: str = Field(default="default", description="the only one a template may name")
    kube_allow_host_path: bool = False
    kube_agent_image: str = "busybox:1.36"
    kube_git_image: str = "alpine/git:2.45.2"
    # How the code reaches the pod: `bundle` streams the worker's merge in through the API (the pod
    # needs no git credentials and no egress); `clone` lets the pod fetch it itself, for repositories
    # too large to stream, with the credentials in `kube_git_credentials_secret`.
    kube_code_delivery: Literal["bundle", "clone"] = "bundle"
    kube_git_credentials_secret: str | None = Field(
        default=None, description="a Secret whose key `git-credentials` the pod's git uses (clone only)"
    )
    kube_keep_failed_pod_minutes: int = Field(default=0, ge=0)
    kube_gc_ttl_hours: float = Field(default=24, gt=0)

    # --- results ---
    public_url: str = Field(default="http://localhost:8080", description="where the build pages are served")
    bitbucket_cloud_api_url: str = "https://api.bitbucket.org"
    bitbucket_cloud_user: str | None = Field(default=None, description="with an app password")
    bitbucket_cloud_app_password: SecretStr | None = None
    bitbucket_cloud_token: SecretStr | None = Field(
        default=None, description="a repository/workspace access token"
    )
    bitbucket_server_token: SecretStr | None = Field(default=None, description="an HTTP access token")
    bitbucket_server_legacy_status: bool = Field(default=False, description="use /rest/build-status/1.0")
    report_retries: int = Field(default=20, ge=0, description="tries of a status post before giving up")
    report_backoff_max: int = Field(default=300, ge=1, description="longest pause (s) between those tries")

    # --- webhooks (`podci serve`) ---
    bitbucket_cloud_secret: SecretStr | None = None
    bitbucket_server_secret: SecretStr | None = None
    bitbucket_server_url: str | None = Field(default=None, description="base URL, for clone URLs")
    jenkins_token: SecretStr | None = Field(default=None, description="expected in X-Podci-Token")
    jenkins_secret: SecretStr | None = Field(default=None, description="HMAC key for X-Hub-Signature")
    jenkins_phase: Literal["QUEUED", "STARTED", "COMPLETED", "FINALIZED"] = "STARTED"
    branch_builds: str = Field(default="", description="comma-separated repo patterns whose pushes build")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    delivery_ttl: int = Field(default=7 * 24 * 3600, ge=60, description="seconds a delivery id is remembered")

    @property
    def checkouts_dir(self) -> Path:
        return self.state_dir / "checkouts"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def branch_build_patterns(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.branch_builds.split(",") if p.strip())

    def require_redis_url(self) -> str:
        """Processes that share a queue with others cannot invent their own Redis."""
        if not self.redis_url:
            raise SystemExit(
                "PODCI_REDIS_URL is not set: point it at the Redis that holds the queue, "
                "e.g. PODCI_REDIS_URL=redis://localhost:6379/0"
            )
        return self.redis_url
