"""A load generator in its own process, so that it does not share a core's time with the gateway.

    python -m bench.load URL --body JSON [--token T] (--requests N | --seconds S) [--concurrency C]
                             [--first-part] [--upload-mib M]

Prints one JSON object: the latency of each request in ms, how many were done, and how long it took.
``--first-part``: the latency is until the first part of the answer's body (an event stream's first
event), not its end. ``--upload-mib M``: each request's body is M MiB, the JSON of ``--body`` with a
``padding`` field, streamed from a generator (never whole in this process's memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable

import httpx


def upload(body: bytes, mib: int) -> tuple[int, Callable[[], AsyncIterator[bytes]]]:
    """A body of ``mib`` MiB: ``body`` (a JSON object) with a ``padding`` field; its length, and its parts."""
    head, tail = body.rstrip()[:-1] + b', "padding": "', b'"}'
    size = mib << 20
    filler = size - len(head) - len(tail)
    part = b"x" * (1 << 20)

    async def parts() -> AsyncIterator[bytes]:
        yield head
        for _ in range(filler >> 20):
            yield part
        yield part[:filler & ((1 << 20) - 1)]
        yield tail

    return size, parts


async def run(url: str, body: bytes, token: str | None, requests: int | None, seconds: float | None,
              concurrency: int, first_part: bool = False, upload_mib: int = 0) -> dict[str, object]:
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
                if upload_mib:
                    size, parts = upload(body, upload_mib)
                    response = await client.post(url, content=parts(), headers={"Content-Length": str(size)})
                    latencies.append((time.perf_counter() - begun) * 1000)
                elif first_part:
                    async with client.stream("POST", url, content=body) as response:
                        parts = response.aiter_raw()
                        await anext(parts, b"")
                        latencies.append((time.perf_counter() - begun) * 1000)
                        async for _ in parts:  # the rest of the answer, untimed
                            pass
                else:
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
    parser.add_argument("--first-part", action="store_true")
    parser.add_argument("--upload-mib", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.body.encode(), args.token, args.requests, args.seconds, args.concurrency,
                             args.first_part, args.upload_mib))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
