"""schemas/request.py: accepted refs, URLs and commits; schemas/errors.py: error sentences."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.errors import describe, field_path
from schemas.repo_config import PodSpec
from schemas.request import BuildRequest, Revision, check_ref


@pytest.mark.parametrize(
    "ref", ["main", "feature/login", "release-1.2", "v1.0.0", "user/jo_e/fix-#12", "a.b", "x@y", "HEAD"]
)
def test_ref_accepted(ref: str) -> None:
    assert check_ref(ref) == ref
    assert Revision(clone_url="/srv/repo", ref=ref).ref == ref


@pytest.mark.parametrize(
    "ref",
    ["", "-x", "--upload-pack=evil", "a..b", "a b", "x:y", "x.lock", "a//b", "a/", "a.", "a~1", "a^", "a?",
     "a*", "a[b", "a\\b", "a@{1}", "a\x00b", "a\x01b", "a\tb", "a\nb", "a\x1fb", "a\x7fb",
     "/main", "a/.b", ".hidden"],
)  # fmt: skip
def test_ref_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="not a usable git ref name"):
        check_ref(ref)
    with pytest.raises(ValidationError, match="not a usable git ref name"):
        Revision(clone_url="/srv/repo", ref=ref)


@pytest.mark.parametrize(
    ("url", "ok"),
    [("https://github.com/team/web.git", True), ("/srv/repo", True), ("git@github.com:team/web.git", True),
     ("-uevil", False), ("--upload-pack=touch /tmp/x", False), ("", False), ("https://x/\nrm", False)],
)  # fmt: skip
def test_clone_url(url: str, ok: bool) -> None:
    if ok:
        assert Revision(clone_url=url, ref="main").clone_url == url
    else:
        with pytest.raises(ValidationError, match="clone_url"):
            Revision(clone_url=url, ref="main")


@pytest.mark.parametrize(
    ("commit", "ok"),
    [(None, True), ("abc1234", True), ("0" * 40, True), ("abc123", False), ("0" * 41, False),
     ("ABC1234", False), ("xyz1234", False), ("abc1234 ", False), ("abc1234\n", False), ("", False)],
)  # fmt: skip
def test_commit_pattern(commit: str | None, ok: bool) -> None:
    if ok:
        assert Revision(clone_url="/r", ref="main", commit=commit).commit == commit
    else:
        with pytest.raises(ValidationError, match="commit"):
            Revision(clone_url="/r", ref="main", commit=commit)


REQ = {"job": "web", "repo": "team/web", "source": {"clone_url": "/r", "ref": "main"}}


@pytest.mark.parametrize(
    ("model", "data", "paths"),
    [(BuildRequest, {**REQ, "source": {"clone_url": "/r", "ref": "-x"}}, ["source.ref"]),
     (BuildRequest, {**REQ, "target": {"clone_url": "/r", "ref": "main", "commit": "zz"}}, ["target.commit"]),
     (BuildRequest, {**REQ, "job": "", "number": 0}, ["job", "number"]),
     (BuildRequest, {**REQ, "colour": "red"}, ["colour"]),
     (PodSpec, {"containers": [{"name": "ok", "image": "x"}, {"name": "Bad", "image": "x"}]},
      ["containers[1].name"]),
     (PodSpec, {"containers": [{"name": "a", "image": "x", "env": [{"name": "1X"}]}]},
      ["containers[0].env[0].name"])],
)  # fmt: skip
def test_describe_names_the_dotted_path(
    model: type[BaseModel], data: dict[str, Any], paths: list[str]
) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
    message = describe(err.value, "the request")
    assert message.startswith("the request is invalid: `")
    assert message.endswith(".")
    assert message.count("`") == 2 * len(paths)
    for path in paths:
        assert f"`{path}`: " in message


@pytest.mark.parametrize(
    ("loc", "expected"),
    [((), "(top level)"), (("job",), "job"), (("timeouts", "setup"), "timeouts.setup"),
     (("containers", 0, "ports", 2, "name"), "containers[0].ports[2].name"), ((3, "x"), "[3].x")],
)  # fmt: skip
def test_field_path(loc: tuple[int | str, ...], expected: str) -> None:
    assert field_path(loc) == expected
