"""Admin UI pages for configuring the gateway: resources, endpoints, rules, clients, settings."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/ui/gateway", include_in_schema=False)
