"""A load generator in its own process, so that it does not share a core's time with the gateway.

    python -m bench.load URL --body JSON [--token T] (--requests N | --seconds S) [--concurrency C]

Prints one JSON object: the latency of each request in ms, how many were done, and how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx


async def run(url: str, body: bytes, token: str | None, requests: int | None, seconds: float | None,
              concurrency: int) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30, trust_env=False) as client:
        for _ in range(20):  # warm the connections and both ends' code paths
            await client.post(url, content=body)
        started = time.perf_counter()
        deadline = started + seconds if seconds else None
        remaining = [requests or 0]

        async def worker() -> None:
            nonlocal failures
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if deadline is None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                begun = time.perf_counter()
                response = await client.post(url, content=body)
                latencies.append((time.perf_counter() - begun) * 1000)
                if response.status_code != 200:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies_ms": latencies, "count": len(latencies), "failures": failures, "elapsed_s": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--token")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.body.encode(), args.token, args.requests, args.seconds, args.concurrency))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
