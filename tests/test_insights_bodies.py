"""workers/reporters/insights.py and places.py: what a Code Insights report and its annotations say, one
table per rule, each body also checked by the stand-ins' own checks (`testkit.insights`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from schemas.record import BuildRecord, BuildState, Step, StepRecord
from schemas.record import TestCaseFailure as Failure
from schemas.record import TestResult as JUnit  # aliased: pytest would try to collect `Test*`
from schemas.request import BuildRequest, Provider, Revision
from testkit.insights import annotation_list, check_report
from workers.reporters import insights, status
from workers.reporters.insights import Product
from workers.reporters.places import Place, place, relative

SHA = "046d9a3c1532acf4cf08fe93235c00e4d673c1d2"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://ci.example.com"
S = BuildState
PRODUCTS: list[Product] = ["cloud", "server"]


class Flaky(Failure):
    """What the flaky-test tracking adds to a failure (read with getattr, so absent is fine)."""

    flaky_note: str = ""


def make(
    state: BuildState = S.failed,
    *,
    failures: Sequence[Failure] | None = None,
    total: int | None = 3,
    reason: str = "",
    provider: Provider = "bitbucket-cloud",
    repo: str = "team/web",
    job: str = "web",
) -> BuildRecord:
    source = Revision(clone_url="/srv/web", ref="feature/login", commit=SHA)
    request = BuildRequest(job=job, repo=repo, provider=provider, source=source)
    failed = len(failures or []) if total is not None else None
    tests = JUnit(exit_code=1, log_path="/l", total=total, failed=failed, skipped=1 if total else None,
                  failures=list(failures or []))  # fmt: skip
    return BuildRecord(id="b-7", job=job, number=7, name="web-7", request=request, attempts=1,
                       steps=[StepRecord(name=Step.checkout)], state=state, reason=reason, tests=tests,
                       started=T0, finished=T0 + timedelta(seconds=90))  # fmt: skip


TRACEBACK = """Traceback (most recent call last):
  File "/workspace/tests/test_counter.py", line 12, in test_adds
    self.assertEqual(add(1, 1), 3)
  File "/usr/lib/python3.12/unittest/case.py", line 885, in assertEqual
    raise self.failureException(msg)
AssertionError: 2 != 3"""
PYTEST = """def test_total():
>       assert total([1, 2]) == 4
E       assert 3 == 4

tests/test_cart.py:8: AssertionError"""
HELPER = 'File "/workspace/app/cart.py", line 30, in total\nFile "/workspace/tests/test_cart.py", line 9'


# --- where an annotation goes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "file", "line", "want"),
    [
        ("tests.test_counter.Counter.test_adds", TRACEBACK, "", None, Place("tests/test_counter.py", 12)),
        ("test_cart.test_total", PYTEST, "", None, Place("tests/test_cart.py", 8)),
        ("t.test_x", HELPER, "", None, Place("tests/test_cart.py", 9)),  # the deepest frame of ours
        ("t.test_x", "boom", "tests/test_x.py", 4, Place("tests/test_x.py", 4)),  # JUnit attributes
        ("t.test_x", "boom", "tests/test_x.py", None, Place("tests/test_x.py", None)),
        ("t.test_x", "boom", "", None, None),  # nowhere: a report-level annotation
        ("t.test_x", 'File "/usr/lib/python3/x.py", line 3', "", None, None),  # not the repository's
        ("t.test_x", PYTEST, "tests/other.py", 1, Place("tests/test_cart.py", 8)),  # the text wins
    ],
)
def test_place(name: str, text: str, file: str, line: int | None, want: Place | None) -> None:
    assert place(name, text, file, line, roots=("/workspace",)) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("tests/test_x.py", "tests/test_x.py"),
        ("./tests/test_x.py", "tests/test_x.py"),
        ("/workspace/src/app.py", "src/app.py"),
        ("/tmp/podci/ws-1/tests/test_x.py", "tests/test_x.py"),  # another root: from its tests dir
        ("/tmp/podci/ws-1/src/app.py", None),
        ("../outside.py", None),
        ("/venv/lib/python3.12/site-packages/x.py", None),
        ("<string>", None),
        ("", None),
    ],
)
def test_relative(path: str, want: str | None) -> None:
    assert relative(path, ("/workspace",)) == want


# --- which builds get a report, and what it says --------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "total", "wanted"),
    [
        (S.succeeded, 3, True),
        (S.succeeded, None, False),  # passed without a JUnit report: nothing to say beyond the status
        (S.failed, None, True),  # the failure reason
        (S.error, None, True),
        (S.stopped, None, True),  # says that no result will come
        (S.running, 3, False),
        (S.queued, None, False),
    ],
)
def test_wants_report(state: BuildState, total: int | None, wanted: bool) -> None:
    assert insights.wants_report(make(state, total=total)) is wanted


@pytest.mark.parametrize(
    ("state", "cloud", "server"),
    [
        (S.succeeded, "PASSED", "PASS"),
        (S.failed, "FAILED", "FAIL"),
        (S.error, "FAILED", "FAIL"),
        (S.stopped, "PENDING", None),
    ],
)
def test_result(state: BuildState, cloud: str, server: str | None) -> None:
    record = make(state)
    assert (insights.result(record, "cloud"), insights.result(record, "server")) == (cloud, server)


def test_cloud_report_body() -> None:
    record = make(failures=[Failure(name="a.test_x", message="boom")])
    body = insights.report_body(record, PUBLIC, "cloud")
    url = "https://ci.example.com/builds/b-7#failing-tests"
    assert body == {
        "title": "podci web",
        "details": "1 of 3 tests failed, 1 skipped in build web #7.",
        "reporter": "podci",
        "link": url,
        "report_type": "TEST",
        "result": "FAILED",
        "data": [
            {"title": "Tests", "type": "NUMBER", "value": 3},
            {"title": "Failed", "type": "NUMBER", "value": 1},
            {"title": "Skipped", "type": "NUMBER", "value": 1},
            {"title": "Duration", "type": "DURATION", "value": 90000},
            {"title": "Pod attempts", "type": "NUMBER", "value": 1},
            {"title": "Build", "type": "LINK", "value": {"text": "web #7", "href": url}},
        ],
    }
    assert check_report("cloud", body) == []


def test_server_report_body_names_the_failures_it_cannot_annotate() -> None:
    record = make(provider="bitbucket-server", repo="TEAM/web",
                  failures=[Failure(name="a.test_x", message="boom"),
                            Failure(name="a.test_y", text=TRACEBACK)])  # fmt: skip
    body = insights.report_body(record, PUBLIC, "server")
    assert body["result"] == "FAIL" and "report_type" not in body
    assert body["details"].endswith("annotate:\n- a.test_x")  # test_y has a line in the diff
    assert body["data"][-1]["value"] == {"linktext": "web #7", "href": body["link"]}
    assert len(body["data"]) == 6 and check_report("server", body) == []


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_failed_build_without_junit_reports_its_reason(product: Product) -> None:
    record = make(total=None, reason="FailedScheduling: 0/3 nodes have enough memory")
    body = insights.report_body(record, PUBLIC, product)
    assert body["details"] == "build web #7 failed: FailedScheduling: 0/3 nodes have enough memory"
    assert [d["title"] for d in body["data"]] == ["Duration", "Pod attempts", "Build"]
    assert check_report(product, body) == []


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_superseded_build_says_so_and_is_neither_green_nor_red(product: Product) -> None:
    record = make(S.stopped, total=None, reason="superseded by build web-8")
    body = insights.report_body(record, PUBLIC, product)
    assert "superseded by build web-8" in body["details"]
    assert body.get("result") in ("PENDING", None)
    assert insights.annotation_bodies(record, PUBLIC, product) == []
    assert check_report(product, body) == []


def test_report_paths_and_keys() -> None:
    cloud = make()
    server = make(provider="bitbucket-server", repo="TEAM/web")
    assert (
        insights.report_path(cloud, "cloud") == f"/2.0/repositories/team/web/commit/{SHA}/reports/podci-web"
    )
    assert (
        insights.report_path(server, "server")
        == f"/rest/insights/1.0/projects/TEAM/repos/web/commits/{SHA}/reports/podci-web"
    )
    long_job = make(job="j" * 200)
    assert len(insights.report_key(long_job, "cloud")) <= 40
    assert len(insights.report_key(long_job, "server")) <= 255


# --- annotations -----------------------------------------------------------------------------------------


def test_cloud_annotations_one_per_failed_test_placed_or_not() -> None:
    failures = [Failure(name="tests.test_counter.Counter.test_adds", message="2 != 3", text=TRACEBACK),
                Failure(name="a.test_y", message="boom\nmore")]  # fmt: skip
    notes = insights.annotation_bodies(make(failures=failures), PUBLIC, "cloud")
    assert [(n.get("path"), n.get("line")) for n in notes] == [("tests/test_counter.py", 12), (None, None)]
    assert notes[0]["summary"] == "tests.test_counter.Counter.test_adds failed: 2 != 3"
    assert notes[1]["summary"] == "a.test_y failed: boom" and notes[1]["details"] == "boom\nmore"
    # each links to the page at its own test
    assert [n["link"] for n in notes] == [f"https://ci.example.com/builds/b-7#test-{i}" for i in (1, 2)]
    assert notes[0]["annotation_type"] == "BUG" and notes[0]["result"] == "FAILED"
    assert len({n["external_id"] for n in notes}) == 2
    assert annotation_list("cloud", notes)[1] == []


def test_server_annotations_only_where_there_is_a_file() -> None:
    failures = [Failure(name="t.test_x", message="boom", file="tests/test_x.py"),
                Failure(name="t.test_y", message="boom")]  # fmt: skip
    record = make(provider="bitbucket-server", repo="TEAM/web", failures=failures)
    notes = insights.annotation_bodies(record, PUBLIC, "server")
    assert [(n["path"], n["line"]) for n in notes] == [("tests/test_x.py", 0)]  # 0: the whole file
    assert annotation_list("server", {"annotations": notes})[1] == []


@pytest.mark.parametrize(
    ("note", "want"),
    [
        ("", "t.test_x failed: boom"),
        ("3 of the last 20 runs failed", "t.test_x failed; flaky: 3 of the last 20 runs failed: boom"),
        ("flaky: 3 of the last 20 runs failed", "t.test_x failed; flaky: 3 of the last 20 runs failed: boom"),
    ],
)
def test_summary_carries_the_flaky_note(note: str, want: str) -> None:
    assert insights.summary(Flaky(name="t.test_x", message="boom\nsecond line", flaky_note=note), 450) == want


@pytest.mark.parametrize("product", PRODUCTS)
def test_long_texts_are_clipped_to_the_limits(product: Product) -> None:
    huge = "x" * 5000
    failures = [
        Flaky(name="t." + "n" * 600, message=huge, text=huge, file="tests/t.py", flaky_note="2 of 20")
    ]
    record = make(failures=failures, reason=huge, repo="TEAM/web", provider="bitbucket-server")
    notes = insights.annotation_bodies(record, PUBLIC, product)
    limits = insights.LIMITS[product]
    text = notes[0]["summary" if product == "cloud" else "message"]
    assert len(text) <= limits.summary and "flaky: 2 of 20" in text
    assert len(notes[0].get("details", "")) <= 2000
    body = insights.report_body(record, PUBLIC, product)
    assert len(body["details"]) <= limits.details and len(body["title"]) <= limits.title
    assert check_report(product, body) == []
    assert annotation_list(product, notes if product == "cloud" else {"annotations": notes})[1] == []


@pytest.mark.parametrize(("product", "size", "requests"), [("cloud", 100, 3), ("server", 1000, 1)])
def test_annotations_go_in_batches_the_api_takes(product: Product, size: int, requests: int) -> None:
    items = [{"n": n} for n in range(250)]
    sent = insights.batches(items, product)
    assert len(sent) == requests
    if product == "server":
        assert sent == [{"annotations": items}]
    else:
        assert [len(b) for b in sent] == [100, 100, 50]


def test_parent_key_is_one_per_repository() -> None:
    pr = make(job="TEAM/web-pr31", repo="TEAM/web")
    branch = make(job="TEAM/web-main", repo="TEAM/web")
    bodies = [status.server_body(r, PUBLIC) for r in (pr, branch)]
    assert [b["parent"] for b in bodies] == ["podci-TEAM/web", "podci-TEAM/web"]
    assert bodies[0]["key"] != bodies[1]["key"]
    assert len(status.parent_key("P/" + "r" * 400)) == 255
