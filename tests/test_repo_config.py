"""workers/repo_config.py: valid configs parse; invalid ones fail with a message naming the field."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import pytest
import yaml

from schemas import repo_config as schema
from workers.repo_config import ConfigError, load, parse_config, parse_pod_template

TEST = "test: {container: app, command: make test}\n"
POD = "containers:\n- name: app\n  image: python:3.12\n  command: [sleep, infinity]\n"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [(TEST, "test.command", "make test"),
     ("test: {container: app, command: [pytest, -q]}", "test.command", ["pytest", "-q"]),
     (TEST, "setup.ready", True),
     (TEST + "setup: {file: .podci-ready}", "setup.file", ".podci-ready"),
     (TEST + "setup: {file: .podci-ready}", "setup.ready", False),
     (TEST + "setup: {ready: true}", "setup.file", None),
     (TEST + "timeouts: {setup: 12.5}", "timeouts.setup", 12.5),
     (TEST + "volume: {size: 500Mi, mount_path: /src}", "volume.size", "500Mi"),
     (TEST + "pod_template: ci/pod.yml", "pod_template", "ci/pod.yml"),
     (TEST + "max_attempts: 10", "max_attempts", 10)],
)  # fmt: skip
def test_valid_config(text: str, field: str, expected: Any) -> None:
    assert attrgetter(field)(parse_config(text)) == expected


@pytest.mark.parametrize(
    ("command", "argv"),
    [("make test", ["sh", "-c", "make test"]), ("a && b | c", ["sh", "-c", "a && b | c"]),
     (["pytest", "-q"], ["pytest", "-q"])],
)  # fmt: skip
def test_testspec_argv(command: str | list[str], argv: list[str]) -> None:
    assert schema.TestSpec(container="app", command=command).argv() == argv


@pytest.mark.parametrize(
    ("text", "needles"),
    [(None, ["no .podci.yml"]),
     ("", [".podci.yml", "mapping"]),
     ("- test", [".podci.yml", "mapping"]),
     ("test:\n  container: app\n   command: x\n", ["not valid YAML", "line 3"]),
     (TEST + "timeouts: {setup: 0}", ["`timeouts.setup`"]),
     (TEST + "timeouts: {tests: soon}", ["`timeouts.tests`"]),
     ("test: {container: app}", ["`test.command`"]),
     ("test: {command: x}", ["`test.container`"]),
     ("setup: {ready: true}", ["`test`"]),
     (TEST + "setup: {file: x, ready: true}", ["`setup`", "exactly one"]),
     (TEST + "setup: {ready: false}", ["`setup`", "exactly one"]),
     (TEST + "setup: {file: /tmp/ready}", ["`setup`", "relative"]),
     (TEST + "setup: {file: a/../../x}", ["`setup`", "relative"]),
     (TEST + "volume: {size: 1 GB}", ["`volume", "1 GB"]),
     (TEST + "volume: {mount_path: workspace}", ["`volume.mount_path`"]),
     (TEST + "max_attempts: 0", ["`max_attempts`"]),
     (TEST + "tset: {}", ["`tset`"])],
)  # fmt: skip
def test_invalid_config_names_the_field(text: str | None, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    for needle in needles:
        assert needle in str(err.value)


FULL_POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  " + POD.replace("\n", "\n  ")
EXTRAS = POD + "  resources: {limits: {cpu: '1'}}\n- name: db\n  image: postgres\n  command: [postgres]\n"


@pytest.mark.parametrize(
    ("text", "spec"),
    [(POD, yaml.safe_load(POD)), (FULL_POD, yaml.safe_load(POD)), (EXTRAS, yaml.safe_load(EXTRAS))],
)
def test_valid_pod_template_returns_the_spec_untouched(text: str, spec: dict[str, Any]) -> None:
    assert parse_pod_template(text, parse_config(TEST)).as_written() == spec


DUPLICATE = POD + "- name: app\n  image: x\n  command: [y]\n"


@pytest.mark.parametrize(
    ("text", "needles"),
    [(None, ["`.podci/pod.yaml`", "does not exist"]),
     ("- app", ["mapping"]),
     ("containers:\n- name: app\n   image: x\n", ["not valid YAML", "line 3"]),
     ("containers:\n- {name: app, image: x}\n", ["container `app`", "`command`"]),
     (DUPLICATE, ["`containers`", "container names must be unique"]),
     ("kind: Deployment\nspec: {}\n", ["Deployment", "only `Pod`"]),
     ("kind: Pod\n", ["`kind: Pod`", "`spec`"]),
     ("containers: []", ["`containers`"]),
     ("containers:\n- {name: App, image: x, command: [y]}\n", ["`containers[0].name`"]),
     ("containers:\n- {name: app, command: [y]}\n", ["`containers[0].image`"]),
     (POD + "  ports: [{containerPort: 0}]\n", ["`containers[0].ports[0].containerPort`"]),
     (POD.replace("name: app", "name: web"), ["`test.container`", "'app'", "web"])],
)  # fmt: skip
def test_invalid_pod_template_names_the_problem(text: str | None, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_pod_template(text, parse_config(TEST))
    for needle in needles:
        assert needle in str(err.value)
    assert str(err.value).count(".podci/pod.yaml") <= 1  # said once, not wrapped twice


@pytest.mark.parametrize(
    ("config", "template", "field"),
    [(TEST + "volume: {size: 1 GB}", POD, "`volume.size`"), (TEST, DUPLICATE, "`containers`")],
    ids=["volume-size", "duplicate-containers"],
)
def test_model_level_errors_name_the_field(config: str, template: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(config, {".podci/pod.yaml": template}.get)
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("config", "files", "containers"),
    [(TEST, {".podci/pod.yaml": POD}, ["app"]),
     (TEST + "pod_template: ci/pod.yml", {"ci/pod.yml": FULL_POD}, ["app"]),
     (TEST, {".podci/pod.yaml": EXTRAS}, ["app", "db"])],
)  # fmt: skip
def test_load(config: str, files: dict[str, str], containers: list[str]) -> None:
    loaded = load(config, files.get)
    assert loaded.config == parse_config(config)
    assert [c.name for c in loaded.pod_spec.containers] == containers


@pytest.mark.parametrize(
    ("config", "files", "needle"),
    [(None, {".podci/pod.yaml": POD}, ".podci.yml"),
     (TEST + "pod_template: ci/pod.yml", {".podci/pod.yaml": POD}, "`ci/pod.yml`")],
)  # fmt: skip
def test_load_missing_file_names_it(config: str | None, files: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=r"does not exist|has no") as err:
        load(config, files.get)
    assert needle in str(err.value)


RERUN_TEST = "test: {container: app, command: make test, rerun: 'python -m unittest -v {tests}'}\n"
RERUN_LIST = "test: {container: app, command: x, rerun: [pytest, '{tests}', -q]}"
TWICE = "test: {container: app, command: x, rerun: 'pytest {tests} {tests}'}"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [(TEST, "flaky.rerun", 0),
     (RERUN_TEST + "flaky: {rerun: 1}", "flaky.rerun", 1),
     (RERUN_TEST, "test.rerun", ["python", "-m", "unittest", "-v", "{tests}"]),
     (RERUN_LIST, "test.rerun", ["pytest", "{tests}", "-q"])],
)  # fmt: skip
def test_flaky_config(text: str, field: str, expected: Any) -> None:
    assert attrgetter(field)(parse_config(text)) == expected


@pytest.mark.parametrize(
    ("text", "needles"),
    [(TEST + "flaky: {rerun: 2}", ["`flaky.rerun`", "0 or 1"]),
     (TEST + "flaky: {rerun: 1}", ["`flaky.rerun: 1` needs `test.rerun`", "{tests}"]),
     (TEST + "flaky: {rerun: 1, times: 3}", ["`flaky.times`"]),
     ("test: {container: app, command: x, rerun: pytest}", ["`test.rerun`", "`{tests}` exactly once"]),
     (TWICE, ["`test.rerun`", "exactly once"]),
     ("test: {container: app, command: x, rerun: 'pytest -k{tests}'}", ["`test.rerun`", "of its own"]),
     ("test: {container: app, command: x, rerun: \"pytest '{tests}\"}", ["`test.rerun`", "cannot be split"])],
)  # fmt: skip
def test_flaky_config_errors_are_sentences(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    for needle in needles:
        assert needle in str(caught.value)


def test_rerun_argv_puts_each_name_in_an_argument_of_its_own() -> None:
    spec = parse_config(RERUN_TEST).test
    names = ["app.T.a; rm -rf /", "app.T.$(b)"]
    assert spec.rerun_argv(names) == ["python", "-m", "unittest", "-v", *names]
