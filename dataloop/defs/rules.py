"""Rule files in the control plane: a broken file fails the runs of the assets that use it,
with its file:line message as the run's failure (no traceback), and nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

import dagster as dg

from dataloop.rules import RulesError, Snapshot

T = TypeVar("T")


@contextlib.contextmanager
def rules_failures() -> Iterator[None]:
    """A ``RulesError`` raised inside becomes a ``dg.Failure`` that shows its message."""
    try:
        yield
    except RulesError as err:
        raise dg.Failure(
            description=f"invalid rules:\n{err}",
            metadata={"rules_error": dg.MetadataValue.text(str(err))},
            allow_retries=False,
        ) from None


def rules_or_fail(rules: Snapshot[T]) -> T:
    """The snapshot's rules, or the run fails with their error."""
    with rules_failures():
        return rules.get()
