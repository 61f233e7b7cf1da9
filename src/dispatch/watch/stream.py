"""The live stream of notifications, across processes.

The worker that writes a notification publishes it; every API process relays what is
published to the stream subscribers it holds (``HUB``). How it travels depends on the
deployment, the same choice in every process (``transport``):

- Redis (``REDIS_URL`` set): ``PUBLISH`` after the commit; each API process subscribes.
- PostgreSQL: ``pg_notify`` inside the transaction that writes the notifications, so it
  is delivered exactly when they commit (and never for a rolled-back batch); each API
  process LISTENs on a connection of its own.
- SQLite: in the process (the embedded worker and the API share it).

Seed 003's stream lived in the API process while its Celery worker published into a
broker of its own: nothing arrived outside eager mode, yet notifications were marked sent.

A subscriber that falls behind by ``QUEUE_SIZE`` messages loses the oldest; it catches up
from the database with ``Last-Event-ID`` on reconnect (the stream route replays from there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog
from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.queue.notify import listen_channel

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

CHANNEL = "dispatch_watch"
QUEUE_SIZE = 1_000
Message = dict[str, Any]
Transport = Literal["redis", "postgres", "local"]


def transport(settings: Settings) -> Transport:
    if settings.redis_url:
        return "redis"
    return "postgres" if settings.database_kind == "postgresql" else "local"


def redis_channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}:{CHANNEL}"


class Hub:
    """This process's stream subscribers, by user; an admin's subscription (None) sees all."""

    def __init__(self) -> None:
        self._subscribers: dict[int | None, set[asyncio.Queue[Message]]] = {}

    @contextlib.contextmanager
    def subscription(self, user_id: int | None) -> Any:
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(user_id, set()).add(queue)
        try:
            yield queue
        finally:
            group = self._subscribers.get(user_id, set())
            group.discard(queue)
            if not group:
                self._subscribers.pop(user_id, None)

    def deliver(self, message: Message) -> None:
        for key in (message.get("user_id"), None):
            for queue in self._subscribers.get(key, ()):
                if queue.full():
                    queue.get_nowait()  # the oldest goes; Last-Event-ID recovers it
                queue.put_nowait(message)

    @property
    def subscribers(self) -> int:
        return sum(len(group) for group in self._subscribers.values())


HUB = Hub()


async def publish_in_transaction(session: AsyncSession, messages: Sequence[Message]) -> None:
    """PostgreSQL: NOTIFY in the writing transaction (delivered on commit); else nothing."""
    if not messages or session.get_bind().dialect.name != "postgresql":
        return
    payloads = [orjson.dumps(message).decode() for message in messages]
    statement = text(
        "SELECT pg_notify(:channel, payload) FROM unnest(:payloads) AS payload"
    ).bindparams(bindparam("channel", CHANNEL), bindparam("payloads", payloads, type_=ARRAY(Text)))
    await session.execute(statement)


class Publisher:
    """Publishes committed notifications the way this deployment relays them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.transport = transport(settings)
        self._redis: Redis | None = None

    async def after_commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        if self.transport == "local":
            for message in messages:
                HUB.deliver(message)
        elif self.transport == "redis":
            await self._publish_redis(messages)

    async def _publish_redis(self, messages: Sequence[Message]) -> None:
        if self._redis is None:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self.settings.redis_url or "")
        channel = redis_channel(self.settings)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.publish(channel, orjson.dumps(message))
                await pipe.execute()
        except Exception as exc:  # the feed has them; a reconnecting client replays them
            log.warning("watch.publish_failed", error=str(exc), count=len(messages))


_PUBLISHERS: dict[tuple[str, str | None], Publisher] = {}


def publisher_for(settings: Settings) -> Publisher:
    """This process's publisher for a deployment: one Redis connection however many
    evaluators (the feed loop, rule polls, development routes) publish."""
    key = (transport(settings), settings.redis_url)
    if key not in _PUBLISHERS:
        _PUBLISHERS[key] = Publisher(settings)
    return _PUBLISHERS[key]


def _relay(payload: str | bytes) -> None:
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if isinstance(message, dict):
        HUB.deliver(message)


async def relay(settings: Settings, database: Database, redis: Redis | None) -> None:
    """Feed ``HUB`` from other processes until cancelled (an API process runs this)."""
    kind = transport(settings)
    if kind == "postgres":
        await listen_channel(database, CHANNEL, _relay)
    elif kind == "redis" and redis is not None:
        await _relay_redis(redis, redis_channel(settings))
    else:
        await asyncio.Event().wait()  # in-process: the publisher delivers directly


async def _relay_redis(redis: Redis, channel: str) -> None:
    delay = 1.0
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                delay = 1.0
                async for item in _messages(pubsub):
                    _relay(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # clients replay what they missed on reconnect
            log.warning("watch.relay_failed", error=str(exc), retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def _messages(pubsub: Any) -> AsyncIterator[bytes]:
    async for item in pubsub.listen():
        if item.get("type") == "message":
            yield item["data"]
