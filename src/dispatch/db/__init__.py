"""Database access: engines, session scopes, the declarative base and migrations."""

from dispatch.db.base import Base, utcnow
from dispatch.db.engine import Database

__all__ = ["Base", "Database", "utcnow"]
