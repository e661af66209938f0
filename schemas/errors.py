"""Turn pydantic's validation errors into sentences a user can act on."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('timeouts', 'setup')` -> `timeouts.setup`; list indexes become `[0]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe(error: ValidationError, source: str) -> str:
    """One sentence per problem, naming the field, e.g. "in .podci.yml, `timeouts.setup`: ..."."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        problems.append(f"`{field_path(loc)}`: {item['msg']}")
    return f"{source} is invalid: " + "; ".join(problems) + "."
