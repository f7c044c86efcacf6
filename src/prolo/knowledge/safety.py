"""Safety rules for screening, as validated data with sources.

``data/safety.yaml`` holds the contraindications (``absolute``, ``relative``), the red
flags (``red_flag``: see a doctor before any injection), the notes the screening
engine adds (``duration``, ``evidence``), the chronic-pain threshold, and the warning
signs after an injection that the flare diary watches. Every rule, note and sign
cites where it was read (CLINICAL-SOURCES.md); the file lists each source once under
``references`` and a citation names it with ``ref`` plus its own ``locator``.

The file is read and validated on first use (:func:`load_safety_rules`); a malformed
file raises :class:`SafetyDataError` naming the field (``rules[3].sources[0].ref``),
so a bad edit stops start-up instead of reaching a patient.

Triggers are paths into the screening profile (``history.infection_at_site``,
``pregnant``, ``red_flags.fever``); :data:`PROFILE_TRIGGERS` is the vocabulary the
screening profile answers, and ``red_flags.<question>`` must name a red-flag question
defined in the same file.

Left out for want of a source we could read (say so rather than invent a rule):
malignancy at the injection site, and poorly controlled diabetes with a dextrose
injectate (the EULAR advice on glucose monitoring, and the listing of uncontrolled
diabetes as a relative contraindication, concern glucocorticoid injections, not
dextrose). The profile still records both so a clinician sees them.

Error tree::

    ValueError
     └── SafetyDataError   (the file is malformed: names the field)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from prolo.knowledge.schema import ComplaintKey

SAFETY_FILE = Path(__file__).parent / "data" / "safety.yaml"

KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")

# Boolean answers of the screening profile that a contraindication may trigger on.
# ``red_flags.<question>`` paths are allowed as well (checked against the file).
PROFILE_TRIGGERS: frozenset[str] = frozenset(
    {
        "history.infection_at_site",
        "history.systemic_infection",
        "history.bleeding_disorder",
        "history.fracture_at_site",
        "history.prosthetic_joint_at_site",
        "history.immunosuppressed",
        "history.malignancy_at_site",
        "history.diabetes",
        "medications.anticoagulant",
        "medications.antiplatelet",
        "allergies.local_anaesthetic",
        "allergies.dextrose",
        "pregnant",
    }
)
RED_FLAG_TRIGGER_PREFIX = "red_flags."

# The notes the engine adds by id; the file must define each.
CHRONIC_NOTE = "chronic-pain-threshold"
INSUFFICIENT_EVIDENCE_NOTE = "insufficient-evidence"
NO_MATCH_NOTE = "no-matching-condition"
REQUIRED_NOTES: tuple[str, ...] = (CHRONIC_NOTE, INSUFFICIENT_EVIDENCE_NOTE, NO_MATCH_NOTE)

# Average weeks in a month; chronic-pain thresholds are published in months.
WEEKS_PER_MONTH = 365.25 / 12 / 7

SourceGrade = Literal["primary", "secondary"]
ContraindicationKind = Literal["absolute", "relative"]
NoteKind = Literal["duration", "evidence"]

T = TypeVar("T")
# YAML gives lists; models keep tuples so the shared, cached rules cannot be mutated.
Seq = Annotated[tuple[T, ...], Strict(False)]
Text = Annotated[str, Field(min_length=1)]
KebabId = Annotated[str, Field(pattern=KEBAB.pattern)]
SnakeId = Annotated[str, Field(pattern=SNAKE.pattern)]
Url = Annotated[str, Field(pattern=r"^https?://\S+$")]


class SafetyDataError(ValueError):
    """The safety file is malformed; ``field`` is the path of the bad value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Reference(_Model):
    """A source as listed once under ``references``."""

    source: Text  # first author, year, journal, PMID/DOI where the page showed one
    url: Url
    grade: SourceGrade
    conflict_of_interest: Text | None = None


class Source(_Model):
    """Where a rule was read: the reference resolved, with this rule's locator."""

    source: Text
    url: Url
    locator: Text
    grade: SourceGrade
    applicability: Text | None = None  # how the source's population or procedure differs
    conflict_of_interest: Text | None = None


class SafetyMessage(_Model):
    """What every rule and note says: an id, two messages and its sources."""

    id: KebabId
    patient_message: Text
    clinician_message: Text
    sources: Annotated[Seq[Source], Field(min_length=1)]


class RedFlagRule(SafetyMessage):
    """A yes answer to ``question`` means medical evaluation before any injection.

    Applies only when the complaint is one of ``regions`` (the regions its sources
    cover, e.g. cauda equina signs with back pain).
    """

    kind: Literal["red_flag"]
    question: SnakeId
    question_text: Text
    regions: Annotated[Seq[ComplaintKey], Field(min_length=1)]


class ContraindicationRule(SafetyMessage):
    """Fires when any of ``triggers`` (profile answers) is true."""

    kind: ContraindicationKind
    triggers: Annotated[Seq[Text], Field(min_length=1)]

    @model_validator(mode="after")
    def _known_triggers(self) -> ContraindicationRule:
        for trigger in self.triggers:
            if trigger.startswith(RED_FLAG_TRIGGER_PREFIX):
                if not SNAKE.match(trigger.removeprefix(RED_FLAG_TRIGGER_PREFIX)):
                    raise ValueError(f"trigger {trigger!r} does not name a question id")
            elif trigger not in PROFILE_TRIGGERS:
                raise ValueError(f"unknown trigger {trigger!r}")
        if len(set(self.triggers)) != len(self.triggers):
            raise ValueError("triggers repeat")
        return self


Rule = Annotated[RedFlagRule | ContraindicationRule, Field(discriminator="kind")]


class Note(SafetyMessage):
    """A reason the engine adds that is not a contraindication (evidence, duration)."""

    kind: NoteKind


class ChronicPain(_Model):
    """Pain lasting longer than ``threshold_months`` counts as chronic."""

    threshold_months: Annotated[float, Strict(False), Field(gt=0, le=24)]
    sources: Annotated[Seq[Source], Field(min_length=1)]

    @property
    def threshold_weeks(self) -> float:
        """The threshold in weeks (average month length)."""
        return self.threshold_months * WEEKS_PER_MONTH


class WarningSign(_Model):
    """A sign after an injection that should prompt the patient to seek care."""

    id: KebabId
    sign: Text
    patient_message: Text
    onset_after_hours: Annotated[int, Field(ge=1)] | None = None
    sources: Annotated[Seq[Source], Field(min_length=1)]


class SafetyRules(_Model):
    """The whole safety file, references resolved into each rule's sources."""

    version: Annotated[int, Field(ge=1)]
    reviewed: date
    chronic_pain: ChronicPain
    rules: Annotated[Seq[Rule], Field(min_length=1)]
    notes: Seq[Note]
    post_injection_warning_signs: Seq[WarningSign] = ()

    @model_validator(mode="after")
    def _consistent(self) -> SafetyRules:
        ids = [r.id for r in self.rules] + [n.id for n in self.notes]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"rule and note ids repeat: {', '.join(repeated)}")
        questions = [r.question for r in self.red_flags]
        repeated = sorted({q for q in questions if questions.count(q) > 1})
        if repeated:
            raise ValueError(f"red-flag questions repeat: {', '.join(repeated)}")
        for rule in self.contraindications:
            for trigger in rule.triggers:
                question = trigger.removeprefix(RED_FLAG_TRIGGER_PREFIX)
                if trigger.startswith(RED_FLAG_TRIGGER_PREFIX) and question not in questions:
                    raise ValueError(
                        f"rules: {rule.id!r} triggers on {trigger!r}, "
                        f"but no red-flag rule asks {question!r}"
                    )
        note_ids = {n.id for n in self.notes}
        missing = [n for n in REQUIRED_NOTES if n not in note_ids]
        if missing:
            raise ValueError(f"notes must define: {', '.join(missing)}")
        signs = [s.id for s in self.post_injection_warning_signs]
        if len(set(signs)) != len(signs):
            raise ValueError("post_injection_warning_signs ids repeat")
        return self

    @property
    def red_flags(self) -> tuple[RedFlagRule, ...]:
        """The red-flag rules, in file order."""
        return tuple(r for r in self.rules if isinstance(r, RedFlagRule))

    @property
    def contraindications(self) -> tuple[ContraindicationRule, ...]:
        """The absolute and relative rules, in file order."""
        return tuple(r for r in self.rules if isinstance(r, ContraindicationRule))

    @property
    def questions(self) -> tuple[str, ...]:
        """Every red-flag question id the screening profile must answer."""
        return tuple(r.question for r in self.red_flags)

    def note(self, note_id: str) -> Note:
        """The note with this id; KeyError naming it when there is none."""
        for note in self.notes:
            if note.id == note_id:
                return note
        raise KeyError(f"no note {note_id!r}")


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif n > 0 and isinstance(loc[n - 1], int) and part in ("red_flag", "absolute", "relative"):
            continue  # the union's tag: the index already names the rule
        else:
            path += f".{part}" if path else part
    return path


def _resolve_citations(node: Any, refs: Mapping[str, Reference], path: str) -> Any:
    """Replace each ``{ref, locator, applicability}`` under ``sources`` by a full source."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "sources" and isinstance(value, list):
                out[key] = [
                    _resolve_one(item, refs, f"{where}[{n}]") for n, item in enumerate(value)
                ]
            else:
                out[key] = _resolve_citations(value, refs, where)
        return out
    if isinstance(node, list):
        return [_resolve_citations(item, refs, f"{path}[{n}]") for n, item in enumerate(node)]
    return node


def _resolve_one(item: Any, refs: Mapping[str, Reference], path: str) -> Any:
    if not isinstance(item, dict) or "ref" not in item:
        return item  # already a full source, or malformed: the model will say which
    extra = sorted(set(item) - {"ref", "locator", "applicability"})
    if extra:
        raise SafetyDataError(f"{path}.{extra[0]}", "unexpected key in a citation")
    ref = item["ref"]
    if not isinstance(ref, str) or ref not in refs:
        raise SafetyDataError(f"{path}.ref", f"unknown reference {ref!r}")
    reference = refs[ref]
    resolved = {
        "source": reference.source,
        "url": reference.url,
        "grade": reference.grade,
        "conflict_of_interest": reference.conflict_of_interest,
        "locator": item.get("locator"),
    }
    if "applicability" in item:
        resolved["applicability"] = item["applicability"]
    return resolved


def parse_safety_rules(data: Any) -> SafetyRules:
    """Validate a parsed safety file; SafetyDataError naming the field when malformed."""
    if not isinstance(data, dict):
        raise SafetyDataError("", "the safety file must be a YAML mapping")
    raw_refs = data.get("references", {})
    if not isinstance(raw_refs, dict):
        raise SafetyDataError("references", "must be a mapping of id to reference")
    refs: dict[str, Reference] = {}
    for ref_id, value in raw_refs.items():
        if not isinstance(ref_id, str) or not KEBAB.match(ref_id):
            raise SafetyDataError(f"references.{ref_id}", "reference ids are kebab-case")
        try:
            refs[ref_id] = Reference.model_validate(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = _field_path(("references", ref_id, *first["loc"]))
            raise SafetyDataError(field, first["msg"]) from exc
    body = {key: value for key, value in data.items() if key != "references"}
    resolved = _resolve_citations(body, refs, "")
    try:
        return SafetyRules.model_validate(resolved)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise SafetyDataError(_field_path(tuple(first["loc"])), first["msg"]) from exc


def load_safety_file(path: Path) -> SafetyRules:
    """Read and validate a safety file; SafetyDataError naming the field when malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SafetyDataError("", f"{path.name} is not valid YAML: {exc}") from exc
    return parse_safety_rules(data)


@cache
def load_safety_rules() -> SafetyRules:
    """The shipped safety rules, read and validated once (frozen, safe to share)."""
    return load_safety_file(SAFETY_FILE)
