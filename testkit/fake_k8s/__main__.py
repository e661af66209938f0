"""`python -m testkit.fake_k8s --port P`: the fake API server in a process of its own, until killed, so
that what a benchmark measures in its own process is podci's side only."""

from __future__ import annotations

import argparse

import uvicorn

from testkit.fake_k8s import FakeCluster, make_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(FakeCluster()), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
