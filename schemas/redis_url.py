"""What a `PODCI_REDIS_URL` names: one Redis (`redis://`, `rediss://`, `unix://`), or the Redis Sentinels
that know which server is the master now (`sentinel://host:port;sentinel://host2:port`, the form
Celery's broker takes too). Pure: the settings check it at start, `store.connection` connects by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379  # Redis Sentinel's own default port


@dataclass(frozen=True)
class SentinelUrl:
    """The sentinels to ask, and the database and credentials of the master they name."""

    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel(url: str) -> SentinelUrl:
    """The sentinels of `url`; ValueError with a sentence naming the part that is wrong. The database
    and credentials come from the first URL that gives them, as Celery's broker reads them."""
    nodes: list[tuple[str, int]] = []
    db: int | None = None
    username = password = None
    for item in (part.strip() for part in url.split(";")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(
                f"{item!r} is not a sentinel URL; list every sentinel as sentinel://HOST:PORT, "
                "separated by `;`, e.g. sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379"
            )
        try:
            port = parts.port or SENTINEL_PORT
        except ValueError:
            raise ValueError(f"{item!r} has a port that is not a number") from None
        nodes.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path and db is None:
            if not path.isdigit():
                raise ValueError(f"{item!r} names database {path!r}; a database is a number, e.g. /0")
            db = int(path)
        if parts.password is not None and password is None:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
    if not nodes:
        raise ValueError("no sentinel is listed; give at least one as sentinel://HOST:PORT")
    return SentinelUrl(tuple(nodes), db or 0, username, password)
