"""Email notifications through a real SMTP server (aiosmtpd): content, digests, quiet hours,
retries and the missing-SMTP case."""

from __future__ import annotations

from datetime import timedelta
from email.message import Message

import httpx
from sqlalchemy import select

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.demo.mail import Mailbox
from dispatch.demo.serving import free_port
from dispatch.models import WatchNotification
from dispatch.watch import delivery
from dispatch.watch.evaluate import Evaluator
from tests.watch.conftest import ADMIN, V1, WatchUser
from tests.watch.test_evaluate import database, evaluator, product, rule, write

__all__ = ["database", "evaluator"]  # fixtures shared with test_evaluate


async def use_smtp(http: httpx.AsyncClient, port: int) -> None:
    settings = {
        "smtp_server": "127.0.0.1",
        "smtp_port": port,
        "smtp_encryption": "none",
        "email_from": "alerts@dispatch.test",
    }
    response = await http.put(f"{V1}/gateway/settings", json=settings, headers=ADMIN)
    assert response.status_code == 200, response.text


async def emails(database: Database) -> list[WatchNotification]:
    async with database.session(write=False) as session:
        query = select(WatchNotification).where(WatchNotification.channel == "email")
        return list((await session.scalars(query.order_by(WatchNotification.id))).all())


def body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def test_one_event_is_one_mail_that_says_what_happened(
    http: httpx.AsyncClient,
    alice: WatchUser,
    database: Database,
    evaluator: Evaluator,
    smtp: tuple[Mailbox, int],
) -> None:
    box, port = smtp
    await use_smtp(http, port)
    await http.patch(f"{V1}/me", json={"display_name": "Alice"}, headers=alice.headers)
    await rule(http, alice, keywords=["dunk"], max_price=150)
    await write(database, product("a", "Nike Dunk Low Panda", 12_000))
    await evaluator.run_once()
    assert await delivery.deliver_due(database, evaluator.settings) == 1
    (mail,) = box.messages
    assert mail["To"] == alice.email
    assert mail["From"] == "alerts@dispatch.test"
    assert mail["Subject"] == "[r] New match: Nike Dunk Low Panda, 120.00 USD"
    text = body(mail)
    assert "Hello Alice," in text
    assert "https://example.com/a" in text
    assert 'keyword "dunk"' in text
    assert "price <= 150.00 USD" in text
    assert "notification id" not in text.lower()
    (row,) = await emails(database)
    assert row.status == "sent"
    assert row.delivered_at is not None
    # A price drop names both prices and the change.
    await write(database, product("a", "Nike Dunk Low Panda", 9_900))
    await evaluator.run_once()
    assert await delivery.deliver_due(database, evaluator.settings) == 1
    assert box.messages[1]["Subject"].strip() == (
        "[r] Price drop: Nike Dunk Low Panda, 120.00 USD -> 99.00 USD (-17.50%)"
    )


async def test_an_hourly_digest_batches_into_one_mail(
    http: httpx.AsyncClient,
    alice: WatchUser,
    database: Database,
    evaluator: Evaluator,
    smtp: tuple[Mailbox, int],
) -> None:
    box, port = smtp
    await use_smtp(http, port)
    await http.patch(
        f"{V1}/me", json={"preferences": {"delivery_frequency": "hourly"}}, headers=alice.headers
    )
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"), product("b", "Dunk High"))
    await evaluator.run_once()
    await write(database, product("c", "SB Dunk"))
    await evaluator.run_once()
    assert await delivery.deliver_due(database, evaluator.settings) == 0  # not before the hour
    pending = await emails(database)
    assert len(pending) == 3
    assert len({row.due_at for row in pending}) == 1
    due = pending[0].due_at
    assert due is not None
    assert due.minute == 0
    assert due > utcnow()
    assert await delivery.deliver_due(database, evaluator.settings, due) == 3
    (digest,) = box.messages
    assert digest["Subject"] == "3 watch alerts from 1 rule(s)"
    text = body(digest)
    assert all(title in text for title in ("Dunk Low", "Dunk High", "SB Dunk"))


async def test_quiet_hours_hold_mail_until_they_end(
    http: httpx.AsyncClient,
    alice: WatchUser,
    database: Database,
    evaluator: Evaluator,
    smtp: tuple[Mailbox, int],
) -> None:
    _, port = smtp
    await use_smtp(http, port)
    hour = utcnow().hour
    quiet = {"quiet_hours_start": hour, "quiet_hours_end": (hour + 2) % 24}
    await http.patch(f"{V1}/me", json={"preferences": quiet}, headers=alice.headers)
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"))
    await evaluator.run_once()
    (row,) = await emails(database)
    assert row.due_at is not None
    assert row.due_at.hour == (hour + 2) % 24
    assert row.due_at.minute == 0
    assert await delivery.deliver_due(database, evaluator.settings) == 0
    # The feed is not held back.
    count = await http.get(f"{V1}/notifications/unread-count", headers=alice.headers)
    assert count.json() == {"unread_count": 1}


async def test_a_failing_server_is_retried_with_backoff_then_given_up(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await use_smtp(http, free_port())  # nothing listens there
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"))
    await evaluator.run_once()
    now = utcnow()
    for attempt in range(1, delivery.MAX_ATTEMPTS + 1):
        assert await delivery.deliver_due(database, evaluator.settings, now) == 0
        (row,) = await emails(database)
        assert row.attempts == attempt
        if attempt < delivery.MAX_ATTEMPTS:
            assert row.status == "pending"
            assert row.error
            assert row.due_at is not None
            wait = row.due_at - now
            assert wait == timedelta(seconds=delivery.BACKOFF_SECONDS * 2 ** (attempt - 1))
            now = row.due_at
    assert row.status == "failed"
    assert row.failed_at is not None


async def test_without_smtp_mail_is_skipped_not_marked_sent(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"))
    await evaluator.run_once()
    assert await delivery.deliver_due(database, evaluator.settings) == 0
    (row,) = await emails(database)
    assert row.status == "skipped"
    assert "SMTP is not configured" in (row.error or "")


async def test_users_who_turned_email_off_get_none(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await http.patch(
        f"{V1}/me", json={"preferences": {"notifications_email": False}}, headers=alice.headers
    )
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"))
    await evaluator.run_once()
    assert await emails(database) == []
