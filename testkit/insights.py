"""The Code Insights half of the Bitbucket stand-ins (`testkit.bitbucket.StandIn` hands it every request
under `…/reports/`): reports and annotations checked against the documented shapes and limits, answered
as the product answers, and kept, so a GET reads back what was accepted.

Cloud: `PUT|GET|DELETE /2.0/repositories/{ws}/{slug}/commit/{commit}/reports/{id}`,
`POST|GET …/reports/{id}/annotations` (a list of at most 100; the GET is paginated).
Server/DC: `PUT|GET|DELETE /rest/insights/1.0/projects/{key}/repos/{slug}/commits/{commit}/reports/{key}`,
`POST|GET|DELETE …/reports/{key}/annotations` (`{"annotations": [...]}`).
The limits are the ones `workers.reporters.insights` lists, with the sources in the README ("Results").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

Product = Literal["cloud", "server"]

_PATHS: dict[Product, re.Pattern[str]] = {
    "cloud": re.compile(
        r"^/2\.0/repositories/[^/]+/[^/]+/commit/(?P<commit>[0-9a-f]{7,40})/reports/(?P<key>[^/?]+)"
        r"(?P<annotations>/annotations)?(?:\?(?P<query>.*))?$"
    ),
    "server": re.compile(
        r"^/rest/insights/1\.0/projects/[^/]+/repos/[^/]+/commits/(?P<commit>[0-9a-f]{40})/reports/"
        r"(?P<key>[^/?]+)(?P<annotations>/annotations)?(?:\?(?P<query>.*))?$"
    ),
}

DATA_TYPES = frozenset({"BOOLEAN", "DATE", "DURATION", "LINK", "NUMBER", "PERCENTAGE", "TEXT"})
ANNOTATION_TYPES = frozenset({"VULNERABILITY", "CODE_SMELL", "BUG"})


@dataclass(frozen=True)
class Rules:
    report_fields: frozenset[str]
    report_required: frozenset[str]
    results: frozenset[str]
    data_max: int
    lengths: dict[str, int]  # report field -> most characters
    link_keys: frozenset[str]  # a LINK datum's value
    annotation_fields: frozenset[str]
    annotation_required: frozenset[str]
    annotation_lengths: dict[str, int]
    severities: frozenset[str]
    per_request: int | None
    per_report: int


RULES: dict[Product, Rules] = {
    "cloud": Rules(
        report_fields=frozenset(
            {
                "title",
                "details",
                "external_id",
                "reporter",
                "link",
                "remote_link_enabled",
                "logo_url",
                "report_type",
                "result",
                "data",
            }
        ),
        report_required=frozenset({"title", "details", "report_type"}),
        results=frozenset({"PASSED", "FAILED", "PENDING"}),
        data_max=10,
        lengths={"details": 2000, "title": 450, "reporter": 450},
        link_keys=frozenset({"text", "href"}),
        annotation_fields=frozenset(
            {
                "external_id",
                "title",
                "annotation_type",
                "summary",
                "details",
                "result",
                "severity",
                "path",
                "line",
                "link",
            }
        ),
        annotation_required=frozenset({"external_id", "annotation_type", "summary"}),
        annotation_lengths={"summary": 450, "details": 2000, "external_id": 450},
        severities=frozenset({"LOW", "MEDIUM", "HIGH", "CRITICAL"}),
        per_request=100,
        per_report=1000,
    ),
    "server": Rules(
        report_fields=frozenset({"title", "details", "result", "data", "reporter", "link", "logoUrl"}),
        report_required=frozenset({"title"}),
        results=frozenset({"PASS", "FAIL"}),
        data_max=6,
        lengths={"title": 450, "details": 2000, "reporter": 450},
        link_keys=frozenset({"linktext", "href"}),
        annotation_fields=frozenset({"path", "line", "message", "severity", "link", "type", "externalId"}),
        annotation_required=frozenset({"path", "line", "message", "severity"}),
        annotation_lengths={"message": 2000, "externalId": 450},
        severities=frozenset({"LOW", "MEDIUM", "HIGH"}),
        per_request=None,
        per_report=1000,
    ),
}


def _too_long(name: str, value: Any, most: int) -> list[str]:
    if isinstance(value, str) and len(value) > most:
        return [f"The {name} field cannot contain more than {most} characters."]
    return []


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://", value) is not None


def _number(value: Any) -> bool:
    return type(value) in (int, float)


_VALUE_CHECKS: dict[str, Callable[[Any, Rules], bool]] = {
    "BOOLEAN": lambda v, r: type(v) is bool,
    "DATE": lambda v, r: type(v) is int,
    "DURATION": lambda v, r: type(v) is int and v >= 0,
    "NUMBER": lambda v, r: _number(v),
    "PERCENTAGE": lambda v, r: _number(v) and 0 <= v <= 100,
    "TEXT": lambda v, r: isinstance(v, str),
    "LINK": lambda v, r: isinstance(v, dict) and set(v) == r.link_keys and _is_url(v.get("href")),
}


def check_data(product: Product, data: Any) -> list[str]:
    rules = RULES[product]
    if not isinstance(data, list):
        return ["data is not a list"]
    if len(data) > rules.data_max:
        return [f"A report cannot have more than {rules.data_max} data fields (it has {len(data)})."]
    problems = []
    for n, datum in enumerate(data):
        if not isinstance(datum, dict) or not isinstance(datum.get("title"), str) or "value" not in datum:
            problems.append(f"data[{n}] needs a title and a value")
            continue
        kind = datum.get("type")
        if kind is None:
            continue
        if kind not in DATA_TYPES:
            problems.append(f"data[{n}].type {kind!r} is not one of {sorted(DATA_TYPES)}")
        elif not _VALUE_CHECKS[kind](datum["value"], rules):
            problems.append(f"data[{n}].value {datum['value']!r} is not a {kind}")
    return problems


def check_report(product: Product, body: Any) -> list[str]:
    """Everything wrong with a report's PUT body."""
    rules = RULES[product]
    if not isinstance(body, dict):
        return ["the report is not a JSON object"]
    problems = [f"missing {k}" for k in sorted(rules.report_required - body.keys())]
    problems += [f"unknown field {k}" for k in sorted(body.keys() - rules.report_fields)]
    for name, most in rules.lengths.items():
        problems += _too_long(name, body.get(name), most)
    if "result" in body and body["result"] not in rules.results:
        problems.append(f"result {body['result']!r} is not one of {sorted(rules.results)}")
    if product == "cloud" and body.get("report_type") not in {"SECURITY", "COVERAGE", "TEST", "BUG"}:
        problems.append(f"report_type {body.get('report_type')!r}")
    for name in ("link", "logo_url", "logoUrl"):
        if name in body and not _is_url(body[name]):
            problems.append(f"{name} must be an http or https URL")
    if "data" in body:
        problems += check_data(product, body["data"])
    return problems


def _check_annotation(product: Product, n: int, item: Any) -> list[str]:
    rules = RULES[product]
    if not isinstance(item, dict):
        return [f"annotation {n} is not an object"]
    problems = [f"annotation {n}: missing {k}" for k in sorted(rules.annotation_required - item.keys())]
    problems += [f"annotation {n}: unknown field {k}" for k in sorted(item.keys() - rules.annotation_fields)]
    for name, most in rules.annotation_lengths.items():
        problems += _too_long(name, item.get(name), most)
    kind = item.get("annotation_type" if product == "cloud" else "type")
    if kind is not None and kind not in ANNOTATION_TYPES:
        problems.append(f"annotation {n}: type {kind!r} is not one of {sorted(ANNOTATION_TYPES)}")
    if "severity" in item and item["severity"] not in rules.severities:
        problems.append(f"annotation {n}: severity {item['severity']!r}")
    if "result" in item and item["result"] not in {"PASSED", "FAILED", "IGNORED", "SKIPPED"}:
        problems.append(f"annotation {n}: result {item['result']!r}")
    line = item.get("line")
    if "line" in item and (type(line) is not int or line < (0 if product == "server" else 1)):
        problems.append(f"annotation {n}: line {line!r}")
    if "path" in item and (not isinstance(item["path"], str) or item["path"].startswith("/")):
        problems.append(f"annotation {n}: path {item['path']!r} is not relative to the repository")
    if "link" in item and not _is_url(item["link"]):
        problems.append(f"annotation {n}: link must be an http or https URL")
    return problems


def annotation_list(product: Product, body: Any) -> tuple[list[Any], list[str]]:
    """The annotations of a POST body, and everything wrong with their shape."""
    if product == "server":
        if not isinstance(body, dict) or set(body) != {"annotations"}:
            return [], ['the body must be {"annotations": [...]}']
        body = body["annotations"]
    if not isinstance(body, list):
        return [], ["the annotations are not a list"]
    limit = RULES[product].per_request
    if limit is not None and len(body) > limit:
        return body, [f"You can upload up to {limit} annotations per request (this one has {len(body)})."]
    problems = [p for n, item in enumerate(body) for p in _check_annotation(product, n, item)]
    return body, problems


def annotation_id(product: Product, item: dict[str, Any]) -> str:
    return str(item.get("external_id" if product == "cloud" else "externalId") or "")


# --- the product's side ---------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    body: Any
    problems: list[str]
    at: float = field(default_factory=time.time)  # when it was answered, for `bench/insights.py`


@dataclass
class Insights:
    """Reports and annotations as one product keeps them; every call is recorded in `seen`."""

    product: Product
    seen: list[Call] = field(default_factory=list)
    reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    annotations: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""  # the stand-in's URL, for Cloud's `next` links

    def owns(self, path: str) -> bool:
        return _PATHS[self.product].match(path) is not None

    def report(self, commit: str, key: str) -> dict[str, Any] | None:
        return self.reports.get((commit, key))

    def notes(self, commit: str, key: str) -> list[dict[str, Any]]:
        return list(self.annotations.get((commit, key), {}).values())

    def _error(self, code: int, problems: list[str]) -> tuple[int, str]:
        message = " ".join(problems)
        if self.product == "cloud":
            return code, json.dumps({"type": "error", "error": {"message": message}})
        errors = [{"context": None, "message": p, "exceptionName": None} for p in problems]
        return code, json.dumps({"errors": errors})

    def refuse(
        self, method: str, path: str, raw: bytes, *, authorized: bool, json_body: bool
    ) -> tuple[int, str] | None:
        """401 without the expected credentials, 415 for a body that is not JSON; recorded as refused."""
        if authorized and (json_body or method not in ("PUT", "POST")):
            return None
        problem = "authorization header is not the expected one" if not authorized else "not application/json"
        with self.lock:
            self.seen.append(Call(method, path, raw, [problem]))
        return self._error(401 if not authorized else 415, [problem])

    def handle(self, method: str, path: str, raw: bytes) -> tuple[int, str]:
        """The answer to one request the stand-in routed here (auth already checked)."""
        match = _PATHS[self.product].match(path)
        assert match is not None
        where = (match["commit"], match["key"])
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self.lock:
            self._at = self.base + path.partition("?")[0]
            notes, query = bool(match["annotations"]), match["query"] or ""
            code, reply = self._dispatch(method, where, notes, query, body)
            problems = [] if code < 400 or code == 404 else [reply]
            self.seen.append(Call(method, path, body, problems))
        return code, reply

    def _dispatch(
        self, method: str, where: tuple[str, str], notes: bool, query: str, body: Any
    ) -> tuple[int, str]:
        routes: dict[tuple[str, bool], Callable[[], tuple[int, str]]] = {
            ("PUT", False): lambda: self._put(where, body),
            ("GET", False): lambda: self._get(where),
            ("DELETE", False): lambda: self._delete(where),
            ("POST", True): lambda: self._post_notes(where, body),
            ("GET", True): lambda: self._get_notes(where, query),
        }
        if self.product == "server":
            routes[("DELETE", True)] = lambda: self._delete_notes(where)
        route = routes.get((method, notes))
        return route() if route is not None else self._error(405, [f"{method} is not allowed here"])

    def _put(self, where: tuple[str, str], body: Any) -> tuple[int, str]:
        problems = check_report(self.product, body)
        if problems:
            return self._error(400, problems)
        self.reports[where] = body
        return 200, json.dumps(self._shown(where))

    def _shown(self, where: tuple[str, str]) -> dict[str, Any]:
        body = self.reports[where]
        if self.product == "cloud":
            return {"type": "report", "uuid": "{" + where[1] + "}", "external_id": where[1], **body}
        return {"key": where[1], **body}

    def _get(self, where: tuple[str, str]) -> tuple[int, str]:
        if where not in self.reports:
            return self._error(404, [f"No report {where[1]} on commit {where[0]}"])
        return 200, json.dumps(self._shown(where))

    def _delete(self, where: tuple[str, str]) -> tuple[int, str]:
        if self.reports.pop(where, None) is None:
            return self._error(404, [f"No report {where[1]} on commit {where[0]}"])
        self.annotations.pop(where, None)  # a report's annotations go with it
        return 204, ""

    def _delete_notes(self, where: tuple[str, str]) -> tuple[int, str]:
        if where not in self.reports:
            return self._error(404, [f"No report {where[1]} on commit {where[0]}"])
        self.annotations.pop(where, None)
        return 204, ""

    def _post_notes(self, where: tuple[str, str], body: Any) -> tuple[int, str]:
        if where not in self.reports:
            return self._error(404, [f"No report {where[1]} on commit {where[0]}: post the report first"])
        items, problems = annotation_list(self.product, body)
        if problems:
            return self._error(400, problems)
        kept = self.annotations.setdefault(where, {})
        if self.product == "cloud":  # Cloud replaces an annotation of the same external id
            after = len(kept.keys() | {annotation_id("cloud", i) for i in items})
        else:  # Server keeps every annotation posted
            after = len(kept) + len(items)
        most = RULES[self.product].per_report
        if after > most:
            return self._error(400, [f"A report cannot have more than {most} annotations ({after})."])
        for n, item in enumerate(items):
            kept[annotation_id(self.product, item) or f"#{len(kept)}-{n}"] = item
        if self.product == "cloud":
            return 200, json.dumps([{"type": "report_annotation", **i} for i in items])
        return 204, ""

    def _get_notes(self, where: tuple[str, str], query: str) -> tuple[int, str]:
        if where not in self.reports:
            return self._error(404, [f"No report {where[1]} on commit {where[0]}"])
        notes = self.notes(*where)
        if self.product == "server":
            return 200, json.dumps({"annotations": [{**n, "reportKey": where[1]} for n in notes]})
        page = int((parse_qs(query).get("page") or ["1"])[0])
        size = 50
        values = notes[(page - 1) * size : page * size]
        answer: dict[str, Any] = {"values": values, "pagelen": size, "size": len(notes), "page": page}
        if page * size < len(notes):
            answer["next"] = f"{self._at}?page={page + 1}"
        return 200, json.dumps(answer)
