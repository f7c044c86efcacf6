"""Red flags in the flare diary: which answers match a post-injection warning sign.

The warning signs, their wording for patients and their sources live in the
knowledge base (``post_injection_warning_signs`` in ``knowledge/data/safety.yaml``).
This module only says which diary answers match which sign:

- ``fever-after-injection``: the patient reports a fever.
- ``hot-red-swelling``: redness spreading beyond the injected area (named in the
  issue as a red flag on its own), or the area red, warm and swollen together.
- ``pain-worsening-after-72-hours``: from the sign's ``onset_after_hours`` on, pain at
  least one minimal clinically important difference of the pain rating above the
  patient's baseline (the pain NRS MCID from the instrument library, with its source;
  "far above" is read as "a clinically important increase"), or pain still rising
  from the previous diary day while above the baseline.
- ``bleeding-into-site``: marked swelling.

A sign the knowledge base adds without a rule here is a test failure
(``tests/portal/test_flare.py``), so the diary cannot silently ignore a new sign.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from prolo.instruments.base import Mcid
from prolo.instruments.catalog import get_instrument
from prolo.knowledge.safety import WarningSign, load_safety_rules

PAIN_INSTRUMENT = "pain-nrs"


@dataclass(frozen=True)
class DiaryDay:
    """One day's answers, with how long after the session they describe."""

    day: int
    pain: int
    swelling: str  # none, some, marked
    redness: str  # none, at_site, spreading
    warmth: bool
    fever: bool
    normal_activity: bool
    hours_after_session: float


@dataclass(frozen=True)
class RedFlag:
    """A warning sign the answers match, why, and what the patient should do."""

    sign_id: str
    sign: str
    reason: str
    patient_message: str


@cache
def pain_mcid() -> Mcid:
    """The pain rating's MCID (the "far above baseline" step), from the instrument library."""
    mcid = get_instrument(PAIN_INSTRUMENT).spec("total").mcid
    if mcid is None:  # pragma: no cover - the library records one; fail loudly if removed
        raise RuntimeError("the pain NRS has no MCID recorded")
    return mcid


def _fever(day: DiaryDay, sign: WarningSign, **_: object) -> str | None:
    return "fever reported" if day.fever else None


def _hot_red_swelling(day: DiaryDay, sign: WarningSign, **_: object) -> str | None:
    if day.redness == "spreading":
        return "redness spreading beyond the injected area"
    if day.redness != "none" and day.warmth and day.swelling != "none":
        return "injected area red, warm and swollen"
    return None


def _pain_after_onset(
    day: DiaryDay,
    sign: WarningSign,
    *,
    earlier: Sequence[DiaryDay],
    baseline_pain: float | None,
) -> str | None:
    onset = sign.onset_after_hours or 0
    if day.hours_after_session < onset:
        return None
    if baseline_pain is not None and day.pain >= baseline_pain + pain_mcid().value:
        return (
            f"pain {day.pain}/10 more than {onset} hours after the session, "
            f"at least {pain_mcid().value:g} points above the baseline of {baseline_pain:g}"
        )
    before = [d for d in earlier if d.day < day.day]
    if before:
        previous = max(before, key=lambda d: d.day)
        above = baseline_pain is None or day.pain > baseline_pain
        if day.pain > previous.pain and above:
            return (
                f"pain still rising more than {onset} hours after the session "
                f"({previous.pain} on day {previous.day}, {day.pain} on day {day.day})"
            )
    return None


def _bleeding(day: DiaryDay, sign: WarningSign, **_: object) -> str | None:
    return "marked swelling" if day.swelling == "marked" else None


Rule = Callable[..., str | None]
RULES: dict[str, Rule] = {
    "fever-after-injection": _fever,
    "hot-red-swelling": _hot_red_swelling,
    "pain-worsening-after-72-hours": _pain_after_onset,
    "bleeding-into-site": _bleeding,
}


def red_flags(
    day: DiaryDay,
    *,
    earlier: Sequence[DiaryDay] = (),
    baseline_pain: float | None = None,
    signs: Sequence[WarningSign] | None = None,
) -> tuple[RedFlag, ...]:
    """The warning signs ``day``'s answers match, in the knowledge base's order.

    ``earlier`` are the same diary's other days; ``baseline_pain`` the patient's pain
    rating before the session (None when unknown).

    Examples
    --------
    >>> calm = DiaryDay(2, 4, "some", "at_site", True, False, True, 30.0)
    >>> red_flags(calm)
    ()
    >>> [f.sign_id for f in red_flags(DiaryDay(2, 4, "none", "none", False, True, True, 30.0))]
    ['fever-after-injection']
    """
    if not 0 <= day.pain <= 10:
        raise ValueError(f"pain must be 0-10, got {day.pain}")
    found: list[RedFlag] = []
    for sign in signs if signs is not None else load_safety_rules().post_injection_warning_signs:
        rule = RULES.get(sign.id)
        if rule is None:
            continue
        reason = rule(day, sign, earlier=earlier, baseline_pain=baseline_pain)
        if reason is not None:
            found.append(RedFlag(sign.id, sign.sign, reason, sign.patient_message))
    return tuple(found)


def warning_sign(sign_id: str) -> WarningSign:
    """The knowledge base's warning sign with this id; KeyError naming it."""
    for sign in load_safety_rules().post_injection_warning_signs:
        if sign.id == sign_id:
            return sign
    raise KeyError(f"no post-injection warning sign {sign_id!r}")
