"""Users: people with watch rules, notifications and personal API keys (seed 003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, utcnow


class User(Base):
    """A person with watch rules: created by an admin, by self-registration or from a JWT."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)
    display_name: Mapped[str | None] = mapped_column(String(120), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The identity provider's subject, for users provisioned from a bearer JWT.
    external_sub: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Sessions and tokens issued before this moment are refused (logout everywhere).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(default=None)


class DeletedSubject(Base):
    """The identity-provider subject of a hard-deleted user: its tokens never provision again.

    Seed 003 re-created a deleted user on the next request with a still-valid JWT.
    """

    __tablename__ = "deleted_subjects"

    external_sub: Mapped[str] = mapped_column(String(255), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)
