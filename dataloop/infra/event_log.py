"""Dagster's Postgres event log storage with pool slots that cannot be claimed twice.

Why this exists: on Postgres, dagster-postgres 0.29 runs every event-log statement in
autocommit mode, so ``_claim_concurrency_slot``'s ``SELECT ... FOR UPDATE SKIP LOCKED`` gives up
its row lock as soon as the SELECT ends, and the following ``UPDATE ... WHERE id = ?`` does not
re-check that the slot is still free. Two run workers that claim a pool at the same moment can
pick the same free slot row and both be told CLAIMED (the second write overwrites the first), so
a pool of 2 ran 3 steps at once (issue #19). The pending-step assignment around it
(``has_unassigned_slots`` then ``add_pending_step``) is check-then-insert in the same way.

The fix holds one Postgres advisory lock around that last step, the claim of a slot row, so no
two processes on one instance run it at once; Dagster's own code inside is unchanged and
correct once serialised. The assignment may still hand out more assignments than slots under a
race; an assigned step that finds no free row is BLOCKED and polls again, so what can never
exceed the pool is the slots held, which is what the pool promises. Only assigned steps take
the lock (~35 ms here: two connections), blocked ones poll without it. This overrides a private
method of a public class: tests/test_postgres_storage.py's racing-claims test fails if an
upgrade of Dagster renames it. Configured in ``infra/dagster.yaml`` as the event log storage.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# One advisory lock key per instance database for every pool ("dataloop" as a 64-bit int).
POOL_LOCK_KEY = int.from_bytes(b"dataloop", "big") & 0x7FFF_FFFF_FFFF_FFFF


class PoolSafePostgresEventLogStorage(PostgresEventLogStorage):
    """``PostgresEventLogStorage`` whose slot claims hold ``POOL_LOCK_KEY``."""

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PoolSafePostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    @contextmanager
    def pool_lock(self) -> Iterator[None]:
        """Hold the instance-wide pool lock on a connection of its own (released on close too,
        so a crashed worker never leaves it held)."""
        with self.index_connection() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": POOL_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": POOL_LOCK_KEY})

    def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str):
        # The step that turns an assigned pending step into a held slot row: Dagster's
        # semaphore. Serialised, its select-then-update can no longer hand one row to two.
        with self.pool_lock():
            return super()._claim_concurrency_slot(concurrency_key, run_id, step_key)
