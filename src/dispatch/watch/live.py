"""``GET /api/v1/stream/events``: seed 003's live stream, as server-sent events.

It holds no database session while it streams: messages come from this process's hub
(fed across processes, see ``watch.stream``); only a reconnect's replay reads the feed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from dispatch.deps import RuntimeDep
from dispatch.errors import ERROR_RESPONSES, AppError
from dispatch.models import WatchEvent, WatchNotification
from dispatch.runtime import Runtime
from dispatch.security.deps import presented_key, resolve_principal
from dispatch.watch import stream
from dispatch.watch.deps import StreamCaller
from dispatch.watch.evaluate import stream_message

router = APIRouter(responses=ERROR_RESPONSES)

REPLAY_LIMIT = 500


def _sse(message: dict[str, Any]) -> str:
    data = json.dumps(message, separators=(",", ":"))
    return f"id: {message['notification_id']}\nevent: notification\ndata: {data}\n\n"


async def _replay(runtime: Runtime, user_id: int | None, after: int) -> list[dict[str, Any]]:
    """What a reconnecting client missed since ``Last-Event-ID`` (the feed's own rows)."""
    query = (
        select(WatchNotification.id, WatchEvent)
        .join(WatchEvent, WatchEvent.id == WatchNotification.event_id)
        .where(WatchNotification.channel == "realtime", WatchNotification.id > after)
        .order_by(WatchNotification.id)
        .limit(REPLAY_LIMIT)
    )
    if user_id is not None:
        query = query.where(WatchNotification.user_id == user_id)
    async with runtime.database.session(write=False) as session:
        rows = (await session.execute(query)).all()
    return [stream_message(notification_id, event) for notification_id, event in rows]


Alive = Callable[[], Awaitable[bool]]


async def event_stream(
    runtime: Runtime, user_id: int | None, after: int | None, alive: Alive | None = None
) -> AsyncIterator[str]:
    """The stream's text. ``alive`` is asked at every keepalive whether the credentials
    that opened it still hold (a revoked key, a logout, a deactivated user end it)."""
    keepalive = runtime.settings.watch_stream_keepalive_seconds
    with stream.HUB.subscription(user_id) as queue:
        yield "retry: 3000\n: connected\n\n"
        last = after or 0
        if after is not None:
            for message in await _replay(runtime, user_id, after):
                last = message["notification_id"]
                yield _sse(message)
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                if alive is not None and not await alive():
                    return
                yield ": ping\n\n"
                continue
            if message["notification_id"] > last:  # replayed already, or seen twice
                last = message["notification_id"]
                yield _sse(message)


@router.get(
    "/stream/events",
    tags=["notifications"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    runtime: RuntimeDep,
    caller: StreamCaller,
    key: Annotated[str | None, Depends(presented_key)],
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-sent events: ``event: notification`` with seed 003's data, ``: ping`` keepalives.

    Works across processes (see ``watch.stream``); after a reconnect, ``Last-Event-ID``
    replays what was missed. An admin key receives every user's notifications.
    """
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

    async def alive() -> bool:
        try:
            return key is not None and await resolve_principal(runtime, key) is not None
        except AppError:
            return False

    return StreamingResponse(
        event_stream(runtime, caller.user_id, after, alive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
