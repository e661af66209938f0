"""Objects, one resourceVersion counter, the event history and the live watchers.

Like etcd behind the API server, every change of any object takes the next resourceVersion and becomes a
watch event; a bounded history lets a watch resume from an older resourceVersion, and a resume from
before the history (compacted) is answered with 410 Expired, which is what the backend must survive.

Changes come from three threads (uvicorn's loop, the simulator's clock, the test thread), so everything
here runs under the cluster's one lock; watchers are asyncio queues on uvicorn's loop, fed with
`loop.call_soon_threadsafe` so that a change made in any thread wakes them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class WatchEvent:
    """One change, as a watcher sees it: the object is a snapshot and must not be mutated."""

    rv: int
    resource: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj

    def line(self) -> bytes:
        return (json.dumps({"type": self.type, "object": self.object}) + "\n").encode()


@dataclass(eq=False)
class Subscriber:
    resource: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


class ObjectStore:
    """Live objects by resource and (namespace, name); callers hold `lock` while using it."""

    def __init__(self, lock: threading.RLock, history_size: int) -> None:
        self.lock = lock
        self.objects: dict[str, dict[Key, Obj]] = {}
        self.rv = 1
        self.history: deque[WatchEvent] = deque(maxlen=max(1, history_size))
        self.compacted_rv = 0  # events at or below this resourceVersion may be gone from the history
        self.subscribers: set[Subscriber] = set()

    # -- reading -------------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        """The live object (do not mutate it: `put` a modified copy)."""
        return self.objects.get(resource, {}).get((namespace, name))

    def items(self, resource: str, namespace: str | None = None) -> list[Obj]:
        items = self.objects.get(resource, {})
        return [o for (ns, _), o in sorted(items.items()) if namespace is None or ns == namespace]

    # -- writing -------------------------------------------------------------------------------------

    def put(self, resource: str, obj: Obj, event_type: str) -> Obj:
        """Store `obj` (ADDED or MODIFIED) under a new resourceVersion; return a snapshot of it."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        meta = obj["metadata"]
        self.objects.setdefault(resource, {})[(meta.get("namespace", ""), meta["name"])] = obj
        snapshot = copy.deepcopy(obj)
        self._emit(WatchEvent(self.rv, resource, meta.get("namespace", ""), event_type, snapshot))
        return copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str, name: str) -> Obj | None:
        """Remove the object; the DELETED event carries it with the deletion's resourceVersion."""
        obj = self.objects.get(resource, {}).pop((namespace, name), None)
        if obj is None:
            return None
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        snapshot = copy.deepcopy(obj)
        self._emit(WatchEvent(self.rv, resource, namespace, "DELETED", snapshot))
        return copy.deepcopy(obj)

    def _emit(self, event: WatchEvent) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        dead = []
        for sub in self.subscribers:
            if sub.resource == event.resource:
                try:
                    sub.loop.call_soon_threadsafe(sub.queue.put_nowait, event)
                except RuntimeError:  # that loop is closed: the server is gone
                    dead.append(sub)
        self.subscribers.difference_update(dead)

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does: older resourceVersions now give 410."""
        self.history.clear()
        self.compacted_rv = self.rv

    # -- watching ------------------------------------------------------------------------------------

    def subscribe(self, resource: str, since: int | None, sub: Subscriber) -> list[WatchEvent] | None:
        """Register `sub` and return the events it must see first, atomically so none is missed.

        `since` None (or 0) means "from now, starting with the current state": one synthetic ADDED per
        existing object, as the API server does. Otherwise every retained event after `since`; None
        when events after `since` were compacted away (the caller answers 410).
        """
        if since:
            if since < self.compacted_rv:
                return None
            backlog = [e for e in self.history if e.resource == resource and e.rv > since]
        else:
            backlog = [
                WatchEvent(int(o["metadata"]["resourceVersion"]), resource, ns, "ADDED", copy.deepcopy(o))
                for (ns, _), o in sorted(self.objects.get(resource, {}).items())
            ]
        self.subscribers.add(sub)
        return backlog

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close_watchers(self) -> None:
        """End every open watch stream (a None in the queue), so that uvicorn can shut down."""
        for sub in self.subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, None)
            except RuntimeError:
                pass
        self.subscribers.clear()
