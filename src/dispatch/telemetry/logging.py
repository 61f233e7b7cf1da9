"""structlog setup: JSON lines in production, readable lines in development.

Standard-library loggers (uvicorn, SQLAlchemy, Alembic) go through the same
formatter, so one stream carries every record with the bound request id.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "console"]

# Set by the request middleware for the duration of one request (a plain ContextVar is
# cheaper per request than structlog's bind/unbind, and every task sees its own value).
REQUEST_ID: ContextVar[str | None] = ContextVar("dispatch_request_id", default=None)


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: the current request's id on every record logged while it runs."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def resolve_format(configured: str, environment: str) -> LogFormat:
    if configured in ("json", "console"):
        return "json" if configured == "json" else "console"
    return "json" if environment == "production" else "console"


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Route structlog and stdlib logging through one handler on stderr."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Dispatch logs migrations itself (db.migrating / db.migrated); Alembic's lines are noise.
    logging.getLogger("alembic").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # Dispatch logs each request itself, with the request id; uvicorn's line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
