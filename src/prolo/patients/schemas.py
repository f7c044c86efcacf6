"""What crosses the API for the patient chart."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from prolo.codes import icd10cm_problem, normalize_icd10cm

Sex = Literal["female", "male", "other", "unknown"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientIn(_In):
    """Demographics for registering or editing a patient."""

    mrn: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9\-]+$")
    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    birth_date: dt.date
    sex: Sex
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=40, pattern=r"^[0-9 +().\-]{5,40}$")
    address_line: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth_date(cls, value: dt.date) -> dt.date:
        today = dt.datetime.now(dt.UTC).date()
        if value > today:
            raise ValueError("must not be in the future")
        if value.year < today.year - 125:
            raise ValueError("must be within the last 125 years")
        return value

    @field_validator("email", "phone", "address_line", "city", "postal_code", "mrn", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mrn: str
    given_name: str
    family_name: str
    birth_date: dt.date
    sex: Sex
    email: str | None
    phone: str | None
    address_line: str | None
    city: str | None
    postal_code: str | None


class DiagnosisIn(_In):
    """A coded diagnosis. ICD-10-CM codes must be billable codes."""

    code_system: Literal["icd10cm", "snomed"] = "icd10cm"
    code: str = Field(min_length=1, max_length=20)
    display: str | None = Field(default=None, max_length=300)
    body_site: str | None = Field(default=None, max_length=100)
    onset_date: dt.date | None = None
    clinical_status: Literal["active", "resolved", "inactive"] = "active"

    @model_validator(mode="after")
    def _valid_code(self) -> DiagnosisIn:
        if self.code_system == "icd10cm":
            problem = icd10cm_problem(self.code)
            if problem:
                raise ValueError(problem)
            self.code = normalize_icd10cm(self.code)
        elif not self.code.isdigit() or not 6 <= len(self.code) <= 18:
            raise ValueError("a SNOMED CT concept id is 6 to 18 digits")
        if self.onset_date and self.onset_date > dt.datetime.now(dt.UTC).date():
            raise ValueError("onset_date must not be in the future")
        return self


class DiagnosisOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code_system: str
    code: str
    display: str
    body_site: str | None
    onset_date: dt.date | None
    clinical_status: str
    condition_id: str | None


class AllergyIn(_In):
    """A current allergy; ``verification_status`` None when how certain it is was not said."""

    substance: str = Field(min_length=1, max_length=200)
    reaction: str | None = Field(default=None, max_length=200)
    criticality: Literal["low", "high", "unable-to-assess"] = "unable-to-assess"
    verification_status: Literal["confirmed", "unconfirmed"] | None = None


class AllergyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    substance: str
    reaction: str | None
    criticality: str
    verification_status: str | None


class MedicationIn(_In):
    name: str = Field(min_length=1, max_length=200)
    dose: str | None = Field(default=None, max_length=100)
    rxnorm: str | None = Field(default=None, max_length=20, pattern=r"^[0-9]+$")
    status: Literal["active", "stopped", "on-hold"] = "active"


class MedicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    dose: str | None
    rxnorm: str | None
    status: str


class ChartOut(PatientOut):
    diagnoses: list[DiagnosisOut]
    allergies: list[AllergyOut]
    medications: list[MedicationOut]


class PatientPage(BaseModel):
    items: list[PatientOut]
    total: int
    limit: int
    offset: int
