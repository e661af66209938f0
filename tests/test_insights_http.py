"""The Code Insights reporters (`workers/reporters/insights_http.py`) against the real HTTP stand-ins,
which check every report and annotation against the documented shapes and limits (`testkit.insights`)
and answer 400 with the product's message when one is broken; `test_stand_in_refuses` shows that they do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from schemas.record import BuildRecord, BuildState
from schemas.record import TestCaseFailure as Failure
from schemas.settings import Settings
from testkit.bitbucket import StandIn
from tests.test_insights_bodies import PUBLIC, SHA, TRACEBACK, make
from workers.errors import Refused
from workers.reporters import make_reporters
from workers.reporters.insights import Product
from workers.reporters.insights_http import CloudInsights, InsightsReporter, ServerInsights

TOKEN, SERVER_TOKEN = "tok-SECRET-cloud-insights", "tok-SECRET-server-insights"
CLOUD_REPORT = f"/2.0/repositories/team/web/commit/{SHA}/reports/podci-web"
SERVER_REPORT = f"/rest/insights/1.0/projects/TEAM/repos/web/commits/{SHA}/reports/podci-web"


@pytest.fixture(autouse=True)
def _no_podci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("PODCI_")]:
        monkeypatch.delenv(key)


@pytest.fixture(params=["cloud", "server"])
def product(request: pytest.FixtureRequest) -> Product:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def bitbucket(product: Product) -> Iterator[StandIn]:
    auth = f"Bearer {TOKEN if product == 'cloud' else SERVER_TOKEN}"
    stand_in = StandIn(product, "/statuses", auth)
    yield stand_in
    stand_in.close()


def reporter(product: Product, url: str, **extra: Any) -> InsightsReporter:
    if product == "cloud":
        values = {"bitbucket_cloud_api_url": url, "bitbucket_cloud_token": TOKEN, **extra}
        return CloudInsights(Settings(redis_url="redis://unused", public_url=PUBLIC, **values))
    values = {"bitbucket_server_url": url, "bitbucket_server_token": SERVER_TOKEN, **extra}
    return ServerInsights(Settings(redis_url="redis://unused", public_url=PUBLIC, **values))


def failing(product: Product, *names: str) -> BuildRecord:
    failures = [Failure(name=f"tests.test_counter.Counter.{n}", message=f"{n} broke", text=TRACEBACK.replace(
        "test_adds", n)) for n in names]  # fmt: skip
    if product == "cloud":
        return make(failures=failures)
    return make(failures=failures, provider="bitbucket-server", repo="TEAM/web")


def where(product: Product) -> tuple[str, str]:
    return SHA, "podci-web"


def test_a_failed_build_leaves_a_report_and_one_annotation_per_failed_test(
    bitbucket: StandIn, product: Product
) -> None:
    record = failing(product, "test_adds", "test_subtracts")
    note = reporter(product, bitbucket.url).report(record)
    assert note.endswith("with 2 annotations"), note
    calls = bitbucket.insights.seen
    assert [(c.method, c.problems) for c in calls] == [("DELETE", []), ("PUT", []), ("POST", [])]
    report = bitbucket.insights.report(*where(product))
    assert report is not None and report["result"] in ("FAILED", "FAIL")
    notes = bitbucket.insights.notes(*where(product))
    assert [n["path"] for n in notes] == ["tests/test_counter.py"] * 2
    assert bitbucket.seen == []  # no status was posted by the report's reporter


def test_posting_twice_ends_the_same_and_a_rebuild_replaces_every_annotation(
    bitbucket: StandIn, product: Product
) -> None:
    posting = reporter(product, bitbucket.url)
    posting.report(failing(product, "test_a", "test_b", "test_c"))
    posting.report(failing(product, "test_a", "test_b", "test_c"))  # a notify that ran twice
    assert len(bitbucket.insights.notes(*where(product))) == 3
    posting.report(failing(product, "test_b"))  # the rebuild: one test still fails
    notes = bitbucket.insights.notes(*where(product))
    assert [n.get("summary", n.get("message")) for n in notes] == [
        "tests.test_counter.Counter.test_b failed: test_b broke"
    ]
    assert all(c.problems == [] for c in bitbucket.insights.seen)


def test_a_report_is_read_back_before_it_is_posted_again(bitbucket: StandIn, product: Product) -> None:
    posting = reporter(product, bitbucket.url)
    record = failing(product, *(f"test_{n}" for n in range(120)))  # Cloud lists them in pages
    assert posting.shows(record) is False  # nothing there yet
    posting.report(record)
    assert posting.shows(record) is True
    assert posting.shows(failing(product, "test_other")) is False
    assert [c.problems for c in bitbucket.insights.seen if c.method == "GET"] == [[]] * len(
        [c for c in bitbucket.insights.seen if c.method == "GET"]
    )


def test_an_outage_is_retried_and_a_refusal_is_given_up(bitbucket: StandIn, product: Product) -> None:
    posting = reporter(product, bitbucket.url)
    bitbucket.status, bitbucket.reply = 503, '{"error": "down"}'
    with pytest.raises(Refused):
        posting.report(failing(product, "test_a"))
    bitbucket.status, bitbucket.reply = 400, '{"error": "token tok-SECRET echoed: {auth}"}'
    note = posting.report(failing(product, "test_a"))
    assert "refused with 400" in note and TOKEN not in note and SERVER_TOKEN not in note


def test_reports_can_be_turned_off_per_product(product: Product) -> None:
    setting = "bitbucket_cloud_reports" if product == "cloud" else "bitbucket_server_reports"
    record = failing(product, "test_a")
    assert reporter(product, "http://127.0.0.1:9").applies(record) is True
    assert reporter(product, "http://127.0.0.1:9", **{setting: False}).applies(record) is False


def test_make_reporters_has_one_insights_reporter_per_product() -> None:
    settings = Settings(redis_url="redis://unused", bitbucket_cloud_token=SecretStr(TOKEN))
    names = [r.name for r in make_reporters(settings)]
    assert names[-2:] == ["bitbucket-cloud-insights", "bitbucket-server-insights"]
    running = make(BuildState.running)
    assert not any(r.applies(running) for r in make_reporters(settings) if r.name.endswith("insights"))


# --- the stand-ins refuse what the products refuse --------------------------------------------------------


def send(stand_in: StandIn, method: str, path: str, body: Any, auth: str) -> httpx.Response:
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    return httpx.request(method, stand_in.url + path, content=json.dumps(body), headers=headers)


GOOD_REPORT: dict[Product, dict[str, Any]] = {
    "cloud": {"title": "t", "details": "d", "report_type": "TEST", "result": "FAILED"},
    "server": {"title": "t", "result": "FAIL"},
}


def note_of(product: Product, **change: Any) -> dict[str, Any]:
    if product == "cloud":
        return {"external_id": "x", "annotation_type": "BUG", "summary": "s", **change}
    return {"externalId": "x", "path": "a.py", "line": 1, "message": "m", "severity": "HIGH", **change}


def notes_body(product: Product, items: list[dict[str, Any]]) -> Any:
    return items if product == "cloud" else {"annotations": items}


def report_path(product: Product) -> str:
    return CLOUD_REPORT if product == "cloud" else SERVER_REPORT


def many(product: Product, count: int) -> list[dict[str, Any]]:
    key = "external_id" if product == "cloud" else "externalId"
    return [note_of(product, **{key: str(n)}) for n in range(count)]


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"details": "x" * 2001}, "The details field cannot contain more than 2000 characters."),
        ({"result": "PASS!"}, "result"),
        ({"data": [{"title": "b", "type": "LINK", "value": "http://x"}]}, "is not a LINK"),
    ],
)
def test_stand_in_refuses_reports(
    bitbucket: StandIn, product: Product, change: dict[str, Any], found: str
) -> None:
    answer = send(bitbucket, "PUT", report_path(product), {**GOOD_REPORT[product], **change}, bitbucket.auth)
    assert answer.status_code == 400 and found in answer.text, answer.text


def test_stand_in_takes_no_more_data_fields_than_the_product(bitbucket: StandIn, product: Product) -> None:
    most = 10 if product == "cloud" else 6
    data = [{"title": f"n{i}", "type": "NUMBER", "value": i} for i in range(most + 1)]
    answer = send(
        bitbucket, "PUT", report_path(product), {**GOOD_REPORT[product], "data": data}, bitbucket.auth
    )
    assert answer.status_code == 400 and f"more than {most} data fields" in answer.text
    answer = send(bitbucket, "PUT", report_path(product), {**GOOD_REPORT[product], "data": data[:most]},
                  bitbucket.auth)  # fmt: skip
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("case", "found"),
    [
        ("too-many-per-request", "annotations per request"),
        ("too-many-per-report", "more than 1000 annotations"),
        ("long-text", "cannot contain more than"),
        ("test-type", "type 'TEST'"),
        ("absolute-path", "not relative"),
        ("no-report", "post the report first"),
    ],
)
def test_stand_in_refuses_annotations(bitbucket: StandIn, product: Product, case: str, found: str) -> None:
    auth, path = bitbucket.auth, report_path(product)
    if case != "no-report":
        assert send(bitbucket, "PUT", path, GOOD_REPORT[product], auth).status_code == 200
    text, kind = ("summary", "annotation_type") if product == "cloud" else ("message", "type")
    items = {
        "too-many-per-request": lambda: many(product, 101 if product == "cloud" else 1001),
        "too-many-per-report": lambda: many(product, 1001),
        "long-text": lambda: [note_of(product, **{text: "x" * 2001})],
        "test-type": lambda: [note_of(product, **{kind: "TEST"})],
        "absolute-path": lambda: [note_of(product, path="/abs/a.py")],
        "no-report": lambda: [note_of(product)],
    }[case]()
    if case == "too-many-per-report" and product == "cloud":  # 100 at a time, then one too many
        for start in range(0, 1000, 100):
            assert send(bitbucket, "POST", path + "/annotations", items[start : start + 100], auth).is_success
        items = items[1000:]
    if case == "too-many-per-request" and product == "server":
        found = "more than 1000 annotations"  # Server sets no per-request cap; the report's holds
    answer = send(bitbucket, "POST", path + "/annotations", notes_body(product, items), auth)
    assert answer.status_code == (404 if case == "no-report" else 400), answer.text
    assert found in answer.text
