"""From raw request parts to a decision, for `podci event` (the HTTP handlers call the parsers directly)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from events import bitbucket, jenkins
from events.errors import PayloadError
from events.options import ParseOptions
from schemas.event import Decision


def guess_source(headers: Mapping[str, str], body: Any) -> str:
    """Bitbucket always sends X-Event-Key (Server repeats it as `eventKey`); Jenkins sends neither."""
    if "x-event-key" in headers or (isinstance(body, dict) and "eventKey" in body):
        return "bitbucket"
    return "jenkins"


def decide(source: str, headers: Mapping[str, Any], raw: bytes, options: ParseOptions) -> Decision:
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}") from None
    if source == "auto":
        source = guess_source(lowered, body)
    parser = bitbucket.parse if source == "bitbucket" else jenkins.parse
    return parser(lowered, body, options)
