"""The soak's steady load on a running ``dispatch serve``: four workloads at once, paced.

- **ingest + deliveries**: gateway tasks POSTed at a fixed rate to one endpoint with two
  resources on the sink (bench/gateway_sink.py), counted as accepted (202) and delivered
  (distinct tasks the sink received);
- **scraping**: a provider sync every few seconds, rotating over the stand-in providers
  (``dispatch.demo.providers``), whose prices change between syncs so each scrape writes;
- **the live stream**: one server-sent-events connection per watch user plus one with the
  admin key, held open throughout, counting messages;
- **events**: new listings through the development ingest route at a fixed rate, each
  matching every user's rule (and so reaching every stream).

Every request's latency is kept per window; ``Load.take_window`` hands over what finished
since the last call, for the sampler.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from bench.gateway_deploy import ADMIN, Route, configure
from bench.gateway_runs import TOKEN_HEADER, SinkControl, body
from bench.serving import RunningServer

from dispatch.demo.providers import FakeProviders

V1 = "/api/v1"
ENDPOINT = "soak"
SINK_PATHS = ("soak-primary", "soak-secondary")
RESOURCE_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
PASSWORD = "a long soak password"  # noqa: S105 - the benchmark's own made-up users
# Providers the soak scrapes, in turn; the offers service has no registered products, so its
# sync is a cheap no-op: it is left to its own default schedule.
SYNC_ROTATION = ("complexshop", "goat", "universalstore", "ebay", "discogs")
LISTING_PROVIDER = "goat"
LISTING_WORD = "soakrunner"  # in every development listing's title, in no recorded answer


@dataclass(frozen=True)
class Pace:
    """The steady load: rates per second, the sync interval, how many streams."""

    tasks_per_second: float = 25.0
    listings_per_second: float = 2.0
    sync_every_seconds: float = 20.0
    users: int = 4  # each with a stream; the admin key holds one more

    @property
    def streams(self) -> int:
        return self.users + 1


@dataclass(frozen=True)
class Done:
    """One finished request: when (perf_counter), what, how long, whether it succeeded."""

    at: float
    kind: str
    ms: float
    ok: bool


@dataclass
class StreamClient:
    """One held SSE connection: its messages, the listings they named, how it ended."""

    name: str
    headers: dict[str, str]
    messages: int = 0
    listing_ids: set[int] = field(default_factory=set)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


@dataclass
class Tally:
    """What the load did, for the report and the failure checks."""

    accepted: int = 0
    listings: list[int] = field(default_factory=list)  # development listings ingested (ids)
    syncs: list[tuple[str, int]] = field(default_factory=list)  # (provider, job id)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: dict[str, str] = field(default_factory=dict)

    def error(self, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.first_errors.setdefault(kind, message[:300])


class PriceFlipper:
    """Moves the stand-ins' prices between syncs, so every scrape has changes to write."""

    def __init__(self, fake: FakeProviders) -> None:
        self.fake = fake
        self.shopify = copy.deepcopy(fake.shopify_pages)
        self.algolia = copy.deepcopy(fake.algolia)
        self.turn = 0

    def flip(self) -> None:
        """Alternate between the recorded prices and 10 % below them."""
        self.turn += 1
        factor = 0.9 if self.turn % 2 else 1.0
        pages = copy.deepcopy(self.shopify)
        for page in pages:
            if isinstance(page, dict):
                for product in page.get("products", []):
                    for variant in product.get("variants", []):
                        variant["price"] = f"{float(variant['price']) * factor:.2f}"
        algolia = copy.deepcopy(self.algolia)
        for hit in algolia.get("hits", []):
            for key in ("lowest_price_cents", "retail_price_cents"):
                if hit.get(key):
                    hit[key] = round(hit[key] * factor)
        # Whole objects swapped in: the stand-in's thread never sees a half-edited answer.
        self.fake.shopify_pages = pages
        self.fake.algolia = algolia
        self.fake.discogs_remaining = 60  # the stand-in's budget never resets by itself
        self.fake.seen.clear()  # it keeps every request; the soak would grow it without end


class Load:
    """Sets Dispatch up through its API, then runs the four workloads until ``stop``."""

    def __init__(
        self, server: RunningServer, sink: SinkControl, fake: FakeProviders, pace: Pace
    ) -> None:
        self.server = server
        self.sink = sink
        self.pace = pace
        self.flipper = PriceFlipper(fake)
        self.tally = Tally()
        self.streams: list[StreamClient] = []
        self.token = ""
        self.user_keys: list[str] = []
        self._window: list[Done] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self.http = httpx.AsyncClient(
            base_url=server.base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits
        )

    # Set-up -----------------------------------------------------------------------------

    async def set_up(self) -> None:
        """The gateway endpoint and client, the watch users, their keys and rules."""
        route = Route(ENDPOINT, tuple((path, self.sink.url(path)) for path in SINK_PATHS))
        self.token = await asyncio.to_thread(
            configure, self.server, [route], RESOURCE_TIMEOUT_SECONDS
        )
        for n in range(1, self.pace.users + 1):
            key = await self._new_user(f"soak-{n}@example.com")
            self.user_keys.append(key)
            headers = {"X-Dispatch-Key": key}
            for rule in _rules():
                await self._created(f"{V1}/watch-rules", rule, headers)
            self.streams.append(StreamClient(f"user-{n}", headers))
        self.streams.append(StreamClient("admin", dict(ADMIN)))

    async def _new_user(self, email: str) -> str:
        user = await self._created(f"{V1}/users", {"email": email, "password": PASSWORD}, ADMIN)
        key = await self._created(f"{V1}/users/{user['id']}/keys", {"name": "soak"}, ADMIN)
        secret: str = key["key"]
        return secret

    async def _created(
        self, path: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        response = await self.http.post(path, json=payload, headers=headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text}")
        created: dict[str, Any] = response.json()
        return created

    # Running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every stream (waiting until each is connected), then start the paced work."""
        for client in self.streams:
            self._tasks.append(asyncio.create_task(self._read_stream(client)))
        async with asyncio.timeout(15):
            for client in self.streams:
                await client.connected.wait()
        self._tasks += [
            asyncio.create_task(self._paced(self.pace.tasks_per_second, self._post_task)),
            asyncio.create_task(self._paced(self.pace.listings_per_second, self._ingest)),
            asyncio.create_task(self._paced(1 / self.pace.sync_every_seconds, self._sync)),
        ]

    async def stop_load(self) -> None:
        """Stop sending; wait for the requests in flight (the streams stay open)."""
        self._stopping.set()
        for task in self._tasks[len(self.streams) :]:
            await task
        if self._in_flight:
            await asyncio.wait(self._in_flight)

    async def close(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.http.aclose()

    def take_window(self) -> list[Done]:
        window, self._window = self._window, []
        return window

    def stream_errors(self) -> list[str]:
        return [f"{c.name}: {c.error}" for c in self.streams if c.error is not None]

    async def _paced(self, rate: float, send: Callable[[int], Coroutine[Any, Any, None]]) -> None:
        """Open loop: call n starts at n / rate s, whatever earlier calls are doing."""
        start = time.perf_counter()
        for n in itertools.count():
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            task = asyncio.create_task(send(n))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _request(
        self, kind: str, method: str, path: str, expect: int, **options: Any
    ) -> httpx.Response | None:
        """One timed request; a transport error or an unexpected status is a counted error."""
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **options)
        except httpx.HTTPError as exc:
            self.tally.error(kind, f"{type(exc).__name__}: {exc}")
            self._window.append(Done(time.perf_counter(), kind, _ms(started), False))
            return None
        ok = response.status_code == expect
        self._window.append(Done(time.perf_counter(), kind, _ms(started), ok))
        if not ok:
            self.tally.error(kind, f"{response.status_code}: {response.text}")
            return None
        return response

    async def _post_task(self, seq: int) -> None:
        headers = {TOKEN_HEADER: self.token, "Content-Type": "application/json"}
        answer = await self._request(
            "ingest", "POST", f"/api/{ENDPOINT}", 202, content=body(seq), headers=headers
        )
        if answer is not None:
            self.tally.accepted += 1

    async def _ingest(self, seq: int) -> None:
        listing = {
            "provider": LISTING_PROVIDER,
            "external_id": f"soak-{seq}",
            "title": f"Soak {LISTING_WORD.title()} {seq}",
            "price": f"{50 + seq % 100}.00",
            "currency": "USD",
            "condition": "new",
        }
        headers = {"X-Dispatch-Key": self.user_keys[seq % len(self.user_keys)]}
        answer = await self._request(
            "listing", "POST", f"{V1}/dev/listings/ingest", 200, json=listing, headers=headers
        )
        if answer is not None:
            self.tally.listings.append(int(answer.json()["listing"]["id"]))

    async def _sync(self, seq: int) -> None:
        provider = SYNC_ROTATION[seq % len(SYNC_ROTATION)]
        self.flipper.flip()
        path = f"{V1}/providers/{provider}/sync"
        answer = await self._request("sync", "POST", path, 202, headers=ADMIN)
        if answer is not None:
            self.tally.syncs.append((provider, int(answer.json()["job_id"])))

    async def _read_stream(self, client: StreamClient) -> None:
        """Hold one SSE connection for the whole run; any end before ``close`` is an error."""
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with (
                httpx.AsyncClient(base_url=self.server.base_url, timeout=timeout) as http,
                http.stream("GET", f"{V1}/stream/events", headers=client.headers) as response,
            ):
                if response.status_code != 200:
                    client.error = f"answered {response.status_code}"
                    return
                async for line in response.aiter_lines():
                    if line.startswith(": connected"):
                        client.connected.set()
                    elif line.startswith("data: "):
                        message = json.loads(line[len("data: ") :])
                        client.messages += 1
                        if message.get("listing_id") is not None:
                            client.listing_ids.add(int(message["listing_id"]))
            client.error = "the server ended the stream"
        except httpx.HTTPError as exc:
            client.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.connected.set()  # never leave start() waiting on a failed stream

    # Checks at the end ------------------------------------------------------------------

    def events_received(self) -> int:
        return sum(client.messages for client in self.streams)

    def missing_listings(self) -> dict[str, int]:
        """Per stream, ingested development listings whose message has not arrived."""
        expected = set(self.tally.listings)
        return {c.name: len(expected - c.listing_ids) for c in self.streams}

    async def delivered(self) -> int:
        paths = (await self.sink.stats())["paths"]
        return sum(paths.get(f"/{path}", {}).get("distinct_tasks", 0) for path in SINK_PATHS)

    async def delivered_by_path(self) -> dict[str, int]:
        paths = (await self.sink.stats())["paths"]
        return {path: paths.get(f"/{path}", {}).get("distinct_tasks", 0) for path in SINK_PATHS}

    async def sync_outcomes(self) -> dict[str, Any]:
        """Each sync job's end state (and the changes its scrape wrote), per provider."""
        states: dict[str, Counter[str]] = {}
        changes: Counter[str] = Counter()
        errors: dict[str, str] = {}
        for provider, job_id in self.tally.syncs:
            response = await self.http.get(f"{V1}/jobs/{job_id}", headers=ADMIN)
            job: dict[str, Any] = {"state": "unknown"}
            if response.status_code == 200:
                job = response.json()
            states.setdefault(provider, Counter())[job["state"]] += 1
            changes[provider] += int((job.get("result") or {}).get("changes", 0))
            if job.get("last_error"):
                errors.setdefault(provider, str(job["last_error"])[:300])
        return {
            "states": {name: dict(counts) for name, counts in states.items()},
            "changes": dict(changes),
            "errors": errors,
        }


def _rules() -> Sequence[dict[str, Any]]:
    """Each user's rules: every development listing, and the scraped products."""
    shops = ["complexshop", "universalstore"]
    return [
        {"name": "soak", "query": {"sources": [LISTING_PROVIDER], "keywords": [LISTING_WORD]}},
        {"name": "jordans", "query": {"sources": ["goat"], "keywords": ["jordan"]}},
        {"name": "craig jones", "query": {"sources": shops, "keywords": ["craig jones"]}},
        {"name": "sneakers", "query": {"sources": ["ebay"], "keywords": ["sneakers"]}},
    ]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
