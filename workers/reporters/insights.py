"""What a Code Insights report and its annotations say about a build: pure, so every rule is table-tested.

One report per job on the build's source commit (its key is the job's status key, so a rebuild of the
commit replaces it), with the JUnit counts, and one annotation per failed test on the file and line that
failed when the failure names them. The limits, with their sources (README, "Results"):

- Cloud: `report_type` SECURITY|COVERAGE|TEST|BUG, `result` PASSED|FAILED|PENDING, data types BOOLEAN|
  DATE|DURATION|LINK|NUMBER|PERCENTAGE|TEXT, at most 10 data fields; `annotation_type`
  VULNERABILITY|CODE_SMELL|BUG (there is no TEST), severity LOW|MEDIUM|HIGH|CRITICAL, annotation result
  PASSED|FAILED|IGNORED|SKIPPED; up to 1000 annotations a report, 100 a request; `summary` at most 450
  characters, report `details` at most 2000. `path` and `line` are optional: without a path the
  annotation shows in the report's overview.
- Server/DC: `result` PASS|FAIL (optional), at most 6 data fields, `title` and `reporter` at most 450
  characters, `details` 2000; an annotation needs `path`, `line` (0: the whole file), `message` (at most
  2000) and `severity` LOW|MEDIUM|HIGH; `type` VULNERABILITY|CODE_SMELL|BUG; `externalId` at most 450;
  1000 annotations a report, and a request that would pass that is refused whole. So a failed test
  with no place in the repository has no annotation there: the report's details name it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from schemas.names import failure_anchor
from schemas.record import BuildRecord, BuildState, TestCaseFailure
from workers.reporters import status
from workers.reporters.places import Place, place

Product = Literal["cloud", "server"]


@dataclass(frozen=True)
class Limits:
    data_fields: int
    title: int
    details: int
    summary: int  # Cloud's `summary`, Server's `message`
    annotations_per_report: int
    annotations_per_request: int
    external_id: int


LIMITS: dict[Product, Limits] = {
    # Cloud documents no title limit; Server's 450 is kept for both.
    "cloud": Limits(10, 450, 2000, 450, 1000, 100, 450),
    "server": Limits(6, 450, 2000, 2000, 1000, 1000, 450),
}
REPORTER = "podci"
_UNPLACED_NOTE = "Failed tests with no file in the repository to annotate:"


def wants_report(record: BuildRecord) -> bool:
    """A finished build with a JUnit report, a failed one without (the reason), and a stopped one (it
    says that no result will come, and replaces what an earlier build of the commit reported)."""
    if not record.state.final:
        return False
    if record.state in (BuildState.failed, BuildState.error, BuildState.stopped):
        return True
    return record.tests is not None and record.tests.total is not None


def result(record: BuildRecord, product: Product) -> str | None:
    """PASSED/FAILED (Cloud), PASS/FAIL (Server); a stopped build has none: Cloud's PENDING, and no
    `result` at all on Server, so it is never green for a commit nobody tested nor red for a build
    nobody will finish."""
    if record.state is BuildState.stopped:
        return "PENDING" if product == "cloud" else None
    passed = record.state is BuildState.succeeded
    if product == "cloud":
        return "PASSED" if passed else "FAILED"
    return "PASS" if passed else "FAIL"


def says(record: BuildRecord, product: Product) -> str:
    """What the report says, as remembered in `record.reported`."""
    tests = record.tests
    counts = f" {tests.failed or 0}/{tests.total}" if tests is not None and tests.total is not None else ""
    return f"report {result(record, product) or 'NONE'}{counts}"


def report_key(record: BuildRecord, product: Product) -> str:
    """The job's status key: one report per job and commit, replaced by a rebuild of that commit."""
    return status.status_key(record.job) if product == "cloud" else status.server_key(record.job)


def report_path(record: BuildRecord, product: Product) -> str | None:
    """`…/reports/{key}` under the API root, or None when the commit or repository is unknown."""
    statuses = status.cloud_path(record) if product == "cloud" else status.server_path(record)
    if statuses is None:
        return None
    key = quote(report_key(record, product), safe="")
    if product == "cloud":
        return statuses.removesuffix("/statuses/build") + f"/reports/{key}"
    return (
        statuses.replace("/rest/api/latest/", "/rest/insights/1.0/", 1).removesuffix("/builds")
        + f"/reports/{key}"
    )


# --- text ------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _cut(text: str, limit: int) -> str:
    """Clipped, keeping its lines (a traceback reads better whole)."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def summary(failure: TestCaseFailure, limit: int) -> str:
    """The test's name and the first line of its failure; the flaky-test note comes before the
    failure's text, so clipping a long message (or name) never loses it."""
    head = f"{_one_line(failure.name, limit // 2)} failed"  # a long name leaves room for the note
    note = failure.flaky_note.strip()
    if note:
        head += "; " + (note if note.lower().startswith("flaky") else f"flaky: {note}")
    first = _first_line(failure.message or failure.text)
    return _one_line(f"{head}: {first}" if first else head, limit)


def title(record: BuildRecord, product: Product) -> str:
    return _one_line(f"podci {record.job}", LIMITS[product].title)


def _outcome(record: BuildRecord) -> str:
    tests, state = record.tests, record.state
    build = f"build {record.job} #{record.number}"
    if state is BuildState.stopped:
        why = record.reason or "stopped"
        return f"{build} did not finish: {why}. Its result will not come; the newer build's counts."
    if tests is None or tests.total is None:
        return f"{build} {state.value}: {record.reason}" if record.reason else f"{build} {state.value}"
    skipped = f", {tests.skipped} skipped" if tests.skipped else ""
    if tests.failed:
        return f"{tests.failed} of {_plural(tests.total, 'test')} failed{skipped} in {build}."
    done = f"{_plural(tests.total, 'test')} passed{skipped} in {build}."
    return done if state is BuildState.succeeded else f"{done} {state.value}: {record.reason}"


def details(record: BuildRecord, product: Product, unplaced: Sequence[str] = ()) -> str:
    text = _outcome(record)
    if unplaced:
        text += "\n" + _UNPLACED_NOTE + "\n" + "\n".join(f"- {name}" for name in unplaced)
    return _cut(text, LIMITS[product].details)


# --- the report ------------------------------------------------------------------------------------


def _number(label: str, value: int) -> dict[str, Any]:
    return {"title": label, "type": "NUMBER", "value": value}


def _duration_ms(record: BuildRecord) -> int | None:
    if record.started is None or record.finished is None:
        return None
    return max(0, int((record.finished - record.started).total_seconds() * 1000))


def data(record: BuildRecord, url: str, product: Product) -> list[dict[str, Any]]:
    """Tests, failed, skipped, duration, pod attempts, and the build page: six, Server's most."""
    fields: list[dict[str, Any]] = []
    tests = record.tests
    if tests is not None and tests.total is not None:
        fields += [
            _number("Tests", tests.total),
            _number("Failed", tests.failed or 0),
            _number("Skipped", tests.skipped or 0),
        ]
    duration = _duration_ms(record)
    if duration is not None:
        fields.append({"title": "Duration", "type": "DURATION", "value": duration})
    fields.append(_number("Pod attempts", record.attempts))
    text = f"{record.job} #{record.number}"
    link = {"text": text, "href": url} if product == "cloud" else {"linktext": text, "href": url}
    fields.append({"title": "Build", "type": "LINK", "value": link})
    return fields[: LIMITS[product].data_fields]


def report_body(record: BuildRecord, public_url: str, product: Product) -> dict[str, Any]:
    """The JSON of the report's PUT. Raises ValueError when the build page's URL is too long."""
    url = status.build_url(record, public_url)
    unplaced = [] if product == "cloud" else [f.name for f, p in _placed(record) if p is None]
    body: dict[str, Any] = {
        "title": title(record, product),
        "details": details(record, product, unplaced),
        "reporter": REPORTER,
        "link": url,
        "data": data(record, url, product),
    }
    if product == "cloud":
        body["report_type"] = "TEST"
    outcome = result(record, product)
    if outcome is not None:
        body["result"] = outcome
    return body


# --- the annotations -------------------------------------------------------------------------------


def _roots(record: BuildRecord) -> tuple[str, ...]:
    return (record.config.volume.mount_path,) if record.config is not None else ("/workspace",)


def _placed(record: BuildRecord) -> list[tuple[TestCaseFailure, Place | None]]:
    if record.state is not BuildState.failed or record.tests is None:
        return []
    roots = _roots(record)
    return [(f, place(f.name, f.text or f.message, f.file, f.line, roots)) for f in record.tests.failures]


def external_id(index: int, failure: TestCaseFailure) -> str:
    """Stable for the test within the report, distinct for two failures of one name."""
    digest = hashlib.md5(failure.name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"podci-{index + 1}-{digest}"


def _cloud_annotation(index: int, failure: TestCaseFailure, where: Place | None, url: str) -> dict[str, Any]:
    limits = LIMITS["cloud"]
    body: dict[str, Any] = {
        "external_id": external_id(index, failure),
        "annotation_type": "BUG",
        "result": "FAILED",
        "severity": "HIGH",
        "summary": summary(failure, limits.summary),
        "link": url,
    }
    text = failure.text or failure.message
    if text:
        body["details"] = _cut(text, limits.details)
    if where is not None:
        body["path"] = where.path
        if where.line is not None:
            body["line"] = where.line
    return body


def _server_annotation(index: int, failure: TestCaseFailure, where: Place, url: str) -> dict[str, Any]:
    return {
        "externalId": external_id(index, failure),
        "type": "BUG",
        "severity": "HIGH",
        "message": summary(failure, LIMITS["server"].summary),
        "path": where.path,
        "line": where.line or 0,
        "link": url,
    }


def annotation_bodies(record: BuildRecord, public_url: str, product: Product) -> list[dict[str, Any]]:
    """One per failed test the record keeps, at most the report's cap."""
    page = status.build_url(record, public_url).partition("#")[0]
    made: list[dict[str, Any]] = []
    for index, (failure, where) in enumerate(_placed(record)):
        url = f"{page}#{failure_anchor(index)}"  # the page at that test
        if product == "cloud":
            made.append(_cloud_annotation(index, failure, where, url))
        elif where is not None:
            made.append(_server_annotation(index, failure, where, url))
    return made[: LIMITS[product].annotations_per_report]


def batches(items: list[dict[str, Any]], product: Product) -> list[Any]:
    """The annotation POSTs' bodies: Cloud takes a list of at most 100, Server `{"annotations": […]}`."""
    size = LIMITS[product].annotations_per_request
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    return chunks if product == "cloud" else [{"annotations": chunk} for chunk in chunks]
