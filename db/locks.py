"""The account lock: what every writer of one account's orders and money queues on.

The app, the Telegram bot and the worker each write orders in their own transactions. Whoever
places, changes or cancels an account's orders, or reads its open orders to stop them (a
panic or kill switch), takes this lock first, so a decision is made on what the write then
finds, and a reader never misses an order that another process is still recording.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from db.models import AccountRow, PaperOrderRow

# Built once: every order takes the lock.
_LOCK_ACCOUNTS = (select(AccountRow.id).where(AccountRow.id.in_(bindparam("ids", expanding=True)))
                  .order_by(AccountRow.id).with_for_update(key_share=True))
_SQLITE_WRITE_LOCK = update(PaperOrderRow).where(PaperOrderRow.id == -1).values(id=-1)


def lock_accounts(session: Session, account_ids: Iterable[int] = ()) -> None:
    """Take the write lock of ``account_ids`` in ``session``'s transaction, until it ends.

    PostgreSQL locks the named account rows (``SELECT ... FOR NO KEY UPDATE``, in id order):
    placements, changes and ledger entries of one account queue up, while the exchange step,
    whose new fills only take a key-share lock on the account, never waits for them (no
    deadlock with an order the step holds). SQLite takes its database write lock now, with a
    no-op write, instead of failing to upgrade a read transaction later.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(_SQLITE_WRITE_LOCK)
        return
    ids = sorted(set(account_ids))
    if ids:
        session.connection().execute(_LOCK_ACCOUNTS, {"ids": ids})
