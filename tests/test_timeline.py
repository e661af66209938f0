"""The build timeline: which phases a record yields, and the SVG drawn from them.

Records are built by hand with exact step times, so every expected bar is known to the second.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from schemas.record import BuildRecord, BuildState, StepRecord, StepState
from schemas.request import BuildRequest, Revision
from web.timeline import COLOURS, Phase, format_seconds, phases, timeline_svg
from workers.pipeline import STEPS

T0 = datetime(2025, 11, 26, 9, 0, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
OK, FAIL, RUN, SKIP = StepState.succeeded, StepState.failed, StepState.running, StepState.skipped

# step -> (state, started, finished) in seconds after creation; steps not named stay pending.
Steps = dict[str, tuple[StepState, float | None, float | None]]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_record(
    steps: Steps,
    *,
    finished: float | None = None,
    step: str | None = None,
    state: BuildState = BuildState.running,
    job: str = "webapp-pr",
) -> BuildRecord:
    request = BuildRequest(job=job, repo="team/webapp", source=Revision(clone_url="/tmp/repo", ref="topic"))
    entries = []
    for name in STEPS:
        step_state, started, ended = steps.get(name, (StepState.pending, None, None))
        entries.append(
            StepRecord(
                name=name,
                state=step_state,
                started=None if started is None else at(started),
                finished=None if ended is None else at(ended),
            )
        )
    return BuildRecord(
        id="webapp-pr-3",
        job=job,
        number=3,
        name="webapp-pr-3",
        request=request,
        steps=entries,
        created=T0,
        finished=None if finished is None else at(finished),
        state=state,
        step=step,
    )


ALL_OK: Steps = {
    "checkout": (OK, 1, 2),
    "create_service": (OK, 2, 3),
    "create_volume": (OK, 3, 4),
    "create_pod": (OK, 4, 5),
    "wait_setup": (OK, 5, 8),
    "run_tests": (OK, 8, 20),
    "teardown": (OK, 20, 22),
}
TESTS_FAILED: Steps = {**ALL_OK, "run_tests": (FAIL, 8, 20)}
MERGE_CONFLICT: Steps = {
    "checkout": (FAIL, 4, 6),
    "create_service": (SKIP, None, 6),
    "create_volume": (SKIP, None, 6),
    "create_pod": (SKIP, None, 6),
    "wait_setup": (SKIP, None, 6),
    "run_tests": (SKIP, None, 6),
    "teardown": (OK, 6, 7.5),
}


@pytest.mark.parametrize(
    ("steps", "finished", "step", "now", "expected"),
    [
        pytest.param({}, None, "checkout", 10, [Phase("queued", 0, 10, "running")], id="still-queued"),
        pytest.param(
            {"checkout": (SKIP, None, 5)}, 5, "", 99, [Phase("queued", 0, 5, "waited")], id="stopped-in-queue"
        ),
        pytest.param(
            {"checkout": (RUN, 2, None)},
            None,
            "checkout",
            7,
            [Phase("queued", 0, 2, "waited"), Phase("checkout", 2, 7, "running")],
            id="checking-out",
        ),
        pytest.param(
            {"checkout": (OK, 2, 3), "create_service": (OK, 3, 4)},
            None,
            "create_volume",
            6,
            [
                Phase("queued", 0, 2, "waited"),
                Phase("checkout", 2, 3, "succeeded"),
                Phase("provisioning", 3, 6, "running"),
            ],
            id="between-two-provisioning-steps",
        ),
        pytest.param(
            {**{k: v for k, v in ALL_OK.items() if k in STEPS[:4]}, "wait_setup": (RUN, 5, None)},
            None,
            "wait_setup",
            30,
            [
                Phase("queued", 0, 1, "waited"),
                Phase("checkout", 1, 2, "succeeded"),
                Phase("provisioning", 2, 5, "succeeded"),
                Phase("setup", 5, 30, "running"),
            ],
            id="waiting-for-setup",
        ),
        pytest.param(
            ALL_OK,
            22,
            "",
            99,
            [
                Phase("queued", 0, 1, "waited"),
                Phase("checkout", 1, 2, "succeeded"),
                Phase("provisioning", 2, 5, "succeeded"),
                Phase("setup", 5, 8, "succeeded"),
                Phase("tests", 8, 20, "succeeded"),
                Phase("teardown", 20, 22, "succeeded"),
            ],
            id="succeeded",
        ),
        pytest.param(
            TESTS_FAILED,
            22,
            "",
            99,
            [
                Phase("queued", 0, 1, "waited"),
                Phase("checkout", 1, 2, "succeeded"),
                Phase("provisioning", 2, 5, "succeeded"),
                Phase("setup", 5, 8, "succeeded"),
                Phase("tests", 8, 20, "failed"),
                Phase("teardown", 20, 22, "succeeded"),
            ],
            id="tests-failed",
        ),
        pytest.param(
            {**TESTS_FAILED, "teardown": (RUN, 20, None)},
            None,
            "teardown",
            25,
            [
                Phase("queued", 0, 1, "waited"),
                Phase("checkout", 1, 2, "succeeded"),
                Phase("provisioning", 2, 5, "succeeded"),
                Phase("setup", 5, 8, "succeeded"),
                Phase("tests", 8, 20, "failed"),
                Phase("teardown", 20, 25, "running"),
            ],
            id="tearing-down-after-failed-tests",
        ),
        pytest.param(
            MERGE_CONFLICT,
            7.5,
            "",
            99,
            [
                Phase("queued", 0, 4, "waited"),
                Phase("checkout", 4, 6, "failed"),
                Phase("teardown", 6, 7.5, "succeeded"),
            ],
            id="merge-conflict-skips-the-middle",
        ),
    ],
)
def test_phases(steps: Steps, finished: float | None, step: str, now: float, expected: list[Phase]) -> None:
    assert phases(make_record(steps, finished=finished, step=step), now=at(now)) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0.0 s"), (4.25, "4.2 s"), (59.9, "59.9 s"), (60, "1 min 00 s"), (185, "3 min 05 s"),
     (3600, "1 h 00 min"), (3725, "1 h 02 min")],
)  # fmt: skip
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]


def test_one_bar_per_started_phase_coloured_by_outcome() -> None:
    record = make_record(MERGE_CONFLICT, finished=7.5, state=BuildState.failed)
    drawn = bars(timeline_svg(record, now=at(99)))
    assert [b.get("data-phase") for b in drawn] == ["queued", "checkout", "teardown"]
    assert [b.get("fill") for b in drawn] == [COLOURS["waited"], COLOURS["failed"], COLOURS["succeeded"]]
    titles = [b.findtext(f"{SVG}title") for b in drawn]
    assert titles == ["queued: 4.0 s (waited)", "checkout: 2.0 s (failed)", "teardown: 1.5 s (succeeded)"]


def test_bars_share_one_axis_within_the_drawing() -> None:
    width = 600
    drawn = bars(timeline_svg(make_record(ALL_OK, finished=22, state=BuildState.succeeded), width, at(99)))
    assert len(drawn) == 6
    xs = [float(b.get("x", "nan")) for b in drawn]
    ends = [x + float(b.get("width", "nan")) for x, b in zip(xs, drawn, strict=True)]
    assert xs == sorted(xs)
    assert all(x > 0 and end <= width for x, end in zip(xs, ends, strict=True))
    # Each bar starts where the one before it ended: one scale for all of them.
    assert all(abs(start - end) < 0.2 for start, end in zip(xs[1:], ends[:-1], strict=True))
    # The tests took 12 of 22 seconds: their bar is 12/22 of the plotted width.
    assert abs((ends[4] - xs[4]) / (ends[-1] - xs[0]) - 12 / 22) < 0.01


def test_labels_show_names_and_durations() -> None:
    root = ET.fromstring(timeline_svg(make_record(TESTS_FAILED, finished=22), now=at(99)))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for label in ("queued", "checkout", "provisioning", "setup", "tests", "teardown", "12.0 s", "22.0 s"):
        assert label in texts


def test_text_from_outside_is_escaped() -> None:
    job = "<script>alert('x')</script> & \"friends\""
    svg = timeline_svg(make_record({}, job=job), now=at(3))
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    assert root.findtext(f"{SVG}title") == f"timeline of {job} #3: 3.0 s"
    assert root.get("aria-label", "").startswith(f"timeline of {job}")


def test_a_running_build_ends_at_now() -> None:
    record = make_record({"checkout": (OK, 1, 2), "create_service": (RUN, 2, None)}, step="create_service")
    early = bars(timeline_svg(record, now=at(4)))
    late = bars(timeline_svg(record, now=at(40)))
    # Later, the running bar takes a larger share of the (longer) axis.
    assert float(late[-1].get("width", "0")) > float(early[-1].get("width", "0"))
    assert late[-1].get("fill") == COLOURS["running"]
