"""One pure-ASGI middleware for request ids, body limits, access logs, metrics and 500s.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request cost to a few
microseconds; it sits inside Starlette's error middleware, so an unexpected
exception reaches it first and becomes an enveloped 500 carrying the request id.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException
from fastapi.routing import iter_route_contexts
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.errors import envelope
from dispatch.telemetry.metrics import Metrics

log = structlog.get_logger("dispatch.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def route_templates(app: FastAPI) -> dict[int, str]:
    """Full path templates (router prefixes included) of every route, by route identity."""
    templates: dict[int, str] = {}
    for context in iter_route_contexts(app.routes):
        if not context.path_format:
            continue
        route = context.original_route
        templates[id(route)] = context.path_format
        # Plain Starlette routes and mounts are found by their endpoint instead.
        for handler in (getattr(route, "endpoint", None), getattr(route, "app", None)):
            if handler is not None:
                templates.setdefault(id(handler), context.path_format)
    return templates


def route_template(scope: Scope, templates: dict[int, str]) -> str:
    """The matched route's template, so metrics keep one series per route, not per id."""
    route = scope.get("route") or scope.get("endpoint")
    if route is None:
        return UNMATCHED_ROUTE
    template = templates.get(id(route), getattr(route, "path", None))
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
        templates: dict[int, str],
        usage_prefix: str,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self.usage_prefix = usage_prefix
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = _header(scope, b"x-request-id")
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            if self._declared_too_large(scope):
                await self._send_error(
                    send_with_id,
                    request_id,
                    413,
                    "payload_too_large",
                    f"Request body exceeds {self.max_body_bytes} bytes",
                )
            else:
                await self.app(scope, self._limited(receive), send_with_id)
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
            elapsed = time.perf_counter() - started
            route = route_template(scope, self.templates)
            self.metrics.observe_request(scope["method"], route, response["status"], elapsed)
            level = "debug" if scope["path"] in _QUIET_PATHS else "info"
            log.log(
                10 if level == "debug" else 20,
                "http.request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=response["status"],
                duration_ms=round(elapsed * 1000, 2),
            )
            if scope["path"].startswith(self.usage_prefix):
                _emit_usage(scope, route, response["status"], elapsed)
            structlog.contextvars.unbind_contextvars("request_id")

    def _declared_too_large(self, scope: Scope) -> bool:
        length = _header(scope, b"content-length")
        return length is not None and length.isdigit() and int(length) > self.max_body_bytes

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
