"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import Procedure, TreatmentCourse
from prolo.db import Base
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment
from prolo.security.models import ApiToken, AuditEvent, User, WebSession

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
