"""The patient chart's tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prolo.db import Base
from prolo.dbtypes import created_column, fk, id_column, one_of

# FHIR AdministrativeGender: http://hl7.org/fhir/R4/valueset-administrative-gender.html
SEXES = ("female", "male", "other", "unknown")
CODE_SYSTEMS = ("icd10cm", "snomed")
CLINICAL_STATUSES = ("active", "resolved", "inactive")
ALLERGY_CRITICALITIES = ("low", "high", "unable-to-assess")
# How certain an allergy is, as FHIR's allergyintolerance-verification codes
# (https://hl7.org/fhir/R4/valueset-allergyintolerance-verification.html); NULL when not
# recorded. Refuted and entered-in-error allergies are not kept: the chart lists current ones.
ALLERGY_VERIFICATIONS = ("confirmed", "unconfirmed")
MEDICATION_STATUSES = ("active", "stopped", "on-hold")


class Patient(Base):
    """A person treated at a clinic. The MRN is unique within the clinic."""

    __tablename__ = "patient"
    __table_args__ = (
        UniqueConstraint("clinic_id", "mrn"),
        one_of("sex", SEXES),
        Index("ix_patient_clinic_family_given", "clinic_id", "family_name", "given_name"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    mrn: Mapped[str] = mapped_column(String(40))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    address_line: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = created_column()
    updated_at: Mapped[dt.datetime] = created_column()

    diagnoses: Mapped[list[Diagnosis]] = relationship(
        back_populates="patient", order_by="Diagnosis.id", cascade="all, delete-orphan"
    )
    allergies: Mapped[list[Allergy]] = relationship(
        back_populates="patient", order_by="Allergy.id", cascade="all, delete-orphan"
    )
    medications: Mapped[list[Medication]] = relationship(
        back_populates="patient", order_by="Medication.id", cascade="all, delete-orphan"
    )

    @property
    def display_name(self) -> str:
        return f"{self.family_name}, {self.given_name}"


class Diagnosis(Base):
    """A coded problem: ICD-10-CM or SNOMED CT, with body site and onset."""

    __tablename__ = "diagnosis"
    __table_args__ = (
        one_of("code_system", CODE_SYSTEMS),
        one_of("clinical_status", CLINICAL_STATUSES),
    )

    id: Mapped[int] = id_column()
    patient_id: Mapped[int] = fk("patient.id", ondelete="CASCADE")
    code_system: Mapped[str] = mapped_column(String(10))
    code: Mapped[str] = mapped_column(String(20))
    display: Mapped[str] = mapped_column(String(300))
    body_site: Mapped[str | None] = mapped_column(String(100))
    onset_date: Mapped[dt.date | None] = mapped_column(Date)
    clinical_status: Mapped[str] = mapped_column(String(12), default="active")
    condition_id: Mapped[str | None] = mapped_column(String(60))  # knowledge-base entry
    recorded_at: Mapped[dt.datetime] = created_column()

    patient: Mapped[Patient] = relationship(back_populates="diagnoses")


class Allergy(Base):
    """A current allergy or intolerance; injectate components matter for screening, which
    acts on every listed allergy, confirmed or not."""

    __tablename__ = "allergy"
    __table_args__ = (
        one_of("criticality", ALLERGY_CRITICALITIES),
        one_of("verification_status", ALLERGY_VERIFICATIONS),
    )

    id: Mapped[int] = id_column()
    patient_id: Mapped[int] = fk("patient.id", ondelete="CASCADE")
    substance: Mapped[str] = mapped_column(String(200))
    reaction: Mapped[str | None] = mapped_column(String(200))
    criticality: Mapped[str] = mapped_column(String(20), default="unable-to-assess")
    verification_status: Mapped[str | None] = mapped_column(String(12))  # None: not recorded
    recorded_at: Mapped[dt.datetime] = created_column()

    patient: Mapped[Patient] = relationship(back_populates="allergies")


class Medication(Base):
    """A medication the patient takes (MedicationStatement in FHIR terms)."""

    __tablename__ = "medication"
    __table_args__ = (one_of("status", MEDICATION_STATUSES),)

    id: Mapped[int] = id_column()
    patient_id: Mapped[int] = fk("patient.id", ondelete="CASCADE")
    name: Mapped[str] = mapped_column(String(200))
    rxnorm: Mapped[str | None] = mapped_column(String(20))
    dose: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="active")
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = created_column()

    patient: Mapped[Patient] = relationship(back_populates="medications")
