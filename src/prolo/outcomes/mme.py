"""Morphine milligram equivalents (MME) per day, with the CDC's conversion factors.

A registry records opioid use so that a clinic can see whether it falls after a
course. The daily dose of each opioid is multiplied by its conversion factor and the
products are summed. The factors are for analysis only: the CDC table itself warns
that they must not be used to convert a patient from one opioid to another.

Source (read on the page below, a reproduction of the guideline's table; grade
secondary because the table was read as reproduced, not on the CDC's own page):
CDC Clinical Practice Guideline for Prescribing Opioids for Pain - United States,
2022. MMWR Recommendations and Reports 71(3), 4 November 2022. "TABLE. Morphine
milligram equivalent doses for commonly prescribed opioids for pain management."
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prolo.instruments.base import Source

__all__ = ["CDC_2022", "CONVERSION_FACTORS", "OpioidDose", "mme_per_day"]

CDC_2022 = Source(
    source=(
        "CDC Clinical Practice Guideline for Prescribing Opioids for Pain - United States, 2022. "
        "MMWR Recomm Rep 71(3), 4 Nov 2022. Table: Morphine milligram equivalent doses for "
        "commonly prescribed opioids for pain management (adapted by the CDC from Von Korff "
        "2008 and Nielsen 2016)"
    ),
    url="https://www.medscape.org/viewarticle/987410",
    locator=(
        "TABLE: 'Codeine 0.15; Fentanyl transdermal (in mcg/hr) 2.4; Hydrocodone 1.0; "
        "Hydromorphone 5.0; Methadone 4.7; Morphine 1.0; Oxycodone 1.5; Oxymorphone 3.0; "
        "Tapentadol 0.4; Tramadol 0.2'; footnote: 'All doses are in mg/day except for "
        "fentanyl, which is mcg/hr'"
    ),
    grade="secondary",
)

Unit = Literal["mg/day", "mcg/hr"]


@dataclass(frozen=True)
class Factor:
    """One opioid's conversion factor and the unit its daily dose is given in."""

    factor: float
    unit: Unit


CONVERSION_FACTORS: dict[str, Factor] = {
    "codeine": Factor(0.15, "mg/day"),
    "fentanyl_transdermal": Factor(2.4, "mcg/hr"),
    "hydrocodone": Factor(1.0, "mg/day"),
    "hydromorphone": Factor(5.0, "mg/day"),
    "methadone": Factor(4.7, "mg/day"),
    "morphine": Factor(1.0, "mg/day"),
    "oxycodone": Factor(1.5, "mg/day"),
    "oxymorphone": Factor(3.0, "mg/day"),
    "tapentadol": Factor(0.4, "mg/day"),
    "tramadol": Factor(0.2, "mg/day"),
}

DRUG_LABELS = {
    "codeine": "Codeine",
    "fentanyl_transdermal": "Fentanyl patch (mcg/hr)",
    "hydrocodone": "Hydrocodone",
    "hydromorphone": "Hydromorphone",
    "methadone": "Methadone",
    "morphine": "Morphine",
    "oxycodone": "Oxycodone",
    "oxymorphone": "Oxymorphone",
    "tapentadol": "Tapentadol",
    "tramadol": "Tramadol",
}


@dataclass(frozen=True)
class OpioidDose:
    """One opioid and its total daily dose (mg/day; mcg/hr for a fentanyl patch)."""

    drug: str
    daily_dose: float


def mme_per_day(doses: Iterable[OpioidDose]) -> float:
    """Total morphine milligram equivalents per day of ``doses``.

    Raises ``ValueError`` naming an unknown drug or a negative or non-finite dose.

    Examples
    --------
    The CDC table's own worked examples: hydrocodone 5 mg four times a day is 20 mg
    a day, 20 MME; oxycodone 10 mg twice a day is 20 mg a day, 30 MME.

    >>> mme_per_day([OpioidDose("hydrocodone", 20)])
    20.0
    >>> mme_per_day([OpioidDose("oxycodone", 20), OpioidDose("hydrocodone", 20)])
    50.0
    """
    total = 0.0
    for dose in doses:
        factor = CONVERSION_FACTORS.get(dose.drug)
        if factor is None:
            raise ValueError(f"unknown opioid {dose.drug!r}; known: {sorted(CONVERSION_FACTORS)}")
        if not math.isfinite(dose.daily_dose) or dose.daily_dose < 0:
            raise ValueError(f"daily_dose must be a non-negative number; got {dose.daily_dose!r}")
        total += dose.daily_dose * factor.factor
    return total
