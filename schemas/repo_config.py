"""`.podci.yml`, the repository's own description of how its tests run, and the pod template it points to.

The pod template is a Kubernetes Pod (or bare PodSpec). Only the fields podci itself reads are modelled
here; everything else is kept as given and checked against the official schema by the Kubernetes backend.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TESTS_PLACEHOLDER = "{tests}"


class TestSpec(_Strict):
    container: str = Field(description="the pod template container the tests run in")
    command: str | list[str] = Field(description="a string is run with `sh -c` inside the container")
    junit: str | None = Field(default=None, description="JUnit XML path, relative to the workspace")
    rerun: list[str] | None = Field(
        default=None,
        description="how to run chosen tests again: an argument list (a string is split as a shell "
        "would, but never run by one) with one item `{tests}`, replaced by the tests' JUnit names",
    )

    @field_validator("rerun", mode="before")
    @classmethod
    def _rerun_words(cls, rerun: Any) -> Any:
        if isinstance(rerun, str):
            try:
                return shlex.split(rerun)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments: {exc}") from None
        return rerun

    @field_validator("rerun")
    @classmethod
    def _one_placeholder(cls, rerun: list[str] | None) -> list[str] | None:
        if rerun is not None and rerun.count(TESTS_PLACEHOLDER) != 1:
            raise ValueError(
                f"must hold `{TESTS_PLACEHOLDER}` exactly once, as an argument of its own "
                f"(e.g. `python -m unittest {TESTS_PLACEHOLDER}`): the failed tests' names go there"
            )
        return rerun

    def argv(self) -> list[str]:
        return ["sh", "-c", self.command] if isinstance(self.command, str) else list(self.command)

    def rerun_argv(self, tests: list[str]) -> list[str]:
        """The rerun command with each test name as an argument of its own (no shell sees them)."""
        argv: list[str] = []
        for word in self.rerun or []:
            argv.extend(tests if word == TESTS_PLACEHOLDER else [word])
        return argv


class FlakySpec(_Strict):
    """`rerun: 1`: a build whose only failed tests are known to be flaky runs them once more
    (`test.rerun` says how); when they pass, the build succeeds with a warning."""

    rerun: Literal[0, 1] = 0


class SetupSpec(_Strict):
    """Setup is complete when `file` appears in the workspace, or (with `ready: true`) every container
    that has a readiness probe passes it."""

    file: str | None = None
    ready: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> SetupSpec:
        if (self.file is None) == (not self.ready):
            raise ValueError("give exactly one of `file` (a path in the workspace) or `ready: true`")
        if self.file is not None and (self.file.startswith("/") or ".." in self.file.split("/")):
            raise ValueError("`file` must be a relative path inside the workspace")
        return self


class Timeouts(_Strict):
    unscheduled: float = Field(default=600, gt=0, description="seconds a pod may wait for a node")
    setup: float = Field(default=300, gt=0, description="seconds from pod start to setup complete")
    tests: float = Field(default=1800, gt=0, description="seconds the test command may run")


class VolumeSpec(_Strict):
    size: str = "1Gi"
    mount_path: str = Field(default="/workspace", pattern=r"^/")

    @field_validator("size")
    @classmethod
    def _size_is_quantity(cls, size: str) -> str:
        if not _QUANTITY.match(size):
            raise ValueError(f"{size!r} is not a Kubernetes quantity such as `1Gi`")
        return size


class RepoConfig(_Strict):
    pod_template: str = ".podci/pod.yaml"
    test: TestSpec
    setup: SetupSpec = SetupSpec(ready=True)
    timeouts: Timeouts = Timeouts()
    max_attempts: int = Field(default=3, ge=1, le=10)
    volume: VolumeSpec = VolumeSpec()
    flaky: FlakySpec = FlakySpec()

    @model_validator(mode="after")
    def _rerun_has_command(self) -> RepoConfig:
        if self.flaky.rerun and self.test.rerun is None:
            raise ValueError(
                "`flaky.rerun: 1` needs `test.rerun`, the command that runs chosen tests, with "
                "`{tests}` where their names go (e.g. `python -m unittest {tests}`)"
            )
        return self


# --- pod template -------------------------------------------------------------------------------------


class _Loose(BaseModel):
    """Kubernetes objects carry many fields podci passes through untouched.

    Serialized as written: the template's own keys (camelCase), only the fields it set, so the spec
    kept in the build record is what reaches the cluster, with no defaults of podci's added."""

    model_config = ConfigDict(extra="allow", frozen=True, validate_by_name=True, serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        written = self.model_fields_set | set(self.model_extra or {})
        names = {(f.alias or name): name for name, f in type(self).model_fields.items()}
        return {key: value for key, value in data.items() if names.get(key, key) in written}


class EnvVar(_Loose):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None


class ContainerPort(_Loose):
    container_port: int = Field(alias="containerPort", ge=1, le=65535)
    name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class TCPSocketAction(_Loose):
    port: int | str


class ExecAction(_Loose):
    command: list[str] = Field(min_length=1)


class Probe(_Loose):
    tcp_socket: TCPSocketAction | None = Field(default=None, alias="tcpSocket")
    exec_: ExecAction | None = Field(default=None, alias="exec")
    period_seconds: int = Field(default=10, alias="periodSeconds", ge=1)
    timeout_seconds: int = Field(default=1, alias="timeoutSeconds", ge=1)


class Container(_Loose):
    name: str = Field(pattern=DNS_LABEL, max_length=63)
    image: str = Field(min_length=1)
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = Field(default=None, alias="workingDir", pattern=r"^/")
    env: list[EnvVar] = []
    ports: list[ContainerPort] = []
    readiness_probe: Probe | None = Field(default=None, alias="readinessProbe")

    def argv(self) -> list[str]:
        argv = list(self.command or []) + list(self.args or [])
        if not argv:
            raise ValueError(
                f"container `{self.name}` has no `command`; podci does not read image entrypoints"
            )
        return argv


class PodSpec(_Loose):
    containers: list[Container] = Field(min_length=1)

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, containers: list[Container]) -> list[Container]:
        names = [c.name for c in containers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"container names must be unique; repeated: {', '.join(repeated)}")
        return containers

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def as_written(self) -> dict[str, Any]:
        """The spec as the template gave it (every field it set, none it did not), for the objects
        sent to Kubernetes: fields podci does not model pass through untouched."""
        written: dict[str, Any] = self.model_dump(mode="json")
        return written


def pod_spec_from_template(doc: Any) -> dict[str, Any]:
    """A template may be a whole Pod (`kind: Pod`) or just its spec; return the spec part."""
    if not isinstance(doc, dict):
        raise ValueError("the pod template must be a YAML mapping (a Pod or a PodSpec)")
    if "kind" in doc:
        if doc.get("kind") != "Pod":
            raise ValueError(f"the pod template has kind {doc.get('kind')!r}; only `Pod` is accepted")
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            raise ValueError("the pod template has `kind: Pod` but no `spec` mapping")
        return spec
    return doc
