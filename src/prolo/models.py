"""Every table, imported in one place so the metadata (and Alembic) sees them all.

Each domain's ``models.py`` is discovered, so a new domain's tables register
themselves; the names below are re-exported for convenience.
"""

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import Procedure, TreatmentCourse
from prolo.db import Base
from prolo.discovery import domain_modules
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment
from prolo.security.models import ApiToken, AuditEvent, User, WebSession

MODEL_MODULES = [m for m in domain_modules("models") if m.__name__.endswith(".models")]

__all__ = [
    "Allergy",
    "ApiToken",
    "Appointment",
    "AuditEvent",
    "Base",
    "Clinic",
    "Diagnosis",
    "Medication",
    "Patient",
    "Practitioner",
    "Procedure",
    "QuestionnaireResponse",
    "Room",
    "Score",
    "TreatmentCourse",
    "User",
    "WebSession",
]
