"""Overload: twice the measured capacity for 60 s against a real ``llmos serve``.

    python -m bench.overload [--seconds 60] [--factor 2] [--out bench/results/overload.json]

Starts ``llmos serve`` on the demo packs (build/demo, build/keys/fleet.key), then:

1. capacity: closed loop, ``--clients`` concurrent clients sending one-sentence v2
   embedding requests (MiniLM) for ``--warm`` seconds: requests/s completed, and the
   server's resident memory (RSS) at the end;
2. overload: an open loop at ``factor`` x that rate for ``--seconds`` (requests fired on
   schedule whatever the answers), while /health is asked every 0.25 s and the RSS read
   every 0.5 s.

It reports each status, whether every 503 carried Retry-After, whether every accepted
request completed (200), the RSS peak against the capacity level, and /health's slowest
answer. Pass/fail lines for the issue's targets: excess answered 503 + Retry-After,
accepted requests complete, RSS within 10 %, /health within 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
BODY = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                               "data": ["The quick brown fox jumps over the lazy dog."]}]})
PATH = "/v2/models/minilm/infer"


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[int, bool, float]:
    t0 = time.perf_counter()
    try:
        async with session.post(url + PATH, data=BODY,
                                headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return r.status, "Retry-After" in r.headers, time.perf_counter() - t0
    except aiohttp.ClientError:
        return -1, False, time.perf_counter() - t0


async def capacity(url: str, clients: int, seconds: float) -> float:
    done = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def loop() -> None:
            nonlocal done
            while time.monotonic() < end:
                status, _, _ = await _one(s, url)
                done += status == 200
        await asyncio.gather(*(loop() for _ in range(clients)))
    return done / seconds


async def overload(url: str, rate: float, seconds: float, proc: psutil.Process) -> dict[str, Any]:
    results: list[tuple[int, bool, float]] = []
    health: list[float] = []
    rss: list[int] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        def probe() -> None:
            """In a thread of its own, so the load generator's loop does not delay it."""
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
            while not stop.is_set():
                t0 = time.perf_counter()
                conn.request("GET", "/health")
                conn.getresponse().read()
                health.append(time.perf_counter() - t0)
                time.sleep(0.25)
            conn.close()

        async def memory() -> None:
            while not stop.is_set():
                rss.append(proc.memory_info().rss)
                await asyncio.sleep(0.5)

        async def fire() -> None:
            tasks = []
            start = time.monotonic()
            n = int(rate * seconds)
            for i in range(n):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_one(s, url)))
            results.extend(await asyncio.gather(*tasks))
            stop.set()

        await asyncio.gather(asyncio.to_thread(probe), memory(), fire())
    statuses = collections.Counter(r[0] for r in results)
    refused = [r for r in results if r[0] == 503]
    return {"sent": len(results), "statuses": dict(statuses),
            "retry_after_on_every_503": all(r[1] for r in refused),
            "accepted_latency_p99_s": _pct([r[2] for r in results if r[0] == 200], 0.99),
            "health_max_s": max(health), "health_p99_s": _pct(health, 0.99),
            "health_probes": len(health), "rss_max": max(rss), "rss_samples": len(rss)}


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--warm", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "overload.json")
    args = ap.parse_args()
    from hostile.conftest import start_server, stop_server  # the tests' launcher

    load_before = os.getloadavg()[0]  # the other jobs on this machine, beside the figures
    with tempfile.TemporaryDirectory() as tmp:
        served = start_server(Path(tmp))
        try:
            proc = psutil.Process(served.process.pid)
            cap = asyncio.run(capacity(served.url, args.clients, args.warm))
            rss_cap = proc.memory_info().rss
            rate = args.factor * cap
            over = asyncio.run(overload(served.url, rate, args.seconds, proc))
        finally:
            stop_server(served)
    ok = over["statuses"].get(200, 0)
    other = {k: v for k, v in over["statuses"].items() if k not in (200, 503)}
    report = {"capacity_rps": cap, "rate_rps": rate, "seconds": args.seconds,
              "worker_nice": os.environ.get("LLMOS_SERVER_WORKER_NICE", "default"),
              "load_average_1min": [load_before, os.getloadavg()[0]],
              "rss_at_capacity": rss_cap, **over,
              "rss_ratio": over["rss_max"] / rss_cap,
              "checks": {
                  "excess answered 503 with Retry-After": over["statuses"].get(503, 0) > 0
                  and over["retry_after_on_every_503"],
                  "accepted requests complete (nothing but 200 and 503)": not other,
                  "RSS within 10 % of capacity's": over["rss_max"] <= 1.10 * rss_cap,
                  "/health within 100 ms throughout": over["health_max_s"] <= 0.100}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"accepted {ok} of {over['sent']} at {rate:.0f}/s for {args.seconds:g} s")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
