"""Gateway UI pages shared by admins and clients: dashboard, tasks, task detail, documentation."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
