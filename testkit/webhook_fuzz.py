"""The webhook fuzzer's generators and rig, shared by `tests/test_fuzz_webhooks.py` (a few hundred
examples per target in `make test`) and `bench/fuzz.py` (10,000+ bodies, counted).

Generators build bodies from the payload corpora (podci's own, and the third-party one when it is
beside the checkout), mutated and poisoned; `Rig` runs the receiver in process with a real Redis
behind it and checks every answer against what the pure parser predicts (see the test module's
docstring for the contract).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis import Redis

from dispatch.app import QUEUE_NEW, QUEUE_STEPS
from events import bitbucket, jenkins
from events.errors import PayloadError
from events.options import ParseOptions
from events.signature import sign
from podci.server import create_app
from schemas.event import Action, Decision
from schemas.settings import Settings
from store import keys as redis_keys
from store.connection import as_text
from testkit.corpus import SHARED_FIXTURES
from testkit.corpus import load as load_own_corpus

EXAMPLES = int(os.environ.get("PODCI_FUZZ_EXAMPLES") or 250)
# schemathesis runs each operation in two modes; this keeps its share of the budget to about a tenth.
SCHEMA_EXAMPLES = max(5, EXAMPLES // 10)
# JSON nested deeper than this makes json.loads in events/receiver.py raise RecursionError (a 500; see
# test_hostile_requests). Well below that, so the fuzz never trips over the known bug.
MAX_DEPTH = 200
MAX_BODY = 64 * 1024  # small, so that the huge strings of the generators also reach the 413 branch

Hooks = Literal["bitbucket-cloud", "bitbucket-server", "jenkins"]
PROVIDERS: tuple[Hooks, ...] = ("bitbucket-cloud", "bitbucket-server", "jenkins")
SECRETS = {
    "bitbucket-cloud": "cloud-secret-for-fuzz",
    "bitbucket-server": "server-secret-for-fuzz",
    "jenkins": "jenkins-key-for-fuzz",
}
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
        name = f"shared/{path.relative_to(SHARED_FIXTURES)}"
        seeds.append(Seed(provider, name, headers, json.dumps(body)))
    return seeds


def _own_seeds() -> dict[Hooks, list[Seed]]:
    """Every case of the own corpus whose body is JSON, with the headers it is sent with (but its
    signature: each delivery here is signed afresh with the rig's secret)."""
    seeds: dict[Hooks, list[Seed]] = {provider: [] for provider in PROVIDERS}
    for case in load_own_corpus():
        if case.is_json:
            headers = {k: v for k, v in case.lowered.items() if k not in DROPPED_HEADERS}
            seeds[case.sender].append(Seed(case.sender, case.id, headers, json.dumps(case.body())))
    return seeds


def load_corpus() -> dict[Hooks, list[Seed]]:
    """The own corpus always; the shared one's payloads too when it is beside the checkout."""
    corpus = _own_seeds()
    if SHARED_FIXTURES.is_dir():
        folders: tuple[tuple[Hooks, str], ...] = (
            ("bitbucket-cloud", "*.json"),
            ("bitbucket-server", "**/*.json"),
        )
        for provider, pattern in folders:
            corpus[provider] += _bitbucket_seeds(provider, SHARED_FIXTURES / provider, pattern)
    return corpus


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


CORPUS = load_corpus()
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


def _nested(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=6)


json_values = st.recursive(scalars, _nested, max_leaves=24)
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


def depth(value: Any) -> int:
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
        ParseOptions(),  # every clone URL refused: the parsers must still answer with a sentence
        ParseOptions(branch_builds=("*",), jenkins_phase="FINALIZED", clone_hosts=("*",)),
        ParseOptions(
            branch_builds=("team/*", "PRJ/*"),
            server_base_url="https://bitbucket.example.com/",
            clone_hosts=("bitbucket.org", "bitbucket.example.com"),
            jenkins_urls=("https://jenkins.example.com/",),
        ),
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


def check_sentence(message: str, sent: str = "") -> None:
    """What a sender reads in `{"error": ...}`: short, one piece of text that can go out as UTF-8.
    `sent`: the request's own text; a word of Python's in it (an event named `NoneType`) may be quoted."""
    assert message and not message[0].isspace(), f"empty or indented message {message!r}"
    assert len(message) <= 1000, f"a {len(message)}-character message: {message[:200]!r}..."
    message.encode("utf-8")  # a lone surrogate here is a 500 when the reply is rendered
    for leak in ("Traceback", "<class ", " object at 0x", "NoneType", "KeyError", "TypeError"):
        assert leak not in message or leak in sent, f"{leak!r} leaks into {message!r}"


def check_decision(decision: Decision, sent: str = "") -> None:
    """The invariants the receiver relies on when it acts on a decision (events/intake.py)."""
    check_sentence(decision.reason, sent)
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
    sent = repr(dict(headers)) + repr(body)
    try:
        decision = parse(headers, body, options)
    except PayloadError as refused:
        check_sentence(str(refused), sent)
        return refused
    check_decision(decision, sent)
    return decision


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
    assume(depth(value) < MAX_DEPTH)  # see the module docstring
    how = draw(st.sampled_from(ENCODINGS))
    if how == "bytes":
        body = draw(st.binary(max_size=64))
    elif how == "empty":
        body = b""
    else:
        body = encode(value, how, draw(st.integers(0, 10_000)))
    signing = draw(st.sampled_from(GOOD_SIGNATURES * 2 + BAD_SIGNATURES))
    # Latin-1 too: uvicorn hands header bytes 0x80-0xff over as such (a non-ASCII signature was a 500).
    printable = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=["Cc"])
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
    return sum(1 for _ in redis.scan_iter(match=redis_keys.build("*"))) + int(redis.zcard(redis_keys.BUILDS))


def answered(action: str) -> tuple[str, ...]:
    """The receiver's answers that agree with the parser's `action`: a redelivery is a duplicate, and a
    retest the pull request's builds do not allow now (none yet, or one running) is ignored."""
    return (action, "duplicate", "ignored") if action == "retest" else (action, "duplicate")


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
                "clone_hosts": "*",  # any host; paths and other transports are still refused
                "trust_everyone": True,  # a build is a record and its first step (approval: tests/security)
                "jenkins_urls": "https://jenkins.example.com/",
                "max_body_bytes": MAX_BODY,
                **(
                    {f"{p.replace('-', '_')}_secret": secret for p, secret in SECRETS.items()}
                    if secrets
                    else {"insecure_unsigned_hooks": ",".join(SECRETS)}  # every request reaches a parser
                ),
            }
        )
        self.options = ParseOptions(
            branch_builds=("*",),
            jenkins_phase=self.settings.jenkins_phase,
            clone_hosts=self.settings.clone_host_patterns,
            jenkins_urls=self.settings.jenkins_url_prefixes,
            trust_everyone=self.settings.trust_everyone,
        )
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
        elif got == 200 and action and answer.get("action") not in answered(action):
            self.fail(delivery, f"expected action {action}, got {text}")
        if not self.accept_builds and (written := self.written()):
            self.fail(delivery, f"{len(written)} Redis keys after a {got}: {written[:5]}")
        return got, answer

    def written(self) -> list[str]:
        """Keys in Redis but remembered deliveries: a delivery that cancels is remembered by its id (so
        a replay does nothing), and that is all a refused or ignored one may leave."""
        remembered = redis_keys.dedupe("delivery:")
        return sorted(k for k in map(as_text, self.redis.scan_iter()) if not k.startswith(remembered))

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
