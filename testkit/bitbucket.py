"""Bitbucket stand-ins: real HTTP servers that check each build-status request against the documented
shapes (method, path, content type, auth header, body fields and their types, key and url limits, the
state set of each API) and answer as Bitbucket would: 400 with what was wrong, else 201 (Cloud) or 204
(Server/DC). A GET of a status (the documented reads) answers from what was accepted. Code Insights
reports and annotations (`…/reports/…`) are handed to `testkit.insights`, which keeps them apart
(`StandIn.insights`). Used by the tests and by `bench/`.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from testkit.insights import Insights

Api = Literal["cloud", "server", "legacy"]


# --- what the API notes allow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """One API's request rules, from the API notes."""

    states: frozenset[str]
    required: frozenset[str]
    types: dict[str, type]  # every field the API knows, with its JSON type
    key_max: int


RULES: dict[Api, Rules] = {
    "cloud": Rules(
        states=frozenset({"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"}),
        required=frozenset({"key", "state", "url"}),
        types={"key": str, "state": str, "url": str, "name": str, "description": str, "refname": str},
        key_max=40,
    ),
    "server": Rules(
        states=frozenset({"INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"}),
        required=frozenset({"key", "state", "url"}),
        types=dict(
            key=str,
            state=str,
            url=str,
            buildNumber=str,
            description=str,
            duration=int,
            lastUpdated=int,
            name=str,
            parent=str,
            ref=str,
            testResults=dict,
        ),
        key_max=255,
    ),
    "legacy": Rules(
        states=frozenset({"INPROGRESS", "SUCCESSFUL", "FAILED"}),
        required=frozenset({"key", "state", "url"}),
        types={"key": str, "state": str, "url": str, "name": str, "description": str},
        key_max=255,
    ),
}


def check(api: Api, method: str, path: str, headers: dict[str, str], raw: bytes, *, path_expected: str,
          auth_expected: str) -> list[str]:  # fmt: skip
    """Everything wrong with one request, by the API notes; empty when it is acceptable."""
    rules = RULES[api]
    problems = []
    if method != "POST":
        problems.append(f"method {method}")
    if path != path_expected:
        problems.append(f"path {path}")
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("content-type") != "application/json":
        problems.append(f"content-type {lower.get('content-type')!r}")
    if lower.get("authorization") != auth_expected:
        problems.append("authorization header is not the expected one")
    try:
        body = json.loads(raw)
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(body, dict):
        return [*problems, "body is not an object"]
    problems += [f"missing {k}" for k in sorted(rules.required - body.keys())]
    problems += [f"unknown field {k}" for k in sorted(body.keys() - rules.types.keys())]
    for k, v in body.items():
        wanted = rules.types.get(k)
        if wanted is not None and (type(v) is not wanted):  # bool is not an int here
            problems.append(f"{k} is {type(v).__name__}, not {wanted.__name__}")
    if body.get("state") not in rules.states:
        problems.append(f"state {body.get('state')!r}")
    if len(str(body.get("key", ""))) > rules.key_max:
        problems.append(f"key over {rules.key_max}")
    if len(str(body.get("url", ""))) >= 450:
        problems.append("url of 450 or more")
    if len(str(body.get("name", ""))) > 255:
        problems.append("name over 255")
    results = body.get("testResults")
    if isinstance(results, dict) and (
        results.keys() != {"successful", "failed", "skipped"}
        or any(type(n) is not int for n in results.values())
    ):
        problems.append(f"testResults {results}")
    ref = body.get("ref")
    if isinstance(ref, str) and not ref.startswith("refs/"):
        problems.append(f"ref {ref}")
    return problems


def check_lookup(
    api: Api, path: str, headers: dict[str, str], raw: bytes, *, path_expected: str, auth_expected: str
) -> tuple[list[str], str | None]:
    """Everything wrong with a GET of one status (Cloud: `…/statuses/build/{key}`; the builds API:
    `…/builds?key=`; legacy: the commit's list), and the key asked for (None: the whole list)."""
    problems = [] if raw == b"" else ["a GET with a body"]
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("authorization") != auth_expected:
        problems.append("authorization header is not the expected one")
    where, _, query = path.partition("?")
    asked = parse_qs(query)
    key: str | None = None
    if api == "cloud" and where.startswith(f"{path_expected}/") and not query:
        key = unquote(where.removeprefix(f"{path_expected}/"))
    elif api == "server" and where == path_expected and list(asked) == ["key"]:
        key = asked["key"][0]
    elif api == "legacy" and where == path_expected and set(asked) <= {"limit", "start"}:
        return problems, None
    else:
        problems.append(f"GET {path}")
    return problems, key


def lookup_answer(api: Api, statuses: dict[str, dict[str, Any]], key: str | None) -> tuple[int, str]:
    """The answer to a well-formed GET, from the statuses accepted so far (key -> last body)."""
    if api == "legacy":
        values = [{**body, "dateAdded": 0} for body in statuses.values()]
        page = {"size": len(values), "limit": 1000, "isLastPage": True, "start": 0, "values": values}
        return 200, json.dumps(page)
    found = statuses.get(key or "")
    if found is None:
        error = (
            {"type": "error", "error": {"message": "No such status"}}
            if api == "cloud"
            else {"errors": [{"message": f"No build status with key {key}"}]}
        )
        return 404, json.dumps(error)
    return 200, json.dumps({"type": "build", **found} if api == "cloud" else found)


# --- the stand-in -------------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    problems: list[str]


@dataclass
class StandIn:
    """A real HTTP server that checks each request; answers as the product does, or `status` when set."""

    api: Api
    path: str
    auth: str
    status: int | None = None
    reply: str | None = None  # the body of a forced answer; "{auth}" is replaced by the request's header
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> last accepted body
    insights: Insights = field(init=False)

    def __post_init__(self) -> None:
        stand_in = self
        self.insights = Insights("cloud" if self.api == "cloud" else "server")

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                if stand_in.api != "legacy" and stand_in.insights.owns(self.path):
                    return self._insights(raw, headers)
                if self.command == "GET":
                    return self._lookup(raw, headers)
                problems = check(stand_in.api, self.command, self.path, headers, raw,
                                 path_expected=stand_in.path, auth_expected=stand_in.auth)  # fmt: skip
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                stand_in.seen.append(Seen(self.command, self.path, headers, body, problems))
                time.sleep(stand_in.delay)
                if stand_in.status is not None:
                    code, reply = (
                        stand_in.status,
                        (stand_in.reply or "").replace("{auth}", headers.get("Authorization", "")),
                    )
                elif problems:
                    code, reply = (
                        400,
                        json.dumps({"type": "error", "error": {"message": "; ".join(problems)}}),
                    )
                elif stand_in.api == "cloud":
                    commit = self.path.split("/commit/")[-1].split("/")[0]
                    code, reply = 201, json.dumps({"type": "build", **body, "commit": {"hash": commit}})
                    stand_in.statuses[body["key"]] = body
                else:
                    code, reply = 204, ""
                    stand_in.statuses[body["key"]] = body
                self._answer(code, reply)

            def _insights(self, raw: bytes, headers: dict[str, str]) -> None:
                time.sleep(stand_in.delay)
                if stand_in.status is not None:  # an outage answers reports as it answers statuses
                    return self._answer(stand_in.status, stand_in.reply or "")
                lower = {k.lower(): v for k, v in headers.items()}
                refused = stand_in.insights.refuse(
                    self.command, self.path, raw,
                    authorized=lower.get("authorization") == stand_in.auth,
                    json_body=lower.get("content-type") == "application/json",
                )  # fmt: skip
                self._answer(*(refused or stand_in.insights.handle(self.command, self.path, raw)))

            def _lookup(self, raw: bytes, headers: dict[str, str]) -> None:
                problems, key = check_lookup(
                    stand_in.api,
                    self.path,
                    headers,
                    raw,
                    path_expected=stand_in.path,
                    auth_expected=stand_in.auth,
                )
                stand_in.seen.append(Seen(self.command, self.path, headers, None, problems))
                if stand_in.status is not None:  # an outage answers reads as it answers posts
                    return self._answer(stand_in.status, stand_in.reply or "")
                if problems:
                    return self._answer(400, json.dumps({"errors": [{"message": "; ".join(problems)}]}))
                self._answer(*lookup_answer(stand_in.api, stand_in.statuses, key))

            def _answer(self, code: int, reply: str) -> None:
                data = reply.encode()
                self.send_response(code)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.insights.base = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def one(self) -> Seen:
        """The only request received, which must have been acceptable."""
        assert len(self.seen) == 1, self.seen
        assert self.seen[0].problems == []
        return self.seen[0]
