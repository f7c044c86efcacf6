"""Reminder emails: composed from plain values, sent over SMTP.

A message says only what a reminder needs (when, where, with whom, how to change it);
never a diagnosis, a treatment or an instrument's name, because email passes through
servers the clinic does not control. Its Message-ID comes from the job's idempotency
key, so a resend after a crash is recognisably the same message.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from zoneinfo import ZoneInfo

from prolo.notify.ical import CalendarEntry, appointment_invite

KIND_LABELS = {
    "consultation": "consultation",
    "injection": "treatment session",
    "follow_up": "follow-up visit",
}
IDEMPOTENCY_HEADER = "X-Prolo-Idempotency-Key"
# Lines up to RFC 5322's hard limit, so a Message-ID is never folded onto a second line
# (legal, but some mail tools then compare it with the leading space).
POLICY = email.policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class Mailbox:
    """Sender settings: the From address and its display name."""

    address: str
    name: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "prolo.invalid"


@dataclass(frozen=True)
class AppointmentReminder:
    """Everything an appointment reminder shows."""

    to: str
    given_name: str
    clinic_name: str
    clinic_phone: str | None
    clinic_address: str | None
    clinic_zone: str
    practitioner: str
    kind: str
    calendar: CalendarEntry


@dataclass(frozen=True)
class QuestionnaireReminder:
    """Everything a questionnaire-due reminder shows."""

    to: str
    given_name: str
    clinic_name: str
    clinic_zone: str
    count: int
    due_by: dt.datetime | None
    portal_url: str


def message_id_header(message_id: str, sender: Mailbox) -> str:
    """``<left@domain>`` (RFC 5322 3.6.4) for a stored Message-ID left part."""
    return f"<{message_id}@{sender.domain}>"


def _local(value: dt.datetime, zone: str) -> str:
    local = value.astimezone(ZoneInfo(zone))
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M} ({local.tzname()})"


def _headers(
    msg: EmailMessage,
    *,
    sender: Mailbox,
    to: str,
    subject: str,
    message_id: str,
    key: str,
    now: dt.datetime,
) -> None:
    msg["From"] = formataddr((sender.name, sender.address))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = message_id_header(message_id, sender)
    msg[IDEMPOTENCY_HEADER] = key
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please


def appointment_message(
    reminder: AppointmentReminder,
    *,
    sender: Mailbox,
    message_id: str,
    key: str,
    now: dt.datetime,
) -> EmailMessage:
    """The reminder email with the visit as an ``.ics`` attachment (text/calendar)."""
    when = _local(reminder.calendar.starts_at, reminder.clinic_zone)
    kind = KIND_LABELS.get(reminder.kind, "appointment")
    lines = [
        f"Hello {reminder.given_name},",
        "",
        f"This is a reminder of your {kind} at {reminder.clinic_name}:",
        "",
        f"  When:  {when}",
        f"  With:  {reminder.practitioner}",
    ]
    if reminder.clinic_address:
        lines.append(f"  Where: {reminder.clinic_address}")
    lines += ["", "The attached calendar file adds the visit to your calendar."]
    if reminder.clinic_phone:
        lines.append(f"To change or cancel it, please call {reminder.clinic_phone}.")
    else:
        lines.append("To change or cancel it, please contact the clinic.")
    lines += ["", reminder.clinic_name]
    msg = EmailMessage(policy=POLICY)
    local = reminder.calendar.starts_at.astimezone(ZoneInfo(reminder.clinic_zone))
    subject = f"Reminder: your appointment on {local:%a} {local.day} {local:%b} at {local:%H:%M}"
    _headers(
        msg, sender=sender, to=reminder.to, subject=subject, message_id=message_id, key=key, now=now
    )
    msg.set_content("\n".join(lines) + "\n")
    msg.add_attachment(
        appointment_invite(reminder.calendar, stamp=now),
        maintype="text",
        subtype="calendar",
        filename="appointment.ics",
        params={"method": "PUBLISH"},
    )
    return msg


def questionnaire_message(
    reminder: QuestionnaireReminder,
    *,
    sender: Mailbox,
    message_id: str,
    key: str,
    now: dt.datetime,
) -> EmailMessage:
    """The reminder that questionnaires are waiting in the portal."""
    what = "a short questionnaire" if reminder.count == 1 else f"{reminder.count} questionnaires"
    if reminder.due_by is not None:
        due = reminder.due_by.astimezone(ZoneInfo(reminder.clinic_zone))
        when = f"by {due:%A} {due.day} {due:%B %Y}"
    else:
        when = "when you can"
    lines = [
        f"Hello {reminder.given_name},",
        "",
        f"{reminder.clinic_name} asks you to fill in {what} {when}.",
        "Your answers show your clinician how you are doing.",
        "",
        f"Log in to fill them in: {reminder.portal_url}",
        "",
        reminder.clinic_name,
    ]
    msg = EmailMessage(policy=POLICY)
    _headers(
        msg,
        sender=sender,
        to=reminder.to,
        subject=f"{reminder.clinic_name}: please fill in your questionnaire",
        message_id=message_id,
        key=key,
        now=now,
    )
    msg.set_content("\n".join(lines) + "\n")
    return msg


class PermanentFailure(Exception):
    """The mail server refused the message for good (5xx): retrying will not help."""


def send(message: EmailMessage, *, host: str, port: int, timeout: float = 10.0) -> None:
    """Hand ``message`` to the SMTP server; PermanentFailure on a 5xx refusal.

    Any other error (refused connection, 4xx, timeout) propagates and means "try later".
    """
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            raise PermanentFailure(f"recipient refused ({codes[0]})") from None
        raise
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentFailure(f"message refused ({exc.smtp_code})") from None
        raise
