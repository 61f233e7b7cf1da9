"""The client-scoped OpenAPI document behind ``/documentation`` (seed 002's /openapi-user.json).

Built from the database on every request, so a new or changed endpoint shows at once
(seed 002 cached ``/openapi.json`` until a restart). An admin sees every active endpoint;
a client sees only the active endpoints it may call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.gateway.ingest import TOKEN_HEADERS
from dispatch.models import GatewayEndpoint, GatewayEndpointClient

SECURITY_SCHEME = "ApiToken"
_ACCEPTED = {
    "202": {
        "description": "Stored; delivered in the background (or held in development mode)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["queued", "held"]},
                        "task_id": {"type": "integer"},
                        "replayed": {"type": "boolean"},
                    },
                    "required": ["status", "task_id"],
                }
            }
        },
    },
    "401": {"description": "API token is missing"},
    "403": {"description": "Invalid API token for this endpoint"},
    "404": {"description": "Endpoint not found"},
    "413": {"description": "The body is too large"},
    "422": {"description": "A required parameter is missing"},
}


@dataclass(frozen=True, slots=True)
class EndpointDoc:
    path: str
    description: str | None
    required_params: tuple[str, ...]


async def endpoints_for(session: AsyncSession, client_id: int | None) -> list[EndpointDoc]:
    """Active endpoints, all of them (admin) or those the client may call."""
    query = select(GatewayEndpoint).where(GatewayEndpoint.is_active.is_(True))
    if client_id is not None:
        query = query.join(
            GatewayEndpointClient, GatewayEndpointClient.endpoint_id == GatewayEndpoint.id
        ).where(GatewayEndpointClient.client_id == client_id)
    rows = await session.scalars(query.order_by(GatewayEndpoint.path))
    return [EndpointDoc(e.path, e.description, tuple(e.required_params)) for e in rows]


def _operation(endpoint: EndpointDoc) -> dict[str, Any]:
    properties = {
        name: {"type": "string", "example": f"your_{name}_here"}
        for name in endpoint.required_params
    }
    return {
        "summary": f"Send to {endpoint.path}",
        "description": endpoint.description or "",
        "operationId": "send_" + endpoint.path.replace("/", "_").replace("-", "_"),
        "tags": ["endpoints"],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Repeat a request safely: the same key returns the same task",
                "schema": {"type": "string", "maxLength": 200},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": list(endpoint.required_params),
                        "additionalProperties": True,
                    }
                }
            },
        },
        "responses": _ACCEPTED,
        "security": [{SECURITY_SCHEME: []}],
    }


def build_document(endpoints: list[EndpointDoc], title: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 for these endpoints; an empty list gets seed 002's placeholder /api/noop."""
    paths: dict[str, Any] = {
        f"/api/{endpoint.path}": {"post": _operation(endpoint)} for endpoint in endpoints
    }
    if not paths:
        paths["/api/noop"] = {
            "get": {
                "summary": "No endpoints are available to you yet",
                "responses": {"404": {"description": "Not found"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{title} gateway",
            "version": version,
            "description": "Endpoints you may call. Send your token in X-API-Token (also accepted: "
            + ", ".join(TOKEN_HEADERS[1:])
            + ", or Authorization: Bearer).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Token"}
            }
        },
    }
