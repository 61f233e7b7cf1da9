"""One pure-ASGI middleware for request ids, body limits, access logs, metrics and 500s.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request cost to a few
microseconds; it sits inside Starlette's error middleware, so an unexpected
exception reaches it first and becomes an enveloped 500 carrying the request id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.errors import envelope
from dispatch.telemetry.logging import REQUEST_ID
from dispatch.telemetry.metrics import Metrics

log = structlog.get_logger("dispatch.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"
_VARY_ORIGIN = (b"vary", b"Origin")


def _request_headers(scope: Scope) -> tuple[str | None, int | None, bool]:
    """X-Request-ID, Content-Length and whether Origin is present, in one pass."""
    request_id: str | None = None
    length: int | None = None
    has_origin = False
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            request_id = value.decode("latin-1")
        elif key == b"content-length" and value.isdigit():
            length = int(value)
        elif key == b"origin":
            has_origin = True
    return request_id, length, has_origin


def route_template(scope: Scope) -> str:
    """The matched route's template, so metrics keep one series per route, not per id."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def _emit_usage(scope: Scope, route: str, status: int, elapsed: float) -> None:
    """Seed 000's API-usage telemetry event, one per API call."""
    runtime = getattr(scope["app"].state, "runtime", None)
    if runtime is None or not runtime.telemetry.enabled:
        return
    principal = scope.get("state", {}).get("principal")
    runtime.telemetry.emit(
        "api.usage",
        method=scope["method"],
        route=route,
        status=status,
        client=principal.identity if principal is not None else None,
        duration_ms=round(elapsed * 1000, 2),
    )


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        usage_prefix: str,
        log_level: str = "INFO",
        cors: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        # CORS wraps the same inner app; requests without Origin skip its layer entirely
        # and only get the Vary header a cache needs.
        self.cors = cors(app) if cors is not None else None
        self.metrics = metrics
        self.usage_prefix = usage_prefix
        self.max_body_bytes = max_body_bytes
        # Decided once: building an access-log record nobody will see costs more than the check.
        self.log_threshold = logging.getLevelName(log_level)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied, length, has_origin = _request_headers(scope)
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "started": False}
        extra_headers = [(b"x-request-id", request_id.encode())]
        inner = self.app
        if self.cors is not None:
            if has_origin:
                inner = self.cors
            else:
                extra_headers.append(_VARY_ORIGIN)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        try:
            if length is not None and length > self.max_body_bytes:
                await self._send_error(
                    send_with_id,
                    request_id,
                    413,
                    "payload_too_large",
                    f"Request body exceeds {self.max_body_bytes} bytes",
                )
            else:
                await inner(scope, self._limited(receive), send_with_id)
        except Exception:
            log.exception("http.unhandled_error", method=scope["method"], path=scope["path"])
            if not response["started"]:
                await self._send_error(
                    send_with_id,
                    request_id,
                    500,
                    "internal_error",
                    "An unexpected error occurred; quote the request id",
                )
        finally:
            self._record(scope, response["status"], time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        """Metrics, the access log line and the API-usage telemetry event."""
        route = route_template(scope)
        self.metrics.observe_request(scope["method"], route, status, elapsed)
        level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
        if level >= self.log_threshold:
            log.log(
                level,
                "http.request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
        if scope["path"].startswith(self.usage_prefix):
            _emit_usage(scope, route, status, elapsed)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing, so this stays a 413.
                    raise HTTPException(413, f"Request body exceeds {limit} bytes")
            return message

        return receive_limited

    @staticmethod
    async def _send_error(
        send: Send, request_id: str, status: int, code: str, message: str
    ) -> None:
        body = json.dumps(envelope(status, code, message, None, request_id)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
