"""Read `.podci.yml` and the pod template it names, from text, into validated models.

Pure: the caller fetches the file contents (from the merge commit, or from the target branch for a
fork's pull request) and gets back models or a `ConfigError` whose message names the bad field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.errors import describe
from schemas.repo_config import PodSpec, RepoConfig, pod_spec_from_template

CONFIG_FILE = ".podci.yml"
# Both files end up in the build record, kept for PODCI_RETENTION_DAYS: a larger one is refused.
FILE_MAX = 256 * 1024


class ConfigError(ValueError):
    """The repository's configuration cannot be used; the message says what to change."""


@dataclass(frozen=True)
class LoadedConfig:
    config: RepoConfig
    pod_spec: PodSpec  # serializes as written: passed to the cluster untouched


def _yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def parse_config(text: str | None) -> RepoConfig:
    if text is None:
        raise ConfigError(f"the repository has no {CONFIG_FILE} at its root; add one (see the README)")
    doc = _yaml(text, CONFIG_FILE)
    if not isinstance(doc, dict):
        raise ConfigError(f"{CONFIG_FILE} must be a YAML mapping with at least a `test` section")
    try:
        return RepoConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(describe(exc, CONFIG_FILE)) from None


def parse_pod_template(text: str | None, config: RepoConfig) -> PodSpec:
    path = config.pod_template
    if text is None:
        raise ConfigError(f"the pod template `{path}` named by {CONFIG_FILE} (`pod_template`) does not exist")
    try:
        spec = pod_spec_from_template(_yaml(text, path))
        pod = PodSpec.model_validate(spec)
        for container in pod.containers:
            container.argv()
    except ValidationError as exc:
        raise ConfigError(describe(exc, f"the pod template `{path}`")) from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"the pod template `{path}` is invalid: {exc}") from None
    if pod.container(config.test.container) is None:
        names = ", ".join(c.name for c in pod.containers)
        raise ConfigError(
            f"{CONFIG_FILE} `test.container` is {config.test.container!r}, but the pod template "
            f"`{path}` has only: {names}"
        )
    return pod


def _bounded(text: str | None, name: str) -> str | None:
    if text is not None and len(text) > FILE_MAX:
        raise ConfigError(f"{name} is {len(text)} characters long; podci reads at most {FILE_MAX}")
    return text


def load(config_text: str | None, read_file: Callable[[str], str | None]) -> LoadedConfig:
    """`read_file(path) -> str | None` fetches the pod template the config names."""
    config = parse_config(_bounded(config_text, CONFIG_FILE))
    template = _bounded(read_file(config.pod_template), f"the pod template `{config.pod_template}`")
    return LoadedConfig(config, parse_pod_template(template, config))
