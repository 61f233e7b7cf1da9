"""Outbound requests to providers: timeouts, retries with capped backoff, pacing, and a log.

One ``aiohttp`` session per provider (connections are reused), created inside the
running loop. A request is retried on timeouts, connection errors, 5xx, 408 and 429 with
capped exponential backoff and full jitter; a ``Retry-After`` is honoured up to the
provider's cap, and one beyond the cap ends the call with ``ProviderUnavailable`` carrying
it, so the job is retried later instead of holding a worker. Every attempt is recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import structlog

from dispatch.catalog.provider import ProviderConfig, ProviderRejected, ProviderUnavailable
from dispatch.catalog.records import MalformedPayload
from dispatch.catalog.requests import acting_user
from dispatch.db.base import utcnow
from dispatch.queue.policy import RetryPolicy, retry_after_seconds

if TYPE_CHECKING:
    import aiohttp

    from dispatch.catalog.requests import RequestLog

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 430, 500, 502, 503, 504})
ERROR_BODY_LIMIT = 500  # characters of an error body kept in the request log
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, lower-cased headers, the body."""

    provider: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; MalformedPayload when it is not."""
        try:
            return orjson.loads(self.body)
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedPayload(f"{self.provider}: the answer is not JSON ({exc})") from exc

    def text(self, limit: int = ERROR_BODY_LIMIT) -> str:
        return self.body[:limit].decode("utf-8", "replace")

    def raise_for_status(self, what: str) -> None:
        """ProviderRejected for a 4xx, ProviderUnavailable for anything else not 2xx."""
        if self.ok:
            return
        message = f"{what} answered {self.status}: {self.text(200)}"
        if 400 <= self.status < 500 and self.status not in RETRYABLE_STATUSES:
            raise ProviderRejected(self.provider, message, status=self.status)
        raise ProviderUnavailable(self.provider, message, status=self.status)


def rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of an answer (Discogs' X-Discogs-Ratelimit-*, RateLimit-*…)."""
    return {k: v for k, v in headers.items() if "ratelimit" in k or k == "retry-after"}


def remaining_of(headers: Mapping[str, str]) -> int | None:
    for name in ("x-discogs-ratelimit-remaining", "x-ratelimit-remaining", "ratelimit-remaining"):
        value = headers.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


class RateGate:
    """Paces one provider's requests in this process.

    A token bucket refilled at ``per_minute`` (bursts up to a tenth of a minute's budget),
    and pauses learned from answers: a ``Retry-After``, or a remaining budget of zero,
    which waits for one slot of the window (Discogs: 60 s / 60 requests = 1 s).
    """

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._burst = max(1.0, (per_minute or 0) / 10)
        self._tokens = self._burst
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Take a slot; the seconds to wait before using it."""
        now = self._clock()
        wait = max(0.0, self._paused_until - now)
        if self.per_minute:
            rate = self.per_minute / 60.0
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            self._tokens -= 1.0
            if self._tokens < 0:
                wait = max(wait, -self._tokens / rate)
        return wait

    def observe(self, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from an answer's headers."""
        pause = retry_after or 0.0
        remaining = remaining_of(headers)
        if remaining is not None and remaining <= 0:
            limit_text = headers.get("x-discogs-ratelimit", headers.get("x-ratelimit-limit", ""))
            limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else 60
            pause = max(pause, 60.0 / limit)
        if pause > 0:
            self._paused_until = max(self._paused_until, self._clock() + pause)

    async def wait(self, sleep: Sleep) -> None:
        async with self._lock:  # one request takes the next slot at a time
            delay = self.delay()
            if delay > 0:
                await sleep(delay)


class ProviderHttp:
    """Requests to one provider, with retries, pacing and the request log."""

    def __init__(
        self,
        config: ProviderConfig,
        session: Callable[[], aiohttp.ClientSession],
        requests: RequestLog,
        gate: RateGate,
        *,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._session = session
        self._requests = requests
        self.gate = gate
        self._sleep = sleep
        self._rand = rand
        self._policy = RetryPolicy(
            max_attempts=config.max_retries + 1, base_seconds=0.5, cap_seconds=30.0, jitter=1.0
        )

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send with retries; the last answer (any status) or ProviderUnavailable."""
        url = self.url(path)
        attempts = self._policy.max_attempts
        for attempt in range(1, attempts + 1):
            await self.gate.wait(self._sleep)
            reply, error = await self._once(method, url, attempt, params, json_body, data, headers)
            retry_after = None
            if reply is not None:
                retry_after = retry_after_seconds(reply.headers.get("retry-after"), utcnow())
                self.gate.observe(reply.headers, retry_after if reply.status == 429 else None)
                if reply.status not in RETRYABLE_STATUSES:
                    return reply
                error = f"{method} {urlsplit(url).path} answered {reply.status}"
            cap = self.config.retry_after_cap_seconds
            if retry_after is not None and retry_after > cap:
                raise ProviderUnavailable(
                    self.config.name,
                    f"{error}; Retry-After {retry_after:.0f}s is past the {cap:.0f}s cap",
                    status=reply.status if reply else None,
                    retry_after=retry_after,
                )
            if attempt == attempts:
                raise ProviderUnavailable(
                    self.config.name,
                    f"{error} (after {attempts} attempts)",
                    status=reply.status if reply else None,
                    retry_after=retry_after,
                )
            delay = retry_after if retry_after is not None else self._policy.backoff(attempt)
            log.info("provider.retry", provider=self.config.name, attempt=attempt, delay=delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def _once(
        self,
        method: str,
        url: str,
        attempt: int,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[Reply | None, str]:
        import aiohttp

        started = time.perf_counter()
        endpoint = urlsplit(url).path or "/"
        try:
            async with self._session().request(
                method,
                url,
                params=dict(params) if params else None,
                json=json_body,
                data=dict(data) if data else None,
                headers=dict(headers) if headers else None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            ) as response:
                body = await response.read()
                reply = Reply(
                    self.config.name,
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    body,
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = f"{method} {endpoint}: {type(exc).__name__}: {exc}".strip()
            self._record(method, endpoint, None, started, error, attempt, {})
            return None, error
        error_text = None if reply.status < 400 else reply.text()
        self._record(method, endpoint, reply.status, started, error_text, attempt, reply.headers)
        return reply, ""

    def _record(
        self,
        method: str,
        endpoint: str,
        status: int | None,
        started: float,
        error: str | None,
        attempt: int,
        headers: Mapping[str, str],
    ) -> None:
        self._requests.add(
            {
                "provider": self.config.name,
                "method": method,
                "endpoint": endpoint[:2000],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "error": error[:ERROR_BODY_LIMIT] if error else None,
                "attempt": attempt,
                "rate_limit_remaining": remaining_of(headers),
                "rate_headers": rate_headers(headers),
                "user_id": acting_user(),
                "created_at": utcnow(),
            }
        )
