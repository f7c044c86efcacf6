"""Clinics, rooms and practitioners."""

from __future__ import annotations

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import fk, id_column


class Clinic(Base):
    """A practice: the tenant every patient, room and appointment belongs to."""

    __tablename__ = "clinic"

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))  # IANA zone used for display
    phone: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(300))


class Room(Base):
    """A treatment room; an injection visit holds its room for the whole visit."""

    __tablename__ = "room"
    __table_args__ = (UniqueConstraint("clinic_id", "name"),)

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)


class Practitioner(Base):
    """A clinician who performs consultations and injections."""

    __tablename__ = "practitioner"

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    credentials: Mapped[str | None] = mapped_column(String(40))  # e.g. MD, DO, NP
    npi: Mapped[str | None] = mapped_column(String(10), unique=True)  # US National Provider Id
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def display_name(self) -> str:
        suffix = f", {self.credentials}" if self.credentials else ""
        return f"{self.given_name} {self.family_name}{suffix}"
