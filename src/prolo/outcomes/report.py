"""The outcome report: what it contains, and how aggregates become figures.

The report is defined once, here. Two implementations compute the same
:class:`Aggregates` from the same registry tables: :mod:`prolo.outcomes.engine`
(DuckDB, the one the product uses) and :mod:`prolo.outcomes.baseline_pandas` (a
straightforward pandas version that the tests and the benchmark hold it against).
:func:`build_report` then turns aggregates into the figures a clinic reads: means with
95% confidence intervals, responder shares with Wilson intervals, Kaplan-Meier curves.
It never returns NaN: a figure that cannot be computed is ``None`` together with a
sentence saying why.

The registry tables (Arrow tables, from the application database or a Parquet
snapshot) have these columns:

``courses``
    course_id, clinic_id, patient_id, practitioner_id, condition_id, injectate, status,
    stop_reason, planned_sessions, sessions_done, started_on (date)
``scores``
    course_id, instrument_id, timepoint, day (days since the course started), value
    (the instrument's primary score)
``follow_ups``
    course_id, timepoint, surgery_planned, surgery_done, pain_medicine_use, opioid_use,
    opioid_mme_per_day
``flares`` (only when the portal's flare diary exists)
    course_id, session_id, day (1-7 after the injection), pain (0-10)
``adverse_events`` (only when procedure records hold them)
    course_id, kind

Definitions (the same in both engines):

- A course's baseline (and each follow-up) value is the mean of that instrument's
  scores at that timepoint; almost always there is exactly one.
- Change = follow-up minus baseline, in the instrument's points. Improvement is the
  change in the better direction. A responder improved by at least the instrument's
  MCID; for the pain rating also by at least 30% and 50% of baseline.
- A follow-up is *due* when the course started at least that long before the report
  date. *Missing* = courses with a baseline whose follow-up is due but not answered.
- Time to first response: days from the course start to the first later score of the
  primary instrument that reaches the MCID, censored at the last score. Durability:
  days from the first response to the first later score below the MCID, censored at
  the last score.
- A post-injection flare: a diary day whose pain is at least the pain rating's MCID
  (2 points) above the course's baseline pain. Peak is the highest diary pain of a
  flared session, duration the number of flare days.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from prolo.outcomes.stats import proportion_ci
from prolo.outcomes.survival import KaplanMeier, kaplan_meier_from_counts

__all__ = [
    "FOLLOW_UPS",
    "PRIMARY_INSTRUMENT",
    "Aggregates",
    "InstrumentRule",
    "RegistryTables",
    "Selection",
    "build_report",
    "compare_aggregates",
    "instrument_rules",
]


@dataclass(frozen=True)
class Timepoint:
    key: str
    days: int
    label: str


BASELINE = "baseline"
FOLLOW_UPS = (
    Timepoint("week_6", 42, "6 weeks"),
    Timepoint("month_3", 91, "3 months"),
    Timepoint("month_6", 182, "6 months"),
    Timepoint("month_12", 365, "12 months"),
)
TIMEPOINT_LABELS = {"baseline": "Baseline", **{t.key: t.label for t in FOLLOW_UPS}}
PRIMARY_INSTRUMENT = "pain-nrs"
PAIN_INSTRUMENTS = frozenset({"pain-nrs"})
FLARE_RISE = 2.0  # the pain NRS MCID (Farrar 2001), used as a clinically important rise
WATERFALL_BARS = 300
BREAKDOWNS = ("condition_id", "practitioner_id", "start_year")

MISSING_NOTE = (
    "Patients who do not return a questionnaire often differ from those who do (for "
    "example, people who improved may stop coming, or people who did not improve may "
    "give up), so figures based only on returned questionnaires can be biased in either "
    "direction. The number missing is shown next to every figure."
)


@dataclass(frozen=True)
class Selection:
    """Which courses a report covers; ``None`` means any."""

    clinic_id: int | None = None
    condition_id: str | None = None
    practitioner_id: int | None = None
    injectate: str | None = None
    started_from: dt.date | None = None
    started_to: dt.date | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("started_from", "started_to"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass(frozen=True)
class InstrumentRule:
    """How an instrument's change is read: its direction and MCID (None when unknown)."""

    instrument_id: str
    name: str
    higher_is_better: bool
    mcid: float | None
    pain: bool


def instrument_rules(instrument_ids: Sequence[str] | None = None) -> dict[str, InstrumentRule]:
    """Rules for the primary score of each instrument in the catalog (or of ``instrument_ids``).

    The primary score is the instrument's first score (its total where it has one).
    """
    from prolo.instruments.catalog import instruments

    catalog = instruments()
    rules: dict[str, InstrumentRule] = {}
    for instrument_id in instrument_ids or list(catalog):
        instrument = catalog.get(instrument_id)
        if instrument is None:
            rules[instrument_id] = InstrumentRule(instrument_id, instrument_id, False, None, False)
            continue
        spec = instrument.scores[0]
        rules[instrument_id] = InstrumentRule(
            instrument_id=instrument_id,
            name=instrument.short_name,
            higher_is_better=spec.direction == "higher_is_better",
            mcid=spec.mcid.value if spec.mcid is not None else None,
            pain=instrument_id in PAIN_INSTRUMENTS,
        )
    return rules


def primary_score_key(instrument_id: str) -> str:
    """The score key the registry reads for an instrument (its first score)."""
    from prolo.instruments.catalog import instruments

    instrument = instruments().get(instrument_id)
    return instrument.scores[0].key if instrument is not None else "total"


def rules_table(rules: Mapping[str, InstrumentRule]) -> pa.Table:
    """The rules as an Arrow table for the engines to join."""
    items = sorted(rules.values(), key=lambda r: r.instrument_id)
    return pa.table(
        {
            "instrument_id": pa.array([r.instrument_id for r in items], pa.string()),
            "higher_is_better": pa.array([r.higher_is_better for r in items], pa.bool_()),
            "mcid": pa.array([r.mcid for r in items], pa.float64()),
            "pain": pa.array([r.pain for r in items], pa.bool_()),
        }
    )


COURSE_SCHEMA = pa.schema(
    [
        ("course_id", pa.int64()),
        ("clinic_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("practitioner_id", pa.int64()),
        ("condition_id", pa.string()),
        ("injectate", pa.string()),
        ("status", pa.string()),
        ("stop_reason", pa.string()),
        ("planned_sessions", pa.int32()),
        ("sessions_done", pa.int32()),
        ("started_on", pa.date32()),
    ]
)
SCORE_SCHEMA = pa.schema(
    [
        ("course_id", pa.int64()),
        ("instrument_id", pa.string()),
        ("timepoint", pa.string()),
        ("day", pa.int32()),
        ("value", pa.float64()),
    ]
)
FOLLOW_UP_SCHEMA = pa.schema(
    [
        ("course_id", pa.int64()),
        ("timepoint", pa.string()),
        ("surgery_planned", pa.bool_()),
        ("surgery_done", pa.bool_()),
        ("pain_medicine_use", pa.bool_()),
        ("opioid_use", pa.bool_()),
        ("opioid_mme_per_day", pa.float64()),
    ]
)
FLARE_SCHEMA = pa.schema(
    [
        ("course_id", pa.int64()),
        ("session_id", pa.int64()),
        ("day", pa.int32()),
        ("pain", pa.int32()),
    ]
)
ADVERSE_EVENT_SCHEMA = pa.schema([("course_id", pa.int64()), ("kind", pa.string())])


_DICTIONARY_COLUMNS = {
    "courses": ("condition_id", "injectate", "status", "stop_reason"),
    "scores": ("instrument_id", "timepoint"),
    "follow_ups": ("timepoint",),
    "flares": (),
    "adverse_events": ("kind",),
}


@dataclass
class RegistryTables:
    """The registry as Arrow tables. ``flares``/``adverse_events`` are None when the
    installation has no such records at all (the report then says "no data")."""

    courses: pa.Table
    scores: pa.Table
    follow_ups: pa.Table
    flares: pa.Table | None = None
    adverse_events: pa.Table | None = None

    def write_parquet(self, directory: Any) -> None:
        """Write a Parquet snapshot (one file per table) into ``directory``."""
        import pathlib

        import pyarrow.parquet as pq

        folder = pathlib.Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
            table = getattr(self, name)
            if table is not None:
                pq.write_table(table, folder / f"{name}.parquet")

    @classmethod
    def read_parquet(cls, directory: Any) -> RegistryTables:
        """Read a snapshot written by :meth:`write_parquet`."""
        import pathlib

        import pyarrow.parquet as pq

        folder = pathlib.Path(directory)
        for name in ("courses", "scores", "follow_ups"):
            if not (folder / f"{name}.parquet").is_file():
                raise ValueError(f"{folder} is not a registry snapshot: {name}.parquet is missing")

        def read(name: str) -> pa.Table:
            # Short repeated texts (instrument, timepoint, status, ...) stay dictionary
            # encoded, as Parquet stores them: no string per row is ever materialised.
            return pq.read_table(
                folder / f"{name}.parquet", read_dictionary=list(_DICTIONARY_COLUMNS[name])
            )

        def optional(name: str) -> pa.Table | None:
            return read(name) if (folder / f"{name}.parquet").is_file() else None

        return cls(
            courses=read("courses"),
            scores=read("scores"),
            follow_ups=read("follow_ups"),
            flares=optional("flares"),
            adverse_events=optional("adverse_events"),
        )


# --------------------------------------------------------------------------- #
# aggregates: what an engine must compute


@dataclass
class ChangeAgg:
    """Paired change for one instrument at one follow-up."""

    n: int = 0
    mean: float | None = None
    sd: float | None = None
    baseline_mean: float | None = None
    follow_up_mean: float | None = None
    responders: int = 0
    pct_n: int = 0  # pairs with a baseline above 0 (percent reduction defined)
    pct30: int = 0
    pct50: int = 0
    eligible: int = 0  # courses with a baseline whose follow-up is due or answered


@dataclass
class FollowUpAgg:
    """Pain-medicine use at one timepoint."""

    n: int = 0
    medicine_known: int = 0
    medicine_users: int = 0
    opioid_known: int = 0
    opioid_users: int = 0
    mme_n: int = 0
    mme_mean: float | None = None
    mme_median: float | None = None


@dataclass
class GroupAgg:
    """One row of a breakdown: courses and the primary instrument's latest change."""

    key: str
    courses: int = 0
    n: int = 0
    mean: float | None = None
    sd: float | None = None
    responders: int = 0


@dataclass
class Aggregates:
    """Everything an engine computes; :func:`build_report` does the rest."""

    n_courses: int = 0
    n_patients: int = 0
    n_started: int = 0
    n_patients_treated: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    stop_reasons: dict[str, int] = field(default_factory=dict)
    sessions_n: int = 0
    sessions_mean: float | None = None
    sessions_median: float | None = None
    sessions_min: int | None = None
    sessions_max: int | None = None
    planned_mean: float | None = None
    baseline: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)
    instruments_seen: list[str] = field(default_factory=list)  # answered at any timepoint
    change: dict[tuple[str, str], ChangeAgg] = field(default_factory=dict)
    km_response: list[tuple[int, int, int]] = field(default_factory=list)
    km_durability: list[tuple[int, int, int]] = field(default_factory=list)
    no_post_baseline: int = 0
    waterfall: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    waterfall_percent: bool = False
    breakdowns: dict[str, list[GroupAgg]] = field(default_factory=dict)
    follow_ups: dict[str, FollowUpAgg] = field(default_factory=dict)
    surgery_planned: int = 0
    surgery_done: int = 0
    surgery_avoided: int = 0
    flares: dict[str, Any] | None = None
    adverse_events: dict[str, int] | None = None

    def plain(self) -> dict[str, Any]:
        """A nested structure of numbers and strings, for comparison and JSON."""
        out = asdict(self)
        out["change"] = {f"{k[0]}@{k[1]}": asdict(v) for k, v in sorted(self.change.items())}
        out["waterfall"] = sorted(float(x) for x in self.waterfall)
        return out


def _close(a: Any, b: Any, path: str, rel: float, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                problems.append(f"{path}.{key}: present in only one")
                continue
            _close(a[key], b[key], f"{path}.{key}", rel, problems)
        return
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            problems.append(f"{path}: lengths {len(a)} and {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]", rel, problems)
        return
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a != b:
            problems.append(f"{path}: {a!r} != {b!r}")
        return
    if isinstance(a, int | float) and isinstance(b, int | float):
        if not math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9):
            problems.append(f"{path}: {a!r} != {b!r}")
        return
    if a != b:
        problems.append(f"{path}: {a!r} != {b!r}")


def compare_aggregates(a: Aggregates, b: Aggregates, *, rel: float = 1e-9) -> list[str]:
    """Where two engines' aggregates differ (empty when they agree)."""
    problems: list[str] = []
    _close(a.plain(), b.plain(), "aggregates", rel, problems)
    return problems


# --------------------------------------------------------------------------- #
# the report


def _num(value: float | None, digits: int = 2) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _share(successes: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"n": 0, "count": 0, "share": None, "ci_low": None, "ci_high": None}
    ci = proportion_ci(successes, n)
    return {
        "n": n,
        "count": successes,
        "share": _num(ci.proportion, 4),
        "ci_low": _num(ci.ci_low, 4),
        "ci_high": _num(ci.ci_high, 4),
    }


def _mean_from(n: int, mean: float | None, sd: float | None) -> dict[str, Any]:
    """Mean with a t interval from summary numbers (n, mean, sd)."""
    if n == 0 or mean is None:
        return {"n": n, "mean": None, "ci_low": None, "ci_high": None, "sd": None}
    if n < 2 or sd is None:
        return {"n": n, "mean": _num(mean), "ci_low": None, "ci_high": None, "sd": None}
    from scipy import special

    crit = float(special.stdtrit(n - 1, 0.975))
    half = crit * sd / math.sqrt(n)
    return {
        "n": n,
        "mean": _num(mean),
        "ci_low": _num(mean - half),
        "ci_high": _num(mean + half),
        "sd": _num(sd),
    }


def km_summary(counts: Sequence[tuple[int, int, int]]) -> dict[str, Any] | None:
    """The report's form of a KM curve: counts per day and the curve's key points."""
    if not counts or sum(d + c for _, d, c in counts) == 0:
        return None
    curve = km_curve(counts)
    at_365 = curve.survival_at(365)
    low, high = curve.interval_at(365)
    median = next((t for t, s in zip(curve.time, curve.survival, strict=True) if s <= 0.5), None)
    return {
        "n": curve.n,
        "events": sum(curve.n_event),
        "counts": [list(row) for row in counts],
        "median_days": median,
        "at_365": _num(at_365, 4),
        "at_365_ci": [_num(low, 4), _num(high, 4)] if at_365 is not None else None,
        "last_day": curve.last_time,
    }


def km_curve(counts: Sequence[tuple[int, int, int]]) -> KaplanMeier:
    """Rebuild the Kaplan-Meier curve from ``(day, events, censored)`` rows."""
    return kaplan_meier_from_counts(
        [row[0] for row in counts], [row[1] for row in counts], [row[2] for row in counts]
    )


def _waterfall_sample(values: NDArray[np.float64]) -> list[float]:
    ordered = np.sort(values)
    if ordered.size <= WATERFALL_BARS:
        return [float(x) for x in ordered]
    index = np.floor(np.arange(WATERFALL_BARS) * (ordered.size - 1) / (WATERFALL_BARS - 1))
    return [float(x) for x in ordered[index.astype(np.int64)]]


def build_report(
    agg: Aggregates,
    *,
    selection: Selection,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> dict[str, Any]:
    """The outcome report as a JSON-ready dict: figures, the n behind each, notes."""
    started = agg.n_started
    finished = agg.status_counts.get("completed", 0) + agg.status_counts.get("stopped", 0)
    report: dict[str, Any] = {
        "selection": selection.as_dict(),
        "as_of": as_of.isoformat(),
        "empty": agg.n_courses == 0,
        "courses": {
            "patients": agg.n_patients,
            "patients_treated": agg.n_patients_treated,
            "courses": agg.n_courses,
            "started": started,
            "by_status": dict(sorted(agg.status_counts.items())),
            "stop_reasons": dict(sorted(agg.stop_reasons.items())),
            "completion": _share(agg.status_counts.get("completed", 0), finished),
            "sessions_per_course": {
                "n": agg.sessions_n,
                "mean": _num(agg.sessions_mean),
                "median": _num(agg.sessions_median),
                "min": agg.sessions_min,
                "max": agg.sessions_max,
                "planned_mean": _num(agg.planned_mean),
            },
        },
        "instruments": [],
        "missing_note": MISSING_NOTE,
    }
    if agg.n_courses == 0:
        report["notes"] = [
            "No treatment course matches this selection, so there is nothing to report."
        ]
    instrument_ids = sorted(
        {k[0] for k in agg.change} | set(agg.baseline) | set(agg.instruments_seen)
    )
    for instrument_id in instrument_ids:
        rule = rules.get(instrument_id) or InstrumentRule(
            instrument_id, instrument_id, False, None, False
        )
        base_n, base_mean, base_sd = agg.baseline.get(instrument_id, (0, None, None))
        entry: dict[str, Any] = {
            "id": instrument_id,
            "name": rule.name,
            "higher_is_better": rule.higher_is_better,
            "mcid": rule.mcid,
            "baseline": _mean_from(base_n, base_mean, base_sd),
            "follow_ups": [],
        }
        if rule.mcid is None:
            entry["mcid_note"] = (
                "No published MCID is recorded for this instrument, so responders are not counted."
            )
        for tp in FOLLOW_UPS:
            c = agg.change.get((instrument_id, tp.key), ChangeAgg())
            row: dict[str, Any] = {
                "timepoint": tp.key,
                "label": tp.label,
                "change": _mean_from(c.n, c.mean, c.sd),
                "baseline_mean": _num(c.baseline_mean),
                "follow_up_mean": _num(c.follow_up_mean),
                "eligible": c.eligible,
                "missing": max(0, c.eligible - c.n),
                "missing_share": _num((c.eligible - c.n) / c.eligible, 4) if c.eligible else None,
                "responders": _share(c.responders, c.n) if rule.mcid is not None else None,
                "reduction_30": _share(c.pct30, c.pct_n) if rule.pain else None,
                "reduction_50": _share(c.pct50, c.pct_n) if rule.pain else None,
            }
            if c.n == 0:
                row["note"] = (
                    "No follow-up is due yet for these courses."
                    if c.eligible == 0
                    else "No questionnaire was returned at this follow-up."
                )
            entry["follow_ups"].append(row)
        if base_n == 0:
            entry["note"] = (
                "This instrument was never answered at baseline, so no change can be computed."
            )
        report["instruments"].append(entry)
    if not instrument_ids and agg.n_courses:
        report.setdefault("notes", []).append(
            "No questionnaire with a baseline was answered for these courses."
        )

    primary = rules.get(PRIMARY_INSTRUMENT)
    report["time_to_response"] = km_summary(agg.km_response)
    report["durability"] = km_summary(agg.km_durability)
    report["no_post_baseline"] = agg.no_post_baseline
    report["primary_instrument"] = PRIMARY_INSTRUMENT
    report["primary_mcid"] = primary.mcid if primary else None
    report["waterfall"] = {
        "n": int(agg.waterfall.size),
        "percent": agg.waterfall_percent,
        "values": _waterfall_sample(agg.waterfall),
        "sampled": bool(agg.waterfall.size > WATERFALL_BARS),
    }
    report["breakdowns"] = {
        dim: [
            {
                "key": g.key,
                "courses": g.courses,
                "change": _mean_from(g.n, g.mean, g.sd),
                "responders": _share(g.responders, g.n),
            }
            for g in groups
        ]
        for dim, groups in agg.breakdowns.items()
    }
    medicine = []
    for tp_key in (BASELINE, *(t.key for t in FOLLOW_UPS)):
        f = agg.follow_ups.get(tp_key, FollowUpAgg())
        medicine.append(
            {
                "timepoint": tp_key,
                "label": TIMEPOINT_LABELS[tp_key],
                "recorded": f.n,
                "pain_medicine": _share(f.medicine_users, f.medicine_known),
                "opioids": _share(f.opioid_users, f.opioid_known),
                "mme": {"n": f.mme_n, "mean": _num(f.mme_mean, 1), "median": _num(f.mme_median, 1)},
            }
        )
    report["medicine"] = medicine
    unknown = agg.surgery_planned - agg.surgery_done - agg.surgery_avoided
    known = agg.surgery_done + agg.surgery_avoided
    report["surgery"] = {
        "planned_at_baseline": agg.surgery_planned,
        "done_by_12_months": agg.surgery_done,
        "avoided_at_12_months": agg.surgery_avoided,
        "unknown": unknown,
        "avoided": _share(agg.surgery_avoided, known),
        "note": (
            "Surgery avoided: planned at baseline and not done by the 12-month follow-up. "
            "Patients whose 12-month status is unknown are counted apart, not as avoided."
        ),
    }
    report["flares"] = _flares(agg.flares)
    report["adverse_events"] = (
        {"available": False, "note": "No procedure records with adverse events exist yet."}
        if agg.adverse_events is None
        else {
            "available": True,
            "by_kind": dict(sorted(agg.adverse_events.items())),
            "total": sum(agg.adverse_events.values()),
        }
    )
    return report


def _flares(flares: dict[str, Any] | None) -> dict[str, Any]:
    if flares is None:
        return {"available": False, "note": "The flare diary is not recorded in this installation."}
    sessions = int(flares.get("sessions", 0))
    out = {
        "available": True,
        "sessions_with_diary": sessions,
        "incidence": _share(int(flares.get("flared", 0)), sessions),
        "peak_pain": _mean_from(
            int(flares.get("flared", 0)), flares.get("peak_mean"), flares.get("peak_sd")
        ),
        "duration_days": _mean_from(
            int(flares.get("flared", 0)), flares.get("duration_mean"), flares.get("duration_sd")
        ),
        "not_evaluable": int(flares.get("not_evaluable", 0)),
        "definition": (
            "A flare is a diary day with pain at least 2 points (the pain-rating MCID) above "
            "the course's baseline pain."
        ),
    }
    if sessions == 0:
        out["note"] = "No diary entries were recorded for these courses."
    return out
