"""A flood of wrong credentials at ``POST /oauth/token``, in its own process, until it is terminated.

    python -m bench.flood GATEWAY_URL CLIENT_ID [--loops 4]

Each loop posts a wrong secret for ``CLIENT_ID``, waits for the answer and posts again, paying no
heed to ``Retry-After`` (as an attacker would not). On SIGTERM it prints one JSON object: how many
answers of each status it got, and for how long it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import Counter

import httpx


async def run(gateway: str, client_id: str, loops: int) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    limits = httpx.Limits(max_connections=loops, max_keepalive_connections=loops)
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=30, trust_env=False) as client:
        async def loop(number: int) -> None:
            attempt = 0
            while not stop.is_set():
                attempt += 1
                response = await client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                             auth=(client_id, f"wrong-{number}-{attempt}"))
                statuses[response.status_code] += 1

        started = time.perf_counter()
        workers = [asyncio.create_task(loop(n)) for n in range(loops)]
        print("flooding", file=sys.stderr, flush=True)
        await stop.wait()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return {"statuses": {str(k): v for k, v in sorted(statuses.items())}, "elapsed_s": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway")
    parser.add_argument("client_id")
    parser.add_argument("--loops", type=int, default=4)
    args = parser.parse_args()
    json.dump(asyncio.run(run(args.gateway, args.client_id, args.loops)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
