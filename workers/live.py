"""Following a build's test log while the tests run, into Redis for the pages (`store.live`).

A thread in each worker's main process (both backends) claims the builds whose tests have started
(`run_tests` asks for it: `LiveLogs.want`) and follows each in a thread of its own, through the
backend's `follow_tests` (the agent's log stream on Kubernetes, the log file on this machine). No
task runs meanwhile: the step stays parked. The claim is renewed while the follower lives; a killed
worker's lapses, and another worker resumes at the byte the text so far ends at. Text is masked
before it leaves the worker, and cut only where no secret can straddle the cut (`SafeCut`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable

from redis.exceptions import RedisError

from schemas.public import MASK
from schemas.record import Step
from schemas.settings import Settings
from store.builds import BuildStore
from store.live import CLAIM_SECONDS, LiveLogs
from workers.backends.base import BuildContext, ClusterBackend
from workers.errors import PermanentError

log = logging.getLogger("podci.live")
LONG_LINE = 4096  # a line without its end yet is shown once it is this long (up to a safe cut)
LOOK_EVERY = 1.0  # seconds between two looks for builds to follow (one Redis call per worker)


def source_of(ctx: BuildContext) -> str:
    """What is followed: the attempt's log; a relaunched pod's tests start a new one."""
    return f"attempt {ctx.attempt}"


class SafeCut:
    """Raw log bytes in, masked text out, cut only where no secret can straddle the cut.

    A chunk of a stream may end inside a secret, so the tail that could be the start of one is held
    back until more comes (or the stream ends). Text goes out at line ends, or once a line is
    `LONG_LINE` long; `taken` counts the raw bytes given out, where a resuming follower starts. Pure."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self.longest = max((len(s) for s in self.secrets), default=1)
        self.multiline = max((len(s) for s in self.secrets if b"\n" in s), default=0)
        self.held = b""
        self.taken = 0

    def feed(self, data: bytes, *, end: bool = False) -> str:
        """The text that may go out now (maybe empty); with `end`, everything held."""
        buffer = self.held + data
        cut = len(buffer) if end else self._cut(buffer)
        out, self.held = buffer[:cut], buffer[cut:]
        self.taken += cut
        for secret in self.secrets:
            out = out.replace(secret, MASK.encode())
        return out.decode(errors="replace")

    def _cut(self, buffer: bytes) -> int:
        cut = buffer.rfind(b"\n") + 1
        if len(buffer) - cut >= LONG_LINE:
            cut = len(buffer) - (self.longest - 1)
        if self.multiline:  # a secret spanning lines may have begun before the last line end
            cut = min(cut, len(buffer) - (self.multiline - 1))
        cut = self._before_secrets(buffer, max(cut, 0))
        while 0 < cut < len(buffer) and buffer[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
            cut -= 1
        return cut

    def _before_secrets(self, buffer: bytes, cut: int) -> int:
        """Moved back to the start of any whole secret the cut would split."""
        moved = True
        while moved:
            moved = False
            for secret in self.secrets:
                start = buffer.find(secret, max(0, cut - len(secret) + 1))
                if 0 <= start < cut < start + len(secret):
                    cut, moved = start, True
        return cut


class Follower:
    """One build's test log, followed to its end (or until this worker loses the claim)."""

    def __init__(
        self, live: LiveLogs, backend: ClusterBackend, ctx: BuildContext, secrets: tuple[str, ...]
    ) -> None:
        self.live, self.backend, self.ctx, self.secrets = live, backend, ctx, secrets
        self.stopped = threading.Event()

    def run(self) -> bool:
        """True when the log ended; False when another follower wrote first or this one was stopped."""
        source = source_of(self.ctx)
        cut = SafeCut(self.secrets)
        cut.taken = start = self.live.resume_at(self.ctx.build_id, source)
        for data in self.backend.follow_tests(self.ctx, start):
            if self.stopped.is_set() or not self._put(source, cut, cut.feed(data), start):
                return False
            start = cut.taken
        return self._put(source, cut, cut.feed(b"", end=True), start)

    def _put(self, source: str, cut: SafeCut, text: str, start: int) -> bool:
        if not text and cut.taken == start:
            return True
        return self.live.append(self.ctx.build_id, source, start, cut.taken, text)


class LiveFollowers:
    """The worker's thread that claims builds to follow, renews its claims, and starts a follower
    thread per claimed build."""

    def __init__(
        self, settings: Settings, store: BuildStore, live: LiveLogs, backend: ClusterBackend
    ) -> None:
        self.settings, self.store, self.live, self.backend = settings, store, live, backend
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.followers: dict[str, Follower] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="podci-live-logs", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        while not self.stopped.wait(LOOK_EVERY):
            try:
                self._look()
            except RedisError as exc:  # Redis restarting: the claims lapse, and anyone resumes later
                log.warning("live logs: %s", exc)

    def _look(self) -> None:
        with self.lock:
            mine = list(self.followers)
        for build in self.live.renew(self.me, mine):
            self._stop(build)
        for build in self.live.claim(self.me):
            self._follow(build)

    def _stop(self, build: str) -> None:
        with self.lock:
            follower = self.followers.pop(build, None)
        if follower is not None:
            follower.stopped.set()

    def _follow(self, build: str) -> None:
        record = self.store.get(build)
        if record is None or record.complete:
            self.live.drop(build, self.me)
            return
        try:
            checkout, logs = (
                self.settings.checkouts_dir / record.name,
                self.settings.scratch_log_dir(record.name),
            )
            ctx = BuildContext.from_record(record, checkout, logs)
        except PermanentError:
            self.live.drop(build, self.me)
            return
        follower = Follower(self.live, self.backend, ctx, self.settings.secret_values())
        with self.lock:
            self.followers[build] = follower
        threading.Thread(target=self._run, args=(follower,), name=f"podci-live-{build}", daemon=True).start()

    def _run(self, follower: Follower) -> None:
        build = follower.ctx.build_id
        try:
            ended = follower.run()
        except Exception as exc:  # the claim lapses and a follower tries again; the build goes on
            log.warning("build=%s following the test log stopped: %s", build, exc)
            ended = False
        with self.lock:
            if self.followers.get(build) is follower:
                del self.followers[build]
        if ended:  # otherwise the claim lapses: a failing follow is tried again after CLAIM_SECONDS
            self.live.ended(build, source_of(follower.ctx), self.me)
            self._relaunched(follower.ctx)

    def _relaunched(self, followed: BuildContext) -> None:
        """A relaunched pod's tests may have asked to be followed before the lost pod's log ended (and
        `ended` took the build off the wanted set): ask again for the new attempt."""
        record = self.store.get(followed.build_id)
        if record is None or record.complete or record.step is not Step.run_tests:
            return
        if record.attempts > followed.attempt:
            self.live.want(followed.build_id, f"attempt {record.attempts}")


def start_live_logs(settings: Settings, backend: ClusterBackend, store: BuildStore) -> LiveFollowers:
    """One per worker, in its main process; CLAIM_SECONDS leaves room for many looks between renewals."""
    assert LOOK_EVERY * 3 < CLAIM_SECONDS
    followers = LiveFollowers(settings, store, LiveLogs(store.redis, settings.retention_seconds), backend)
    followers.start()
    return followers
