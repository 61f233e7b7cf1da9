"""API key management: ``/api/v1/keys`` (scope: admin) and ``/api/v1/auth/whoami``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from dispatch.deps import SessionDep
from dispatch.errors import ERROR_RESPONSES
from dispatch.security import api_keys
from dispatch.security.deps import AdminKey, AnyKey
from dispatch.security.schemas import KeyCreate, KeyCreated, KeyList, KeyOut, WhoAmI

router = APIRouter(tags=["keys"], responses=ERROR_RESPONSES)
_not_found: dict[int | str, dict[str, Any]] = {
    404: ERROR_RESPONSES[401] | {"description": "No such key"}
}


@router.post(
    "/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; the key is returned once",
)
async def create_key(body: KeyCreate, session: SessionDep, _: AdminKey) -> KeyCreated:
    record, plaintext = await api_keys.create_key(session, body.name, body.scopes, body.expiry())
    return KeyCreated.model_validate(
        {**KeyOut.model_validate(record).model_dump(), "key": plaintext}
    )


@router.get(
    "/keys", response_model=KeyList, summary="List API keys (hashes never leave the server)"
)
async def list_keys(session: SessionDep, _: AdminKey, include_revoked: bool = False) -> KeyList:
    records = await api_keys.list_keys(session, include_revoked)
    return KeyList(items=[KeyOut.model_validate(record) for record in records])


@router.get("/keys/{key_id}", response_model=KeyOut, responses=_not_found, summary="One API key")
async def get_key(key_id: int, session: SessionDep, _: AdminKey) -> KeyOut:
    return KeyOut.model_validate(await api_keys.get_key(session, key_id))


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_not_found,
    summary="Revoke an API key; it stops working at once",
)
async def revoke_key(key_id: int, session: SessionDep, _: AdminKey) -> Response:
    await api_keys.revoke_key(session, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/whoami", response_model=WhoAmI, summary="The principal behind the presented key")
async def whoami(principal: AnyKey) -> WhoAmI:
    return WhoAmI(
        kind=principal.kind,
        name=principal.name,
        scopes=sorted(principal.scopes),
        key_id=principal.key_id,
    )
