"""The audit chain's entry format (pure: no database, no framework).

Version 2, written since migration ``c4e8a1f2b6d3``: **the hashed bytes are the record.**
Each entry stores one canonical text, ``entry``, holding every audited field as compact
JSON (UTF-8, no spaces, keys sorted, every key present, a missing value ``null``), and
its digest, SHA-256 over the previous entry's digest (32 raw bytes; 32 zero bytes
before a lane's first entry) followed by the UTF-8 bytes of ``entry``. The columns
readers use (``recorded_at``, ``user_id`` ...) are generated from ``entry`` by the
database, so they cannot be edited apart from it. Verifying an entry is one SHA-256
over two byte strings the database hands back as they are stored.

Keys: ``action`` (FHIR AuditEvent action), ``at`` (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``,
always six fraction digits), ``clinic``, ``detail``, ``entity`` (entity id as text),
``entity_type``, ``event``, ``ip``, ``outcome``, ``patient``, ``role``, ``user`` and
``v`` (2).

Version 1 entries (written before that migration) were converted into the same form
with ``"v": 1`` and their original ``prev`` (the previous entry's hex digest) kept, but
their digest is still the version 1 hash: SHA-256 over the unit-separated text of the
previous hex digest, the id, the time and the fields (:func:`v1_digest`). They verify
with that preimage, rebuilt from the parsed ``entry``, and their ``entry`` must be
exactly the canonical encoding of what it holds, so no byte of it can change unseen.
The first version 2 entry of a lane chains on from its last version 1 digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

GENESIS = bytes(32)  # the "previous digest" of a lane's first entry
SEPARATOR = "\x1f"  # version 1: the fields' separator in the hash input
VERSION = 2

# Audited fields in version 1's hash order, as (entry key, column) pairs.
FIELDS = (
    ("user", "user_id"),
    ("role", "user_role"),
    ("clinic", "clinic_id"),
    ("action", "action"),
    ("event", "event"),
    ("entity_type", "entity_type"),
    ("entity", "entity_id"),
    ("patient", "patient_id"),
    ("outcome", "outcome"),
    ("ip", "source_ip"),
    ("detail", "detail"),
)
KEYS = frozenset(("at", "v", *(key for key, _ in FIELDS)))

# Encoders made once (json.dumps with options builds a new one per call): the canonical
# form sorts keys; _FAST is the same for a dict whose keys are already in order.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
)
_FAST = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def at_text(moment: dt.datetime) -> str:
    """The entry's time: UTC, always with six fraction digits and a ``Z``."""
    if moment.tzinfo is not dt.UTC:
        moment = moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"  # drops "+00:00"


def encode(moment: dt.datetime, fields: tuple[object, ...], *, version: int = VERSION) -> str:
    """The canonical text of an entry; ``fields`` in :data:`FIELDS` order."""
    user, role, clinic, action, event, entity_type, entity, patient, outcome, ip, detail = fields
    # Keys written in sorted order (the encoder sorting them cost a third of the time);
    # test_chain checks this is what sorting gives.
    return _FAST.encode(
        {
            "action": action,
            "at": at_text(moment),
            "clinic": clinic,
            "detail": detail,
            "entity": entity,
            "entity_type": entity_type,
            "event": event,
            "ip": ip,
            "outcome": outcome,
            "patient": patient,
            "role": role,
            "user": user,
            "v": version,
        }
    )


def digest(prev: bytes, entry: str) -> bytes:
    """A version 2 entry's digest: SHA-256 over the previous digest and the entry's bytes."""
    return hashlib.sha256(prev + entry.encode()).digest()


def v1_preimage(prev_hex: str, entry_id: object, recorded_iso: str, *fields: object) -> str:
    """Version 1's hash input: prev hash, id, time, then the fields, ``str()`` of each
    (so None is "None"), joined by the unit separator."""
    return SEPARATOR.join((prev_hex, str(entry_id), recorded_iso, *map(str, fields)))


def v1_digest(
    prev_hex: str, entry_id: object, moment: dt.datetime, fields: tuple[object, ...]
) -> bytes:
    """A version 1 entry's digest (its ``hash`` column was the hex of this)."""
    iso = moment.astimezone(dt.UTC).isoformat()
    return hashlib.sha256(v1_preimage(prev_hex, entry_id, iso, *fields).encode()).digest()


def v1_entry(moment: dt.datetime, fields: tuple[object, ...], prev_hex: str) -> str:
    """The canonical text a version 1 entry was converted into (its ``prev`` kept)."""
    doc: dict[str, object] = dict(zip((key for key, _ in FIELDS), fields, strict=True))
    doc["at"] = at_text(moment)
    doc["prev"] = prev_hex
    doc["v"] = 1
    return _ENCODER.encode(doc)


def parse_at(text: str) -> dt.datetime:
    """The aware UTC time of an entry's ``at``."""
    return dt.datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=dt.UTC)


def v1_check(entry: str, entry_id: int, prev: bytes, stored: bytes, doc: Any = None) -> str | None:
    """Why a version 1 entry does not hold after ``prev``, or None when it does.

    Its ``entry`` must be exactly the canonical text of what it holds, name ``prev``
    (hex) as its previous digest, and its digest must be version 1's hash of it.
    ``doc``: ``entry`` already parsed, when the caller has it.
    """
    try:
        if doc is None:
            doc = json.loads(entry)
        fields = tuple(doc[key] for key, _ in FIELDS)
        moment = parse_at(doc["at"])
        prev_hex = doc["prev"]
        canonical = v1_entry(moment, fields, prev_hex) if set(doc) == KEYS | {"prev"} else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return "its content does not match its hash (edited)"
    if canonical != entry:
        return "its content does not match its hash (edited)"
    if prev_hex != prev.hex():
        return "its link to the previous entry does not match"
    if v1_digest(prev_hex, entry_id, moment, fields) != stored:
        return "its content does not match its hash (edited)"
    return None


def parse(entry: str) -> dict[str, Any] | None:
    """The entry's JSON object, or None when it is not one."""
    try:
        doc = json.loads(entry)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def version_of(entry: str) -> int | None:
    """The ``v`` an entry claims, or None when it is not an entry at all."""
    doc = parse(entry)
    version = None if doc is None else doc.get("v")
    return version if isinstance(version, int) else None
