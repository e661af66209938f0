"""A tiny HTTP counter backed by SQLite: the real dependency the example's tests talk to.

Its database is created fresh for every build, in the build's own workspace.
"""

import argparse
import json
import sqlite3
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    # All addresses by default, not 127.0.0.1: on a cluster the kubelet's readiness probe dials the
    # pod's own IP, which a service bound to 127.0.0.1 never answers.
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    db = sqlite3.connect(args.db, check_same_thread=False, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    time.sleep(0.5)  # stands in for a slower migration: the tests must wait for readiness

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            name = self.path.strip("/") or "default"
            row = db.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()
            self._reply(200, {"name": name, "value": row[0] if row else 0})

        def do_POST(self) -> None:
            name = self.path.strip("/") or "default"
            db.execute(
                "INSERT INTO counter VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,)
            )
            self.do_GET()

        def log_message(self, format: str, *args: object) -> None:
            print(format % args, flush=True)

    print(f"counter listening on {args.host}:{args.port}", flush=True)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
