"""The demo clinic: synthetic patients plus one login per role."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner
from prolo.patients.models import Patient
from prolo.security import service as security
from prolo.synth import SynthConfig, generate

# Public on purpose: these accounts exist only in the embedded demo database.
DEMO_PASSWORD = "demo-prolo-2026"  # noqa: S105
DEMO_DOMAIN = "demo.prolo.example.org"


@dataclass(frozen=True)
class DemoAccount:
    email: str
    role: str
    display_name: str


def demo_exists(session: Session) -> bool:
    """True when the demo clinic was loaded already."""
    return (
        session.scalar(select(Clinic.id).where(Clinic.name == SynthConfig.clinic_name)) is not None
    )


def load_demo(session: Session, *, patients: int = 60, seed: int = 7) -> list[DemoAccount]:
    """Create the demo clinic and its accounts in the caller's transaction."""
    summary = generate(session, SynthConfig(patients=patients, seed=seed))
    from prolo.scheduling.service import give_default_hours

    give_default_hours(session=session, clinic_id=summary.clinic_id)  # the calendar's hours
    first_patient = session.scalars(
        select(Patient).where(Patient.clinic_id == summary.clinic_id).order_by(Patient.id).limit(1)
    ).one()
    practitioner = session.get_one(Practitioner, summary.practitioner_ids[0])
    accounts = [
        DemoAccount(f"admin@{DEMO_DOMAIN}", "admin", "Alex Admin"),
        DemoAccount(
            f"clinician@{DEMO_DOMAIN}",
            "clinician",
            f"Dr {practitioner.given_name} {practitioner.family_name}",
        ),
        DemoAccount(f"frontdesk@{DEMO_DOMAIN}", "front_desk", "Jordan Reyes"),
        DemoAccount(f"researcher@{DEMO_DOMAIN}", "researcher", "Riley Chen"),
        DemoAccount(
            f"patient@{DEMO_DOMAIN}",
            "patient",
            f"{first_patient.given_name} {first_patient.family_name}",
        ),
    ]
    for account in accounts:
        security.create_user(
            session=session,
            clinic_id=summary.clinic_id,
            email=account.email,
            password=DEMO_PASSWORD,
            role=account.role,
            display_name=account.display_name,
            patient_id=first_patient.id if account.role == "patient" else None,
            practitioner_id=summary.practitioner_ids[0] if account.role == "clinician" else None,
        )
    return accounts
