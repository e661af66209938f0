"""What a Bitbucket build status says about a build: pure functions, no I/O, so every rule is table-tested.

The limits come from the shared API notes (section "Build-status APIs"): Bitbucket Cloud refuses a `key`
over 40 characters with a 400, Server/DC keys are kept to 255 characters the way
bitbucket-branch-source-plugin does it, `name` is kept to 255 characters, and `url` must stay under 450
characters and cannot be cut without breaking the link. The three APIs accept different state sets.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal
from urllib.parse import quote

from schemas.record import BuildRecord, BuildState

Api = Literal["cloud", "server", "legacy"]

CLOUD_KEY_MAX = 40
SERVER_KEY_MAX = 255
_SERVER_KEY_HEAD = 222  # 222 + "/" + 32 hex digits = 255, as bitbucket-branch-source-plugin shortens it
NAME_MAX = 255
DESCRIPTION_MAX = 255
URL_LIMIT = 450  # the URL must be shorter than this

# The state each API accepts for each build state. Cloud has STOPPED, the Server/DC builds API has
# CANCELLED, and the legacy 1.0 API knows only three states, so a stopped build can only be FAILED there
# (it did not pass, and SUCCESSFUL would let a pull request merge).
STATES: dict[Api, dict[BuildState, str]] = {
    "cloud": {
        BuildState.awaiting_approval: "INPROGRESS",
        BuildState.queued: "INPROGRESS",
        BuildState.running: "INPROGRESS",
        BuildState.succeeded: "SUCCESSFUL",
        BuildState.failed: "FAILED",
        BuildState.error: "FAILED",
        BuildState.stopped: "STOPPED",
    },
    "server": {
        BuildState.awaiting_approval: "INPROGRESS",
        BuildState.queued: "INPROGRESS",
        BuildState.running: "INPROGRESS",
        BuildState.succeeded: "SUCCESSFUL",
        BuildState.failed: "FAILED",
        BuildState.error: "FAILED",
        BuildState.stopped: "CANCELLED",
    },
    "legacy": {
        BuildState.awaiting_approval: "INPROGRESS",
        BuildState.queued: "INPROGRESS",
        BuildState.running: "INPROGRESS",
        BuildState.succeeded: "SUCCESSFUL",
        BuildState.failed: "FAILED",
        BuildState.error: "FAILED",
        BuildState.stopped: "FAILED",
    },
}


def _md5(text: str) -> str:
    # Not a security use: a short, stable stand-in for a name that is too long, as the plugin does.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def status_key(job: str) -> str:
    """The Cloud status key: one per job, so a rebuild of the same commit replaces its status.

    Cloud answers 400 for a key over 40 characters; a longer one becomes its md5 (32 hex digits), which
    stays stable for the job and distinct from other jobs.
    """
    key = f"podci-{job}"
    return key if len(key) <= CLOUD_KEY_MAX else _md5(key)


def server_key(job: str) -> str:
    """The Server/DC key: readable up to 255 characters; beyond, 222 characters, `/`, and the md5 of all."""
    return _server_shortened(f"podci-{job}")


def parent_key(repo: str) -> str:
    """The Server/DC `parent`: one key for every job of the repository (each pull request and branch is
    a job of its own, with a key of its own, so no merge check could name those). Bitbucket DC's
    required-builds merge check matches the key it is given against a status's `parent` as well as its
    `key`, so an admin requires `podci-PROJECT/repo` once and every pull request's build satisfies it."""
    return _server_shortened(f"podci-{repo}")


def _server_shortened(key: str) -> str:
    if len(key) <= SERVER_KEY_MAX:
        return key
    return f"{key[:_SERVER_KEY_HEAD]}/{_md5(key)}"


def state_for(state: BuildState, api: Api) -> str:
    """The state name `api` accepts for a build in `state`."""
    return STATES[api][state]


WAITING_NOTE = " (waiting for approval)"


def said(state: BuildState, api: Api) -> str:
    """What a post in `state` says, as remembered in `record.reported`. A build waiting for approval
    and the same build once approved are both INPROGRESS, but say different things (the description
    asks for an approval): the approved build must post again."""
    name = state_for(state, api)
    return name + WAITING_NOTE if state is BuildState.awaiting_approval else name


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a reason may hold a newline or a log line; the UI shows one line
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def description(record: BuildRecord) -> str:
    """One short sentence for the pull request page: what happened, with the JUnit counts when known."""
    tests = record.tests
    state = record.state
    if state is BuildState.awaiting_approval:
        text = "waiting for approval: a trusted person comments /podci ok-to-test"
    elif not state.final:
        text = f"build {record.number} {state.value}"
    elif state is BuildState.succeeded:
        if tests is not None and tests.total is not None:
            skipped = tests.skipped or 0
            passed = max(0, tests.total - (tests.failed or 0) - skipped)
            text = f"{_plural(passed, 'test')} passed" + (f", {skipped} skipped" if skipped else "")
        else:
            text = "tests passed"
        if record.warnings:  # green, but not quite: a reviewer should see why (a rerun, say)
            text += f"; {record.warnings[0]}"
    elif (
        state is BuildState.failed
        and tests is not None
        and tests.total is not None
        and tests.failed is not None
        and tests.failed > 0
    ):
        text = f"{tests.failed} of {_plural(tests.total, 'test')} failed"
    else:
        text = record.reason or f"build {record.number} {state.value}"
    return _clip(text, DESCRIPTION_MAX)


# The build page's first section on a failed build: what the author clicked through for.
FAILING_TESTS_ANCHOR = "failing-tests"


def build_url(record: BuildRecord, public_url: str) -> str:
    """The build page (its failing tests, for a failed build). Refused (ValueError) when 450
    characters or more: a cut link leads nowhere."""
    url = f"{public_url.rstrip('/')}/builds/{record.id}"
    if record.state is BuildState.failed:
        url += f"#{FAILING_TESTS_ANCHOR}"
    if len(url) >= URL_LIMIT:
        raise ValueError(f"the build URL is {len(url)} characters; Bitbucket needs fewer than {URL_LIMIT}")
    return url


def _cloud_url(url: str) -> str:
    """Cloud reads `url` as a URI template (`{repository.full_name}`): a literal brace must be escaped."""
    url = url.replace("{", "%7B").replace("}", "%7D")
    if len(url) >= URL_LIMIT:
        raise ValueError(f"the build URL is {len(url)} characters; Bitbucket needs fewer than {URL_LIMIT}")
    return url


def name(record: BuildRecord) -> str:
    """The display name; per job, like the key, so the status line keeps its label across builds."""
    return _clip(f"podci {record.job}", NAME_MAX)


def _ref(record: BuildRecord) -> str:
    ref = record.request.source.ref
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def cloud_body(record: BuildRecord, public_url: str) -> dict[str, Any]:
    """The JSON for `POST …/commit/{commit}/statuses/build` (Bitbucket Cloud)."""
    return {
        "key": status_key(record.job),
        "state": state_for(record.state, "cloud"),
        "name": name(record),
        "description": description(record),
        "url": _cloud_url(build_url(record, public_url)),
        "refname": record.request.source.ref,
    }


def server_body(record: BuildRecord, public_url: str) -> dict[str, Any]:
    """The JSON for the Server/DC builds API; `duration` and `testResults` only when they are known.
    `ref` (the source branch) and `parent` are what the required-builds merge check matches on."""
    body: dict[str, Any] = {
        "key": server_key(record.job),
        "state": state_for(record.state, "server"),
        "name": name(record),
        "url": build_url(record, public_url),
        "description": description(record),
        "buildNumber": str(record.number),
        "ref": _ref(record),
        "parent": parent_key(record.request.repo),
    }
    if record.state.final and record.started is not None and record.finished is not None:
        body["duration"] = max(0, int((record.finished - record.started).total_seconds() * 1000))
    tests = record.tests
    if tests is not None and tests.total is not None and tests.failed is not None:
        skipped = tests.skipped or 0
        body["testResults"] = {
            "successful": max(0, tests.total - tests.failed - skipped),
            "failed": tests.failed,
            "skipped": skipped,
        }
    return body


def legacy_body(record: BuildRecord, public_url: str) -> dict[str, Any]:
    """The JSON for the legacy `POST /rest/build-status/1.0/commits/{commit}`: five fields, three states."""
    return {
        "state": state_for(record.state, "legacy"),
        "key": server_key(record.job),
        "name": name(record),
        "url": build_url(record, public_url),
        "description": description(record),
    }


_REPO = re.compile(r"^([^/\s]+)/([^/\s]+)$")


def split_repo(repo: str) -> tuple[str, str] | None:
    """`workspace/slug` (Cloud) or `PROJECT/slug` (Server); None for anything else."""
    match = _REPO.match(repo)
    return (match.group(1), match.group(2)) if match else None


def _seg(text: str) -> str:
    return quote(text, safe="")


def _owner_slug_commit(record: BuildRecord) -> tuple[str, str, str] | None:
    """The repository's two parts (path-escaped) and the source commit, when all are known."""
    commit = record.request.source.commit
    parts = split_repo(record.request.repo)
    if commit is None or parts is None:
        return None
    return _seg(parts[0]), _seg(parts[1]), commit


def cloud_path(record: BuildRecord) -> str | None:
    """The Cloud status path under the API root, or None when the source commit or repository is unknown."""
    known = _owner_slug_commit(record)
    if known is None:
        return None
    workspace, slug, commit = known
    return f"/2.0/repositories/{workspace}/{slug}/commit/{commit}/statuses/build"


def server_path(record: BuildRecord) -> str | None:
    """The Server/DC builds API path, or None when the source commit or repository is unknown."""
    known = _owner_slug_commit(record)
    if known is None:
        return None
    project, slug, commit = known
    return f"/rest/api/latest/projects/{project}/repos/{slug}/commits/{commit}/builds"


def legacy_path(record: BuildRecord) -> str | None:
    """The legacy 1.0 path: tied to the commit only, so the repository's form does not matter."""
    commit = record.request.source.commit
    return None if commit is None else f"/rest/build-status/1.0/commits/{commit}"
