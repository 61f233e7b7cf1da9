"""The delivery limit for bench/gateway.py: a bare async HTTP client posting to the sink.

``--concurrency`` loops share one client and POST the same JSON body to ``--url`` back to
back, with nothing else to do: no database, no queue, no signing. After ``--warmup-seconds``
it counts the answers that arrive in ``--seconds`` and prints one JSON line
(``client``, ``requests``, ``seconds``, ``errors``). Run as
``python bench/gateway_client.py --client aiohttp|httpx --url U --body JSON``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module (which asyncio imports).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))

import asyncio

import aiohttp
import httpx
import uvloop

CLIENTS = ("aiohttp", "httpx")
TIMEOUT_SECONDS = 10.0
Post = Callable[[], Awaitable[bool]]


@dataclass
class Tally:
    client: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0


async def hammer(post: Post, tally: Tally, concurrency: int, warmup: float, seconds: float) -> None:
    """``concurrency`` loops posting until the time is up; only the measured window counts."""
    start = time.perf_counter() + warmup
    end = start + seconds

    async def loop() -> None:
        while time.perf_counter() < end:
            ok = await post()
            if start <= time.perf_counter() <= end:  # answered inside the measured window
                tally.requests += ok
                tally.errors += not ok

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    tally.seconds = seconds


async def run(
    client: str, url: str, body: bytes, concurrency: int, warmup: float, seconds: float
) -> Tally:
    headers = {"Content-Type": "application/json"}
    tally = Tally(client)
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def post_aiohttp() -> bool:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    return response.status == 200

            await hammer(post_aiohttp, tally, concurrency, warmup, seconds)
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_SECONDS) as http:

            async def post_httpx() -> bool:
                response = await http.post(url, content=body, headers=headers)
                return response.status_code == 200

            await hammer(post_httpx, tally, concurrency, warmup, seconds)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="The JSON body to POST")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    work = run(
        args.client,
        args.url,
        args.body.encode(),
        args.concurrency,
        args.warmup_seconds,
        args.seconds,
    )
    # The loop `dispatch serve` runs on: uvicorn picks uvloop when it is installed.
    tally = uvloop.run(work)
    print(json.dumps(asdict(tally)))


if __name__ == "__main__":
    main()
