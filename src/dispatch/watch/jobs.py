"""The watch domain's background work, registered with the queue's workers."""

from __future__ import annotations

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.queue.registry import Registry
from dispatch.watch import delivery
from dispatch.watch.evaluate import Evaluator


def register(registry: Registry, database: Database, settings: Settings) -> None:
    """Every worker follows the catalogue's change feed and sends what is due (several at
    once is safe: the feed's cursor and the notifications are claimed, not shared)."""
    registry.loop("watch.changes", Evaluator(database, settings).run)
    registry.loop("watch.deliveries", lambda: delivery.run(database, settings))
