"""The exception tree and the JSON error envelope.

Every error Dispatch returns has one shape::

    {"error": {"code": str, "message": str, "status": int, "details": ..., "request_id": str}}

Exceptions::

    AppError                 base; carries code, status, message, details and extra headers
      BadRequest             400 bad_request
      Unauthorized           401 unauthorized  (WWW-Authenticate set)
      Forbidden              403 forbidden
      NotFound               404 not_found
      MethodNotAllowed       405 method_not_allowed  (Allow set)
      Conflict               409 conflict
      PayloadTooLarge        413 payload_too_large
      ValidationFailed       422 validation_error
                             (422 out_of_range, invalid_character: a value the
                             database cannot store)
      RateLimited            429 rate_limited  (Retry-After set)
      ServiceUnavailable     503 unavailable

FastAPI's own ``HTTPException`` and ``RequestValidationError`` are rendered in the
same envelope; anything else becomes a 500 ``internal_error`` in
``dispatch.telemetry.middleware`` without leaking internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

HtmlErrorRenderer = Callable[[Request, int, str, str], Awaitable[Response | None]]


class AppError(Exception):
    """Base of every error Dispatch raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = dict(headers or {})


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "A valid API key is required", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="dispatch"')


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class MethodNotAllowed(AppError):
    status, code = 405, "method_not_allowed"


class Conflict(AppError):
    status, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class ValidationFailed(AppError):
    status, code = 422, "validation_error"


class RateLimited(AppError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(AppError):
    status, code = 503, "unavailable"


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int
    details: Any = None
    request_id: str | None = None


class ErrorEnvelope(BaseModel):
    """The shape of every error response."""

    error: ErrorBody


_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def code_for_status(status: int) -> str:
    return _CODES_BY_STATUS.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))


def request_id_of(scope_state: Mapping[str, Any] | None) -> str | None:
    value = (scope_state or {}).get("request_id")
    return value if isinstance(value, str) else None


def envelope(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The error envelope as a plain dict."""
    body = {"code": code, "message": message, "status": status, "details": details}
    body["request_id"] = request_id
    return {"error": body}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    request_id = request_id_of(request.scope.get("state"))
    content = envelope(status, code, message, jsonable_encoder(details), request_id)
    return JSONResponse(content, status_code=status, headers=dict(headers or {}))


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        details.append(
            {
                "field": ".".join(location[1:]) if len(location) > 1 else ".".join(location),
                "location": location[0] if location else None,
                "message": error.get("msg"),
                "type": error.get("type"),
            }
        )
    return details


async def _maybe_html(request: Request, status: int, code: str, message: str) -> Response | None:
    renderer: HtmlErrorRenderer | None = getattr(request.app.state, "html_error_renderer", None)
    if renderer is None:
        return None
    return await renderer(request, status, code, message)


async def _handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    html = await _maybe_html(request, exc.status, exc.code, exc.message)
    if html is not None:
        html.headers.update(exc.headers)
        return html
    return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = code_for_status(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route matches {request.method} {request.url.path}"
    html = await _maybe_html(request, exc.status_code, code, message)
    if html is not None:
        return html
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


async def _handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    first = details[0] if details else {}
    message = "Request validation failed"
    if first:
        message = (
            f"{message}: {first.get('field') or first.get('location')}: {first.get('message')}"
        )
    return error_response(request, 422, "validation_error", message, details)


TOO_LARGE = "A number in the request is too large for the database to store"
NUL_CHARACTER = "A text in the request holds a NUL character, which the database cannot store"
# PostgreSQL's SQLSTATEs for values it cannot store: a number out of its column's range, and a
# NUL character in text or in JSON.
DATA_EXCEPTION = "22000"
_UNSTORABLE = {
    "22003": ("out_of_range", TOO_LARGE),
    "22021": ("invalid_character", NUL_CHARACTER),
    "22P05": ("invalid_character", NUL_CHARACTER),
}


def unstorable_value(exc: BaseException) -> tuple[str, str] | None:
    """The code and message for a request value the database refused, or None when ``exc``
    is some other failure. SQLite's driver raises OverflowError for an integer beyond 64 bits,
    and orjson a TypeError for one inside a JSON column; asyncpg refuses one beyond its
    column's range before sending it, and PostgreSQL refuses the rest with a SQLSTATE."""
    if isinstance(exc, OverflowError):
        return "out_of_range", TOO_LARGE
    if isinstance(exc, StatementError) and "64-bit range" in str(exc.orig):
        return "out_of_range", TOO_LARGE  # orjson, encoding a JSON column
    cause = exc.orig.__cause__ if isinstance(exc, DBAPIError) and exc.orig else None
    sqlstate = str(getattr(cause, "sqlstate", ""))
    if sqlstate == DATA_EXCEPTION and "out of int" in str(cause):  # refused by asyncpg
        return "out_of_range", TOO_LARGE
    return _UNSTORABLE.get(sqlstate)


async def _handle_unstorable(request: Request, exc: Exception) -> Response:
    refused = unstorable_value(exc)
    if refused is None:
        raise exc  # a real database failure: the middleware logs it and answers 500
    code, message = refused
    return await _handle_app_error(request, ValidationFailed(message, code=code))


def install_error_handlers(app: FastAPI) -> None:
    """Render every error in the envelope (or an HTML page for the admin UI)."""
    app.add_exception_handler(AppError, _handle_app_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    # Ids and counts are checked for their type, not their size, and text for its length, not
    # for NUL: the database bounds them, and a value it cannot store is the caller's mistake.
    app.add_exception_handler(OverflowError, _handle_unstorable)
    app.add_exception_handler(StatementError, _handle_unstorable)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        401: "Missing, unknown, expired or revoked API key",
        403: "The key lacks the scope this route needs",
        422: "The request did not validate",
        429: "Rate limit exceeded; see Retry-After",
    }.items()
}
"""OpenAPI ``responses`` for routes behind API-key auth."""
