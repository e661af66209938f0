"""Names for a build's objects: DNS-1123 labels that stay stable and unique when truncated."""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_HASH_LEN = 8
_LOOKS_HASHED = re.compile(rf"-[0-9a-f]{{{_HASH_LEN}}}$")


def _slug(text: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", text).strip("-")


def dns_label(text: str, *, max_len: int = MAX_LABEL, namespace: str = "") -> str:
    """Lowercase `[a-z0-9-]`, at most `max_len`, starting and ending alphanumeric.

    When anything had to change or be cut, a hash of the original is appended so that two different
    inputs never land on the same name (`Team/App` and `team-app` differ). With a `namespace`, the
    hash is always appended and covers it too: the same text in two namespaces gives two names.
    """
    slug = _slug(text) or "x"
    # A name that already ends like a hash suffix is hashed too: otherwise the job `team-app-15a69ce7`
    # would get the very name computed for `Team/App`.
    if not namespace and slug == text and len(slug) <= max_len and not _LOOKS_HASHED.search(slug):
        return slug
    hashed = f"{namespace}\0{text}" if namespace else text
    digest = hashlib.sha256(hashed.encode()).hexdigest()[:_HASH_LEN]
    if max_len <= _HASH_LEN + 1:
        return digest[:max_len]
    head = slug[: max_len - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


# Whose job names are kept as given (`JOB_NAME-BUILD_NUMBER`, the build id Jenkins users know); every
# other source's names carry a hash of the source, so no job name of one can land on another's build.
PLAIN_NAMESPACES = ("manual", "jenkins")


def build_name(job: str, number: int, provider: str = "manual") -> str:
    """`{job}-{number}`, with the number always kept whole so consecutive builds stay readable."""
    suffix = f"-{number}"
    namespace = "" if provider in PLAIN_NAMESPACES else provider
    job_part = dns_label(job, max_len=MAX_LABEL - len(suffix), namespace=namespace)
    return f"{job_part}{suffix}"


def attempt_name(build: str, attempt: int) -> str:
    """A relaunched pod gets `-a2`, `-a3`; the first keeps the build name."""
    if attempt <= 1:
        return build
    suffix = f"-a{attempt}"
    return dns_label(build, max_len=MAX_LABEL - len(suffix)) + suffix


def env_suffix(name: str) -> str:
    """Port name -> environment variable suffix: `http-alt` -> `HTTP_ALT`."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def failure_anchor(index: int) -> str:
    """The build page's anchor of the record's failed test number `index` (from 0): where an
    annotation on the pull request links to. By position, not by name: test names hold anything."""
    return f"test-{index + 1}"
