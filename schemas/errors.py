"""Turn pydantic's validation errors into sentences a user can act on."""

from __future__ import annotations

from pydantic import ValidationError

MOST_PROBLEMS = 5


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('timeouts', 'setup')` -> `timeouts.setup`; list indexes become `[0]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A key of the input (an unexpected field) can be any length: quote a cut version of it.
            name = str(part) if len(str(part)) <= 60 else str(part)[:57] + "..."
            out += f".{name}" if out else name
    return out or "(top level)"


def describe(error: ValidationError, source: str) -> str:
    """One sentence per problem, naming the field, e.g. "in .podci.yml, `timeouts.setup`: ..."."""
    problems = []
    errors = error.errors(include_url=False)
    for item in errors[:MOST_PROBLEMS]:
        loc = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        problems.append(f"`{field_path(loc)}`: {item['msg']}")
    if len(errors) > MOST_PROBLEMS:  # a body with a thousand unexpected keys gets a short answer too
        problems.append(f"and {len(errors) - MOST_PROBLEMS} more")
    return f"{source} is invalid: " + "; ".join(problems) + "."
