"""Request dependencies shared by every router, defined once as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.runtime import Runtime

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies are ``async def`` even when they never await: FastAPI runs a plain ``def``
# dependency in a worker thread, a thread hop per request for nothing.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; it commits before the response is sent."""
    write = request.method not in _READ_METHODS
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session(write=write) as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
