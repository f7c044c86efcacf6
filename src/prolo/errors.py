"""One error hierarchy with stable machine codes; app code raises, one place renders.

::

    AppError (400)
     ├── ValidationFailed (422)  a field is wrong: names it
     ├── Unauthenticated (401)   no or bad credentials
     ├── Forbidden (403)         known user, not allowed (used where hiding existence is not needed)
     ├── NotFound (404)          absent, or present but not yours (never reveal which)
     ├── Conflict (409)          clashes with existing state: names what it clashes with
     ├── Gone (410)              an expired or used link
     └── TooManyRequests (429)   throttled

The API renders these as RFC 9457 problem+json (``prolo.app``), pages as a message
next to the field, and ``/fhir`` as an OperationOutcome.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """An error a user can act on. ``detail`` is shown to them: no health data in it."""

    code: ClassVar[str] = "bad_request"
    http_status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors or ([{"field": field, "message": detail}] if field else [])
        self.extra = extra or {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": f"https://prolo.dev/problems/{self.code}",
            "title": self.title,
            "status": self.http_status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class ValidationFailed(AppError):
    code = "validation_failed"
    http_status = 422
    title = "Invalid input"


class Unauthenticated(AppError):
    code = "unauthenticated"
    http_status = 401
    title = "Authentication required"


class Forbidden(AppError):
    code = "forbidden"
    http_status = 403
    title = "Not allowed"


class NotFound(AppError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class Conflict(AppError):
    code = "conflict"
    http_status = 409
    title = "Conflict"


class Gone(AppError):
    code = "gone"
    http_status = 410
    title = "Gone"


class TooManyRequests(AppError):
    code = "too_many_requests"
    http_status = 429
    title = "Too many requests"


class AccessDenied(NotFound):
    """Absent or not the caller's: rendered as 404, and audited as a failed access.

    Raised by ``access_*`` functions; the error handler records the attempt in its
    own transaction, because the request's transaction is rolled back.
    """

    def __init__(self, detail: str, *, entity_type: str, entity_id: object) -> None:
        super().__init__(detail)
        self.entity_type = entity_type
        self.entity_id = entity_id


def constraint_kind(exc: BaseException) -> str:
    """The kind of database rule an integrity error broke ("unique constraint", ...).

    Only the kind: the driver's message carries the offending values (``Key
    (email)=(...)``), which may be health data and never reach a user or a log.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig).splitlines()[0] if orig is not None else ""
    for marker in ("UNIQUE", "unique", "CHECK", "check", "FOREIGN KEY", "foreign key"):
        if marker in text:
            return f"{marker.lower()} constraint"
    return "constraint"


def database_refusal(exc: BaseException, what: str = "this change") -> Conflict:
    """A Conflict for a write the database refused: usually a concurrent request got
    there first (two consents on file, a booked slot), or the data changed meanwhile."""
    return Conflict(
        f"the database refused {what}: it breaks a {constraint_kind(exc)}, usually because "
        "it clashes with data already stored (perhaps just now); reload and try again"
    )
