"""Label and field selectors with the API server's grammar, so the backend's queries mean what they would.

Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas (AND).
Field selectors: `path=v`, `path==v`, `path!=v` on dotted paths (`metadata.name`, `status.phase`, ...).
A malformed selector is refused with 400, as the server does, instead of silently matching everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\(([^)]*)\)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists", "in", "notin"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value in self.values
        if self.op == "!=":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "in":
            return present and value in self.values
        return not present or value not in self.values  # notin


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )` (set values contain commas)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _key(key: str, selector: str) -> str:
    if not _KEY.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in selector "{selector}"')
    return key


def parse_label_selector(selector: str | None) -> list[Requirement]:
    if not selector:
        return []
    requirements = []
    for term in _split_top_level(selector):
        if found := _SET.match(term):
            values = frozenset(v.strip() for v in found.group(3).split(",") if v.strip())
            requirements.append(Requirement(_key(found.group(1), selector), found.group(2), values))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            requirements.append(Requirement(_key(key.strip(), selector), "!=", frozenset([value.strip()])))
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            requirements.append(Requirement(_key(key.strip(), selector), "=", frozenset([value.strip()])))
        elif term.startswith("!"):
            requirements.append(Requirement(_key(term[1:].strip(), selector), "!exists"))
        else:
            requirements.append(Requirement(_key(term, selector), "exists"))
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        current: Any = obj
        for part in self.path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        text = "" if current is None else str(current)
        return (text == self.value) == self.equal


def parse_field_selector(selector: str | None) -> list[FieldRequirement]:
    if not selector:
        return []
    requirements = []
    for term in _split_top_level(selector):
        if "!=" in term:
            path, value = term.split("!=", 1)
            requirements.append(FieldRequirement(path.strip(), False, value.strip()))
        elif "=" in term:
            path, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            requirements.append(FieldRequirement(path.strip(), True, value.strip()))
        else:
            raise bad_request(f'invalid selector: "{selector}"; can\'t understand "{term}"')
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)


def build_of_selector(selector: str | None, label: str) -> str | None:
    """The value a label selector pins `label` to (`label=v` or `label==v`), for the request log."""
    try:
        requirements = parse_label_selector(selector)
    except Exception:
        return None
    for r in requirements:
        if r.key == label and r.op == "=" and len(r.values) == 1:
            return next(iter(r.values))
    return None
