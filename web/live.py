"""`GET /builds/{id}/live`: what the build page's script polls while the build runs, the new test
output after a cursor, and the steps and the timeline as they are now (a page left open on a waiting
build must not show a stale picture of where its time went). The workers put the output in Redis
(`store.live`, already masked); it is masked again here with the server's own secrets and paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from schemas.public import Redactor
from schemas.record import BuildRecord
from store.builds import BuildStore
from store.live import TRIMMED, LiveLogs
from web.timeline import TIMELINE_WIDTH, format_seconds, timeline_svg

Refusal = Callable[[Request], Response]


def steps_of(record: BuildRecord) -> list[dict[str, Any]]:
    """The steps table's rows as the page shows them."""
    return [
        {
            "name": step.name,
            "state": step.state.value,
            "duration": "" if step.seconds is None else format_seconds(step.seconds),
            "detail": step.detail + (f" ({step.checks} checks)" if step.checks else ""),
        }
        for step in record.steps
    ]


def live_answer(record: BuildRecord, text: str, cursor: int) -> dict[str, Any]:
    return {
        "state": record.state.value,
        "finished": record.finished is not None,
        "text": text,
        "cursor": cursor,
        "steps": steps_of(record),
        "timeline": timeline_svg(record, width=TIMELINE_WIDTH),
    }


def add_live_route(
    router: APIRouter, store: BuildStore, may_read: Callable[[Request, BuildRecord | None], bool],
    refuse: Refusal, redactor: Redactor,
) -> None:  # fmt: skip
    """The route, behind the same login as the pages (`may_read`, else `refuse`)."""
    live = LiveLogs(store.redis, store.retention)

    @router.get("/builds/{build_id}/live", summary="a running build's new test output", response_model=None)
    def live_log(request: Request, build_id: str, after: int = 0) -> Response:
        record = store.get(build_id)
        if not may_read(request, record):
            return refuse(request)
        if record is None:
            return JSONResponse({"error": f"There is no build named {build_id!r}."}, status_code=404)
        chunk = live.read(build_id, after)
        text = (TRIMMED if chunk.skipped else "") + chunk.text
        shown = redactor.record(record)
        return JSONResponse(live_answer(shown, redactor.text(text), chunk.cursor))
