"""Who is asking: the authenticated user as the rest of the code sees them."""

from __future__ import annotations

from dataclasses import dataclass

from prolo.security.audit import Actor

STAFF = frozenset({"admin", "clinician", "front_desk"})
CLINICAL = frozenset({"admin", "clinician"})


@dataclass(frozen=True)
class Principal:
    """An authenticated user and how they authenticated."""

    user_id: int
    role: str
    clinic_id: int
    display_name: str
    patient_id: int | None = None
    practitioner_id: int | None = None
    via: str = "session"  # "session" or "token"
    scopes: frozenset[str] = frozenset()
    csrf_token: str | None = None
    source_ip: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    def may_see(self, *, clinic_id: int, patient_id: int) -> bool:
        """Whether a record of ``patient_id`` at ``clinic_id`` is visible to this principal.

        A patient sees only their own records, staff only their own clinic's, and a
        researcher no identified record at all (de-identified exports only).
        """
        if self.role == "patient":
            return self.patient_id == patient_id
        if self.role in STAFF:
            return self.clinic_id == clinic_id
        return False

    @property
    def actor(self) -> Actor:
        return Actor(
            user_id=self.user_id,
            role=self.role,
            clinic_id=self.clinic_id,
            source_ip=self.source_ip,
        )
