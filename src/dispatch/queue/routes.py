"""``/api/v1/jobs`` (list, inspect, retry, cancel) and ``/api/v1/workers``."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from dispatch.deps import SessionDep
from dispatch.errors import ERROR_RESPONSES, BadRequest
from dispatch.queue import service, workers
from dispatch.queue.schemas import (
    AttemptOut,
    JobDetail,
    JobOut,
    JobPage,
    JobState,
    WorkerList,
    WorkerOut,
)
from dispatch.security.deps import ReadKey, WriteKey

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)


def _encode_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(f"job:{job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "job":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API handed out", code="invalid_cursor") from None


async def _detail(session: SessionDep, job_id: int) -> JobDetail:
    job = await service.get_job(session, job_id)
    attempts = [AttemptOut.model_validate(a) for a in await service.attempts_of(session, job_id)]
    return JobDetail.model_validate(
        {**JobOut.model_validate(job).model_dump(), "attempts": attempts}
    )


@router.get("/jobs", response_model=JobPage, summary="Jobs, newest first (scope: read)")
async def list_jobs(
    session: SessionDep,
    _: ReadKey,
    state: Annotated[list[JobState] | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    queue: Annotated[list[str] | None, Query()] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    filters = service.JobFilter(
        states=state or (),
        kinds=kind or (),
        queues=queue or (),
        created_from=created_from,
        created_to=created_to,
    )
    before = _decode_cursor(cursor) if cursor else None
    jobs, next_before = await service.list_jobs(session, filters, before_id=before, limit=limit)
    return JobPage(
        items=[JobOut.model_validate(job) for job in jobs],
        next_cursor=_encode_cursor(next_before) if next_before is not None else None,
    )


@router.get("/jobs/{job_id}", response_model=JobDetail, summary="One job with its attempts")
async def get_job(job_id: int, session: SessionDep, _: ReadKey) -> JobDetail:
    return await _detail(session, job_id)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobDetail,
    summary="Send a failed or cancelled job back to the queue (scope: write)",
)
async def retry_job(job_id: int, session: SessionDep, _: WriteKey) -> JobDetail:
    await service.retry_now(session, job_id)
    await session.flush()
    return await _detail(session, job_id)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobDetail,
    summary="Cancel a waiting job, or ask a running one to stop (scope: write)",
)
async def cancel_job(job_id: int, session: SessionDep, _: WriteKey) -> JobDetail:
    await service.cancel(session, job_id)
    await session.flush()
    return await _detail(session, job_id)


@router.get(
    "/workers",
    response_model=WorkerList,
    tags=["workers"],
    summary="Queue workers that are alive, with the jobs each is running (scope: read)",
)
async def list_workers(session: SessionDep, _: ReadKey) -> WorkerList:
    records = await workers.list_alive(session)
    return WorkerList(items=[WorkerOut.model_validate(record) for record in records])
