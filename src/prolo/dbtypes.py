"""Column helpers shared by every domain's tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import utcnow

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def one_of(column: str, values: Iterable[str], *, name: str | None = None) -> CheckConstraint:
    """A CHECK constraint that ``column`` takes one of ``values`` (portable enums)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name or f"{column}_valid")


def id_column() -> Mapped[int]:
    """An integer surrogate primary key."""
    return mapped_column(Integer, primary_key=True)


def fk(
    target: str, *, nullable: bool = False, ondelete: str = "RESTRICT", index: bool = True
) -> Any:
    """A foreign key column; deleting what it points at is refused by default."""
    return mapped_column(ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


def created_column() -> Mapped[dt.datetime]:
    """When the row was written (UTC)."""
    return mapped_column(default=utcnow, nullable=False)
