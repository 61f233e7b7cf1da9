"""Server-side admin UI sessions, so logout and key revocation end them for real."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, utcnow


class AdminSession(Base):
    __tablename__ = "admin_sessions"

    # SHA-256 of the random session token; the cookie carries the signed token itself.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    login_method: Mapped[str] = mapped_column(String(20))
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True, default=None
    )
    # A gateway client logged in with its token: it sees only its own tasks and endpoints.
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_clients.id", ondelete="CASCADE"), index=True, default=None
    )
    # A watch user logged in with email and password: it uses the watch pages, its own data.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
