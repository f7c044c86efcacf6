"""Code systems and identifier systems the FHIR mapping uses.

Standard systems come from the FHIR R4 terminology pages
(https://hl7.org/fhir/R4/terminologies-systems.html). prolo's own systems live under
``https://prolo.example.org/fhir/``, the canonical base the instrument Questionnaires
already use; they name prolo concepts for which no standard code was found (the
knowledge-base condition entries, appointment kinds, course stop reasons), rather
than borrowing a standard code that does not mean the same thing.
"""

from __future__ import annotations

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
URI_IDENTIFIER = "urn:ietf:rfc:3986"  # an identifier that is itself a URI (urn:uuid:...)

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
AUDIT_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"

PROLO = "https://prolo.example.org/fhir"
PROLO_CONDITION = f"{PROLO}/CodeSystem/knowledge-condition"
PROLO_APPOINTMENT_KIND = f"{PROLO}/CodeSystem/appointment-kind"
PROLO_STOP_REASON = f"{PROLO}/CodeSystem/course-stop-reason"
PROLO_PROCEDURE = f"{PROLO}/CodeSystem/procedure"
PROLO_SCORE = f"{PROLO}/CodeSystem/instrument-score"
PROLO_AUDIT_EVENT = f"{PROLO}/CodeSystem/audit-event"
PROLO_USER = f"{PROLO}/sid/user"
PROLO_TIMEPOINT_EXT = f"{PROLO}/StructureDefinition/questionnaire-timepoint"
PROLO_CONDITION_EXT = f"{PROLO}/StructureDefinition/knowledge-condition"
PROLO_APPOINTMENT_EXT = f"{PROLO}/StructureDefinition/appointment"
PROLO_AMENDS_EXT = f"{PROLO}/StructureDefinition/amends"
QR_IDEMPOTENCY = f"{PROLO}/sid/questionnaire-response-key"

# Timing.repeat.periodUnit (and durationUnit), a required binding in R4:
# https://hl7.org/fhir/R4/valueset-units-of-time.html (UCUM codes)
UNITS_OF_TIME = ("s", "min", "h", "d", "wk", "mo", "a")

CONDITION_STATUSES = {
    # FHIR condition-clinical -> prolo clinical_status (and back, for the first three)
    "active": "active",
    "recurrence": "active",
    "relapse": "active",
    "inactive": "inactive",
    "remission": "inactive",
    "resolved": "resolved",
}


def mrn_system(clinic_id: int) -> str:
    """The identifier system of a clinic's medical record numbers (unique per clinic)."""
    return f"{PROLO}/sid/clinic/{clinic_id}/mrn"


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    """A Coding as a plain dict (display left out when unknown)."""
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str | None = None) -> dict[str, object]:
    """A CodeableConcept with one coding."""
    return {"coding": [coding(system, code, display)]}
