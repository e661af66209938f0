"""All configuration in one typed object, read from `PODCI_*` environment variables and passed in."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import git_credentials as credentials_file
from schemas.redis_url import is_sentinel, parse_sentinel

Hook = Literal["bitbucket-cloud", "bitbucket-server", "jenkins"]
HOOKS: tuple[Hook, ...] = ("bitbucket-cloud", "bitbucket-server", "jenkins")
# What authenticates each receiver: the settings named here, any one of them (README "Webhooks").
HOOK_SECRETS: dict[Hook, tuple[str, ...]] = {
    "bitbucket-cloud": ("bitbucket_cloud_secret",),
    "bitbucket-server": ("bitbucket_server_secret",),
    "jenkins": ("jenkins_token", "jenkins_secret"),
}
MIN_SECRET = 16


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "podci"


def csv(text: str) -> tuple[str, ...]:
    """A comma-separated setting as its items, blanks dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def env_name(field: str) -> str:
    return f"PODCI_{field.upper()}"


def _short(value: str, name: str) -> str | None:
    """Why a secret is too weak to keep a receiver or a page closed, or None."""
    if len(value) >= MIN_SECRET:
        return None
    size = "empty" if not value else f"only {len(value)} characters long"
    return (
        f"{name} is {size}; a secret or token must have at least {MIN_SECRET} characters "
        "(make one with `openssl rand -hex 24`), or be left unset"
    )


SCRATCH_LOGS = "scratch-logs"


def scratch_log_dir(state_dir: Path, build_name: str) -> Path:
    """Where a build writes its logs on the worker while it runs: the log store gets them once they
    are final, so that a page never needs the worker's disk."""
    return state_dir / SCRATCH_LOGS / build_name


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def log_store_problem(value: str) -> None:
    """Refuse a PODCI_LOG_STORE that names no place podci can write: a typo here would lose every log."""
    if "://" not in value:
        return
    scheme, _, rest = value.partition("://")
    if scheme != "s3":
        raise ValueError(
            f"PODCI_LOG_STORE holds {value!r}, a {scheme}:// URL; podci keeps logs in a directory "
            "(a path such as /var/lib/podci/logs) or on an S3-compatible store (s3://bucket/prefix)"
        )
    bucket = rest.partition("/")[0]
    if not bucket:
        raise ValueError(f"PODCI_LOG_STORE holds {value!r}, which names no bucket; write s3://bucket/prefix")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"PODCI_LOG_STORE names the bucket {bucket!r}, which is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, dots and hyphens)"
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODCI_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Celery broker and build records: redis://HOST:PORT/DB, or the sentinels "
        "sentinel://HOST:PORT;sentinel://HOST2:PORT; unset: `podci run` embeds a Redis",
    )
    redis_sentinel_master: str | None = Field(
        default=None,
        validate_default=True,  # its absence is what is checked
        description="with sentinel:// URLs: the master's name (`sentinel monitor NAME ...`)",
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
    # Private repositories: git's `store` helper reads this file (`https://user:token@host` lines), so
    # no token is ever on a command line, in a URL, in a record or on a page (docs/operations.md).
    git_credentials: Path | None = Field(
        default=None, description="a git-credential-store file the worker's git fetches with"
    )
    job_default: str = "local"
    # Builds of one repository that may run at once; more wait in `queued`, in order. 0: no limit.
    repo_concurrency: int = Field(default=4, ge=0)
    # Records, their indexes and counters, and the logs of builds expire this long after their last change.
    retention_days: float = Field(default=30, gt=0, le=3650)
    # Where finished logs are kept, read by the pages: API and workers share nothing else but Redis.
    log_store: str = Field(
        default="", description="a directory, or s3://bucket/prefix; unset: the state directory's `logs`"
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible store's address (MinIO...); unset: AWS S3"
    )

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
    # The Pod Security Standard every build pod meets (docs/security.md); an untrusted pull request's is
    # always `restricted`. `baseline` is for trusted builds whose images need root.
    pod_security: Literal["restricted", "baseline"] = "restricted"
    kube_priority_classes: str = Field(default="", description="priority classes a template may name")
    kube_allowed_secrets: str = Field(default="", description="secrets a template may read")
    # Requests and limits of every container whose template gives none (Kubernetes quantities).
    kube_cpu_request: str = "100m"
    kube_cpu_limit: str = "2"
    kube_memory_request: str = "256Mi"
    kube_memory_limit: str = "2Gi"
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
    bitbucket_cloud_reports: bool = Field(default=True, description="Code Insights reports on Cloud")
    bitbucket_server_reports: bool = Field(default=True, description="Code Insights reports on Server/DC")
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
    jenkins_urls: str = Field(default="", description="URL prefixes a Jenkins callback_url must start with")
    # Who may start a build (docs/security.md). A pull request from a fork or from an author not trusted
    # here waits until a trusted person comments `/podci ok-to-test`.
    trusted_authors: str = Field(
        default="", description="patterns of Bitbucket Cloud account ids (or {uuid}s) and Server user names"
    )
    trusted_repos: str = Field(
        default="", description="repository patterns whose own (non-fork) pull requests are trusted"
    )
    trust_everyone: bool = Field(default=False, description="no approval ever: every fork is a colleague's")
    clone_hosts: str = Field(
        default="", description="hosts (patterns, optionally :port) webhook builds may clone from"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096, description="request line and headers")
    delivery_ttl: int = Field(default=7 * 24 * 3600, ge=60, description="seconds a delivery id is remembered")
    hooks: str = Field(default=",".join(HOOKS), description="the receivers that are on, comma-separated")
    insecure_unsigned_hooks: str = Field(
        default="", description="receivers that accept requests without a secret (never on the internet)"
    )
    # A Redis command that takes longer fails: the receiver answers 503 (Retry-After) in time for
    # Bitbucket and Jenkins to redeliver, instead of hanging with a hung Redis.
    redis_timeout: float = Field(default=0.5, gt=0, le=30)

    # --- the pages and /metrics ---
    ui_tokens: SecretStr | None = Field(default=None, description="comma-separated bearer tokens")
    trusted_proxy_header: str | None = Field(
        default=None, description="the user header of an authenticating proxy, e.g. X-Auth-Request-User"
    )
    trusted_proxies: str = Field(default="", description="addresses (CIDR) the proxy header is taken from")
    public_repos: str = Field(default="", description="repository patterns readable without a login")
    metrics_token: SecretStr | None = Field(default=None, description="bearer token for /metrics")

    @field_validator(
        "bitbucket_cloud_app_password", "bitbucket_cloud_token", "bitbucket_server_token",
        "bitbucket_cloud_secret", "bitbucket_server_secret", "jenkins_token", "jenkins_secret",
        "ui_tokens", "metrics_token",
    )  # fmt: skip
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """An empty or short secret is refused at start: `PODCI_BITBUCKET_SERVER_SECRET=''` once left a
        receiver open, and a short one is guessed."""
        if value is None:
            return None
        name = env_name(info.field_name or "")
        items = csv(value.get_secret_value()) if info.field_name == "ui_tokens" else None
        for item in items if items is not None else (value.get_secret_value(),):
            problem = _short(item, name if items is None else f"a token in {name}")
            if problem:
                raise ValueError(problem)
        if items == ():
            raise ValueError(_short("", name))
        return value

    @field_validator("git_credentials")
    @classmethod
    def _readable_credentials(cls, value: Path | None) -> Path | None:
        """A file that cannot be read or parsed fails at start, not as a build's `error` later."""
        if value is not None:
            credentials_file.load(value)
        return value

    @field_validator("hooks", "insecure_unsigned_hooks")
    @classmethod
    def _known_hooks(cls, value: str, info: ValidationInfo) -> str:
        unknown = [item for item in csv(value) if item not in HOOKS]
        if unknown:
            raise ValueError(
                f"{env_name(info.field_name or '')} names {', '.join(unknown)}, which podci does not "
                f"know; the receivers are {', '.join(HOOKS)}"
            )
        return value

    @field_validator("jenkins_urls")
    @classmethod
    def _url_prefixes(cls, value: str) -> str:
        for item in csv(value):
            parts = urlsplit(item)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"PODCI_JENKINS_URLS holds {item!r}; each entry must be an http(s) URL such as "
                    "https://jenkins.example.com/"
                )
        return value

    @field_validator("log_store")
    @classmethod
    def _log_store(cls, value: str) -> str:
        log_store_problem(value)
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        parts = urlsplit(value or "")
        if value is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(
                f"PODCI_S3_ENDPOINT_URL holds {value!r}; it must be an http(s) URL such as http://minio:9000"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in csv(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"PODCI_TRUSTED_PROXIES holds {item!r}, which is not an address or a network "
                    "such as 10.0.0.0/8"
                ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and is_sentinel(value):
            try:
                parse_sentinel(value)
            except ValueError as exc:
                raise ValueError(f"PODCI_REDIS_URL names sentinels, but {exc}") from None
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _sentinel_master(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Sentinels answer "which server is master NAME?": without the name there is no question to
        ask, and with a plain Redis the name would be silently ignored. Both are refused at start."""
        url = info.data.get("redis_url")
        sentinels = isinstance(url, str) and is_sentinel(url)
        if sentinels and not value:
            raise ValueError(
                "PODCI_REDIS_URL names Redis Sentinels, but PODCI_REDIS_SENTINEL_MASTER is not set: set "
                "it to the name the sentinels monitor the master by (the NAME in their "
                "`sentinel monitor NAME HOST PORT QUORUM`), e.g. PODCI_REDIS_SENTINEL_MASTER=mymaster"
            )
        if not sentinels and value is not None and "redis_url" in info.data:
            raise ValueError(
                "PODCI_REDIS_SENTINEL_MASTER is set, but PODCI_REDIS_URL does not name sentinels: list "
                "them as sentinel://HOST:PORT;sentinel://HOST2:PORT, or unset "
                "PODCI_REDIS_SENTINEL_MASTER to use one Redis"
            )
        return value

    @property
    def enabled_hooks(self) -> tuple[Hook, ...]:
        on = csv(self.hooks)
        return tuple(hook for hook in HOOKS if hook in on)

    @property
    def insecure_hooks(self) -> tuple[Hook, ...]:
        on = csv(self.insecure_unsigned_hooks)
        return tuple(hook for hook in self.enabled_hooks if hook in on)

    def missing_hook_secrets(self) -> list[str]:
        """The settings an enabled receiver needs and does not have (one of each group), in the words
        `podci serve` refuses to start with. A receiver listed as insecure needs none."""
        missing = []
        for hook in self.enabled_hooks:
            names = HOOK_SECRETS[hook]
            if hook not in self.insecure_hooks and all(getattr(self, n) is None for n in names):
                missing.append(" or ".join(env_name(n) for n in names) + f" (the {hook} receiver)")
        return missing

    @property
    def jenkins_url_prefixes(self) -> tuple[str, ...]:
        return csv(self.jenkins_urls)

    @property
    def clone_host_patterns(self) -> tuple[str, ...]:
        """Where webhook builds may clone from: Bitbucket Cloud's host while its receiver is on, the
        Bitbucket Server/Data Center host of PODCI_BITBUCKET_SERVER_URL, and PODCI_CLONE_HOSTS."""
        hosts = list(csv(self.clone_hosts))
        if "bitbucket-cloud" in self.enabled_hooks:
            hosts.append("bitbucket.org")
        server = urlsplit(self.bitbucket_server_url or "").hostname
        if server:
            hosts.append(server)
        return tuple(hosts)

    @property
    def ui_token_values(self) -> tuple[str, ...]:
        return csv(self.ui_tokens.get_secret_value()) if self.ui_tokens is not None else ()

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in csv(self.trusted_proxies))

    @property
    def public_repo_patterns(self) -> tuple[str, ...]:
        return csv(self.public_repos)

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret's value, longest first: what logs and pages mask as `****`."""
        values: list[str] = []
        for name, field in type(self).model_fields.items():
            if field.annotation == SecretStr | None and (secret := getattr(self, name)) is not None:
                text = secret.get_secret_value()
                values.extend(csv(text) if name == "ui_tokens" else (text,))
        values.extend(credential.password for credential in self.git_tokens())
        return tuple(sorted(set(values), key=len, reverse=True))

    def git_tokens(self) -> tuple[credentials_file.Credential, ...]:
        """The credentials git fetches with, read again each time: the file may be rotated."""
        if self.git_credentials is None:
            return ()
        try:
            return credentials_file.load(self.git_credentials)
        except credentials_file.CredentialsError:
            return ()  # checked at start; a file broken since then fails the fetch, not the masking

    @property
    def retention_seconds(self) -> int:
        return max(60, int(self.retention_days * 24 * 3600))

    @property
    def checkouts_dir(self) -> Path:
        return self.state_dir / "checkouts"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def log_store_url(self) -> str:
        """PODCI_LOG_STORE as given, or the state directory's `logs` (where logs always were)."""
        return self.log_store or str(self.logs_dir)

    @property
    def scratch_logs_dir(self) -> Path:
        return self.state_dir / SCRATCH_LOGS

    def scratch_log_dir(self, build_name: str) -> Path:
        return scratch_log_dir(self.state_dir, build_name)

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
