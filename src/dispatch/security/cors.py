"""CORS, with refused preflights answered in the error envelope like every other error."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from dispatch.errors import envelope, request_id_of


class EnvelopeCORSMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await super().__call__(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "origin" not in headers or "access-control-request-method" not in headers:
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)
        if response.status_code >= 400:
            message = bytes(response.body).decode() or "CORS preflight refused"
            kept = {k: v for k, v in response.headers.items() if k.lower().startswith("vary")}
            body = envelope(400, "cors_refused", message, None, request_id_of(scope.get("state")))
            response = JSONResponse(body, status_code=400, headers=kept)
        await response(scope, receive, send)
