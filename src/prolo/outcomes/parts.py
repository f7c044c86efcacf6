# ruff: noqa: S608  (SQL text is built from the caller's table names and this module's constants)
"""The report as additive counts ("parts"), and the aggregates computed from them.

Every figure of the report is a function of counts over courses: how many selected
courses have each (started, sessions, status, stop reason) combination, how many
(baseline, follow-up) pairs each instrument and follow-up has, how many courses first
respond on each day, how many follow-up records carry each MME value, and so on. Means,
standard deviations and medians follow from the counts of the distinct values with the
same arithmetic as value by value (:func:`finish`). The values are questionnaire scores,
days and doses, so a few thousand counts stand for millions of rows.

Counts over a set of courses add up over any split of the set. A kept registry therefore
keeps each recent selection's parts (:class:`engine.LoadedRegistry`) and, when a batch of
courses changes, subtracts the batch's parts counted before the change and adds those
counted after it (:func:`merge`) instead of counting every course again. The one figure
that is not a sum over courses, distinct patients, is counted for the batch's patients
over all their courses, before and after.

:func:`count` runs the counting queries over given sources; the caller says what each
source is (the whole selection, or a batch's rows before or after a change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prolo.outcomes.report import (
    FOLLOW_UPS,
    PRIMARY_INSTRUMENT,
    Aggregates,
    ChangeAgg,
    FollowUpAgg,
    GroupAgg,
    InstrumentRule,
)

__all__ = ["Parts", "Sources", "count", "count_changes", "finish", "merge"]

N_FOLLOW_UPS = len(FOLLOW_UPS)

# part name -> key (codes and values) -> counts. Every count is a number of rows or
# courses, so parts of disjoint sets of courses add up.
Parts = dict[str, dict[tuple[Any, ...], list[int]]]

Run = Any  # (sql, params=None) -> DuckDBPyConnection

_KEYS3 = ("condition_id", "practitioner_id", "year(started_on)")
_SETS = "GROUPING SETS ((condition_id, {x}), (practitioner_id, {x}), (year(started_on), {x}))"
_BREAKDOWNS = {0b011: "condition_id", 0b101: "practitioner_id", 0b110: "start_year"}


@dataclass(frozen=True)
class Sources:
    """What to put after FROM for each input, each already restricted to the courses
    being counted (the selection, or a batch of it).

    ``patients`` holds every selected course of every patient counted (for a batch: all
    the courses of the batch's patients), ``c`` the courses counted.
    """

    c: str
    patients: str
    pc: str
    km: str
    sg: str
    scores: str
    follow_ups: str
    fa: str | None  # None: the registry has no diary table
    fs: str | None
    adverse_events: str | None  # None: no procedure records at all
    primary: int | None  # the primary instrument's code


def count(
    run: Run,
    src: Sources,
    *,
    cutoffs: list[Any],
    patient_bits: int | None = None,
) -> Parts:
    """The parts of the courses in ``src``. ``cutoffs``: the latest start date at which
    each follow-up is due. ``patient_bits``: the perfect-hash setting for grouping by
    patient (see ``engine._dense``)."""
    if patient_bits is not None:
        run(f"SET perfect_ht_threshold = {int(patient_bits)}")
    return _count(run, src, cutoffs=cutoffs, groups=None)[0]


def count_changes(run: Run, src: Sources, n_groups: int) -> list[Parts]:
    """The change of the parts of ``n_groups`` selections, counted in one pass.

    Every source has columns ``sign`` (-1 for a row as it was before a change, 1 for a
    row as it is after it), ``sel`` (the selection it belongs to, 0 to ``n_groups`` - 1;
    a row of several selections appears once for each) and ``cut0`` to ``cut3`` (that
    selection's cutoffs). Each count is the sum of the signs per selection; patients
    are counted per state, then signed."""
    counted = _count(run, src, cutoffs=None, groups=n_groups)
    return [counted[i] for i in range(n_groups)]


def _count(
    run: Run, src: Sources, *, cutoffs: list[Any] | None, groups: int | None
) -> dict[int, Parts]:
    signed = groups is not None
    n = "sum(sign)" if signed else "count(*)"
    sel = "sel, " if signed else ""  # a leading key column: the selection
    state = "sel, sign, " if signed else ""
    out: dict[int, Parts] = {group: {} for group in range(groups or 1)}

    def keyed(name: str, sql: str, n_keys: int, params: Any = None) -> None:
        for group in out:
            out[group][name] = {}
        for r in run(sql, params).fetchall():
            group, r = (int(r[0]), r[1:]) if signed else (0, r)
            counts = [int(x or 0) for x in r[n_keys:]]
            if any(counts):  # a row of zeros (an empty total) is no count at all
                out[group][name][tuple(r[:n_keys])] = counts

    def sets(*keys: str) -> str:
        return "GROUPING SETS (" + ", ".join(f"({sel}{k})" for k in keys).replace(", )", ")") + ")"

    keyed(
        "patients",
        f"""
        SELECT {sel}{n}, {n} FILTER (WHERE started)
        FROM (SELECT {state}patient_id, bool_or(started_on IS NOT NULL) AS started
              FROM {src.patients} WHERE patient_id IS NOT NULL GROUP BY ALL)
        {"GROUP BY sel" if signed else ""}
        """,
        0,
    )
    keyed(
        "courses",
        f"SELECT {sel}started_on IS NOT NULL, sessions_done, planned_sessions, status, "
        f"stop_reason, {n} FROM {src.c} GROUP BY ALL",
        5,
    )
    keyed(
        "breakdown_courses",
        f"SELECT {sel}GROUPING({', '.join(_KEYS3)}), {', '.join(_KEYS3)}, {n} FROM {src.c} "
        f"GROUP BY {sets('condition_id', 'practitioner_id', 'year(started_on)')}",
        4,
    )
    keyed("instruments", f"SELECT {sel}instrument_id, {n} FROM {src.scores} GROUP BY ALL", 1)
    cut = [f"cut{i}" if signed else "?" for i in range(N_FOLLOW_UPS)]
    due = ", ".join(
        f"{n} FILTER (WHERE v{i} IS NULL AND started_on <= {cut[i]})" for i in range(N_FOLLOW_UPS)
    )
    keyed(
        "baseline",
        f"SELECT {sel}instrument_id, b, {n}, {due} FROM {src.pc} GROUP BY ALL",
        2,
        None if signed else cutoffs,
    )
    # Every answered follow-up as one row (instrument, follow-up, baseline, value).
    answered = " UNION ALL ".join(
        f"SELECT {state}instrument_id, {i} AS tp, b, v{i} AS v FROM {src.pc} WHERE v{i} IS NOT NULL"
        for i in range(N_FOLLOW_UPS)
    )
    keyed("pairs", f"SELECT {sel}instrument_id, tp, b, v, {n} FROM ({answered}) GROUP BY ALL", 4)
    # Kaplan-Meier inputs as counts per day, both curves and the total in one pass:
    # response at the first response (else censored at the last score); durability,
    # for responders, at the first loss (else censored at the last score).
    keyed(
        "km",
        f"""
        SELECT {sel}GROUPING(tr, td), tr, td, {n},
               {n} FILTER (WHERE first_day IS NOT NULL),
               {n} FILTER (WHERE loss_day IS NOT NULL)
        FROM (SELECT *, coalesce(first_day, last_day) AS tr,
                     coalesce(loss_day, last_day) - first_day AS td FROM {src.km})
        GROUP BY {sets("tr", "td", "")}
        """,
        3,
    )
    if src.primary is not None:
        latest = "coalesce(v3, v2, v1, v0)"
        lc = f"""(SELECT {state}b, {latest} AS latest, {latest} - b AS ch, condition_id,
                         practitioner_id, started_on
                  FROM {src.pc}
                  WHERE instrument_id = {int(src.primary)} AND {latest} IS NOT NULL)"""
        # One pass for two parts: (latest, baseline) for the waterfall, and the change
        # by condition, practitioner and start year.
        for group in out:
            out[group]["latest"], out[group]["breakdown_change"] = {}, {}
        for r in run(
            f"SELECT {sel}GROUPING(latest, b), GROUPING({', '.join(_KEYS3)}), latest, b, "
            f"{', '.join(_KEYS3)}, ch, {n} FROM {lc} GROUP BY "
            + sets("latest, b", "condition_id, ch", "practitioner_id, ch", "year(started_on), ch")
        ).fetchall():
            group, r = (int(r[0]), r[1:]) if signed else (0, r)
            waterfall, g3, latest_value, b, k1, k2, k3, ch, rows = r
            if not rows:
                continue
            if waterfall == 0:
                out[group]["latest"][(latest_value, b)] = [int(rows)]
            else:
                out[group]["breakdown_change"][(g3, k1, k2, k3, ch)] = [int(rows)]
    keyed(
        "follow_ups",
        f"SELECT {sel}timepoint, pain_medicine_use, opioid_use, "
        f"CASE WHEN opioid_use THEN opioid_mme_per_day END, {n} "
        f"FROM {src.follow_ups} GROUP BY ALL",
        4,
    )
    by_sel = "GROUP BY sel" if signed else ""
    keyed(
        "surgery",
        f"SELECT {sel}{n}, {n} FILTER (WHERE done), "
        f"{n} FILTER (WHERE NOT done AND known12) FROM {src.sg} {by_sel}",
        0,
    )
    if src.fa is not None and src.fs is not None:
        # Sessions of courses with a primary baseline by peak and flare days; and every
        # diary session.
        keyed("flares", f"SELECT {sel}peak, flare_days, {n} FROM {src.fs} GROUP BY ALL", 2)
        keyed("sessions", f"SELECT {sel}{n} FROM {src.fa} {by_sel}", 0)
    if src.adverse_events is not None:
        keyed(
            "adverse_events",
            f"SELECT {sel}kind, {n} FROM {src.adverse_events} GROUP BY ALL",
            1,
        )
    return out


def merge(into: Parts, delta: Parts, sign: int) -> None:
    """Add (``sign`` 1) or subtract (-1) ``delta``'s counts to ``into``, in place.

    Keys whose counts all reach zero are dropped, so merged parts equal parts counted
    afresh. A negative count means the parts subtracted were never added: an error.
    """
    for name, rows in delta.items():
        target = into.setdefault(name, {})
        for key, counts in rows.items():
            held = target.get(key)
            total = counts if held is None and sign > 0 else None
            if total is None:
                base = held if held is not None else [0] * len(counts)
                total = [a + sign * b for a, b in zip(base, counts, strict=True)]
            if any(x < 0 for x in total):
                raise ValueError(f"report part {name} {key!r} went negative: {total}")
            if any(total):
                target[key] = list(total)
            else:
                target.pop(key, None)


# --------------------------------------------------------------------------- #
# the aggregates from the parts


def _mean_sd(
    x: NDArray[np.float64], w: NDArray[np.int64]
) -> tuple[int, float | None, float | None]:
    """n, mean and sample standard deviation of values ``x`` counted ``w`` times."""
    n = int(w.sum())
    if n == 0:
        return 0, None, None
    mean = float((w * x).sum()) / n
    sd = math.sqrt(float((w * (x - mean) ** 2).sum()) / (n - 1)) if n > 1 else None
    return n, mean, sd


def _median(x: NDArray[np.float64], w: NDArray[np.int64]) -> float | None:
    """The median of values ``x`` counted ``w`` times (the middle two averaged)."""
    n = int(w.sum())
    if n == 0:
        return None
    order = np.argsort(x, kind="stable")
    cumulative = np.cumsum(w[order])
    values = x[order]
    low = values[int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))]
    high = values[int(np.searchsorted(cumulative, n // 2, side="right"))]
    return float((low + high) / 2)


def _columns(
    rows: Mapping[tuple[Any, ...], list[int]], n_keys: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """A part's keys as float columns (null as NaN; codes, ids, days and scores are all
    exact in a double) and its counts as int64 columns, one per key or count."""
    n = len(rows)
    keys = np.array(list(rows), dtype=np.float64).reshape(n, n_keys).T
    counts = np.array(list(rows.values()), dtype=np.int64).reshape(n, -1).T
    return keys, counts


def _group_stats(
    group: NDArray[np.int64], x: NDArray[np.float64], w: NDArray[np.int64], size: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per group (``group`` numbers 0..size-1): n, mean and sample variance (NaN below
    two) of values ``x`` counted ``w`` times."""
    n = np.bincount(group, weights=w, minlength=size).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(group, weights=w * x, minlength=size) / n
        square = np.bincount(group, weights=w * (x - mean[group]) ** 2, minlength=size)
        variance = np.where(n > 1, square / np.maximum(n - 1, 1), np.nan)
    return n, mean, variance


def change_from_counts(
    b: NDArray[np.float64],
    v: NDArray[np.float64],
    w: NDArray[np.int64],
    rule: InstrumentRule | None,
) -> ChangeAgg:
    """Change figures from distinct (baseline, follow-up) pairs and how often each occurs.

    The same arithmetic as pair by pair (change ``v - b``, the responder and percent
    tests on the same doubles), each term counted ``w`` times.
    """
    n = int(w.sum())
    change = v - b
    mean = float((w * change).sum()) / n
    sd = math.sqrt(float((w * (change - mean) ** 2).sum()) / (n - 1)) if n > 1 else None
    improvement = change if rule is not None and rule.higher_is_better else b - v
    positive = b > 0
    return ChangeAgg(
        n=n,
        mean=mean,
        sd=sd,
        baseline_mean=float((w * b).sum()) / n,
        follow_up_mean=float((w * v).sum()) / n,
        responders=(
            int(w[improvement >= rule.mcid].sum())
            if rule is not None and rule.mcid is not None
            else 0
        ),
        pct_n=int(w[positive].sum()),
        pct30=int(w[positive & ((b - v) * 10 >= 3 * b)].sum()),
        pct50=int(w[positive & ((b - v) * 2 >= b)].sum()),
    )


def finish(
    parts: Parts,
    *,
    name: Callable[[str, str, Any], Any],
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    """The report's aggregates from a selection's parts. ``name(table, column, code)``
    gives the text behind a code. Reads ``parts`` without changing it."""
    agg = Aggregates()
    _finish_courses(parts, agg, name)
    seen = parts.get("instruments", {})
    agg.instruments_seen = sorted(
        str(name("scores", "instrument_id", k[0])) for k, (rows_,) in seen.items() if rows_
    )

    missing_due: dict[str, list[int]] = {}
    rows = parts.get("baseline", {})
    if rows:
        (codes, b), (nb, *due) = _columns(rows, 2)
        for code in np.unique(codes):
            take = codes == code
            instrument_id = str(name("scores", "instrument_id", int(code)))
            agg.baseline[instrument_id] = _mean_sd(b[take], nb[take])
            missing_due[instrument_id] = [int(d[take].sum()) for d in due]
    rows = parts.get("pairs", {})
    if rows:
        (codes, tps, bf, vf), (w,) = _columns(rows, 4)
        slots = codes.astype(np.int64) * N_FOLLOW_UPS + tps.astype(np.int64)
        for slot in np.unique(slots):
            code, i = divmod(int(slot), N_FOLLOW_UPS)
            instrument_id = str(name("scores", "instrument_id", code))
            take = slots == slot
            change = change_from_counts(bf[take], vf[take], w[take], rules.get(instrument_id))
            change.eligible = change.n + missing_due[instrument_id][i]
            agg.change[(instrument_id, FOLLOW_UPS[i].key)] = change
    for instrument_id in agg.baseline:  # a follow-up nobody answered
        for i, tp in enumerate(FOLLOW_UPS):
            if (instrument_id, tp.key) not in agg.change:
                agg.change[(instrument_id, tp.key)] = ChangeAgg(
                    eligible=missing_due[instrument_id][i]
                )

    primary = rules.get(PRIMARY_INSTRUMENT)
    stats: dict[tuple[int, Any], tuple[int, float | None, float | None, int]] = {}
    if PRIMARY_INSTRUMENT in agg.baseline and primary is not None:
        _finish_primary(parts, agg, primary)
        mcid = math.inf if primary.mcid is None else float(primary.mcid)
        rows = parts.get("breakdown_change", {})
        if rows:
            (gs, k1, k2, k3, ch), (cw,) = _columns(rows, 5)
            # Each row's breakdown key is the one its grouping set grouped by.
            key = np.select([gs == 0b011, gs == 0b101], [k1, k2], k3)
            # One number per (grouping set, key): keys are codes, ids or years, whole
            # numbers below 2**40, and null is 2**40.
            whole = gs * 2.0**41 + np.where(np.isnan(key), 2.0**40, key)
            unique, group = np.unique(whole, return_inverse=True)
            gn, gmean, gvar = _group_stats(group, ch, cw, len(unique))
            improvement = ch if primary.higher_is_better else -ch
            responders = np.bincount(
                group, weights=cw * (improvement >= mcid), minlength=len(unique)
            )
            for at, value in enumerate(unique):
                g, k = divmod(float(value), 2.0**41)
                stats[(int(g), None if k == 2.0**40 else int(k))] = (
                    int(gn[at]),
                    float(gmean[at]),
                    None if np.isnan(gvar[at]) else math.sqrt(float(gvar[at])),
                    int(responders[at]),
                )

    breakdowns: dict[str, list[GroupAgg]] = {dim: [] for dim in _BREAKDOWNS.values()}
    for (g, *key3), (courses,) in parts.get("breakdown_courses", {}).items():
        key = _breakdown_key(g, key3)
        n, mean, sd, n_responders = stats.get((int(g), key), (0, None, None, 0))
        if g == 0b011:
            label = str(name("courses", "condition_id", key))
        elif g == 0b101:
            label = "none" if key is None else str(key)
        else:
            label = "not started" if key is None else str(key)
        breakdowns[_BREAKDOWNS[int(g)]].append(
            GroupAgg(key=label, courses=courses, n=n, mean=mean, sd=sd, responders=n_responders)
        )
    agg.breakdowns = {
        dim: sorted(groups_, key=lambda g: g.key) for dim, groups_ in breakdowns.items()
    }
    _finish_follow_ups(parts, agg, name)
    planned, done, avoided = parts.get("surgery", {}).get((), [0, 0, 0])
    agg.surgery_planned, agg.surgery_done, agg.surgery_avoided = planned, done, avoided
    if "sessions" in parts or "flares" in parts:
        _finish_flares(parts, agg)
    if "adverse_events" in parts:
        agg.adverse_events = {
            str(name("adverse_events", "kind", k)): n
            for (k,), (n,) in parts["adverse_events"].items()
        }
    return agg


def _finish_courses(parts: Parts, agg: Aggregates, name: Callable[[str, str, Any], Any]) -> None:
    agg.n_patients, agg.n_patients_treated = parts.get("patients", {}).get((), [0, 0])
    rows = parts.get("courses", {})
    status_counts: dict[str, int] = {}
    stop_reasons: dict[str, int] = {}
    sessions: dict[int, int] = {}
    planned: dict[int, int] = {}
    for (started, done, plan, status, reason), (n,) in rows.items():
        agg.n_courses += n
        label = str(name("courses", "status", status))
        status_counts[label] = status_counts.get(label, 0) + n
        if reason is not None:
            label = str(name("courses", "stop_reason", reason))
            stop_reasons[label] = stop_reasons.get(label, 0) + n
        if started:
            agg.n_started += n
            if done is not None:
                sessions[int(done)] = sessions.get(int(done), 0) + n
            if plan is not None:
                planned[int(plan)] = planned.get(int(plan), 0) + n
    agg.status_counts, agg.stop_reasons = status_counts, stop_reasons
    agg.sessions_n = agg.n_started
    if sessions:
        x = np.asarray(list(sessions), np.float64)
        w = np.asarray(list(sessions.values()), np.int64)
        agg.sessions_mean = _mean_sd(x, w)[1]
        agg.sessions_median = _median(x, w)
        agg.sessions_min, agg.sessions_max = min(sessions), max(sessions)
    if planned:
        x = np.asarray(list(planned), np.float64)
        agg.planned_mean = _mean_sd(x, np.asarray(list(planned.values()), np.int64))[1]


def _finish_primary(parts: Parts, agg: Aggregates, primary: InstrumentRule) -> None:
    """Kaplan-Meier counts, courses without a later score, and the waterfall."""
    response: list[tuple[int, int, int]] = []
    durability: list[tuple[int, int, int]] = []
    n_post = 0
    for (g, t_response, t_durability), (n, responded, lost) in parts.get("km", {}).items():
        if g == 0b01:
            response.append((int(t_response), responded, n - responded))
        elif g == 0b10 and t_durability is not None:
            durability.append((int(t_durability), lost, n - lost))
        elif g == 0b11:
            n_post = n
    agg.no_post_baseline = agg.baseline[PRIMARY_INSTRUMENT][0] - n_post
    if primary.mcid is not None:
        agg.km_response = sorted(response)
        agg.km_durability = sorted(durability)
    agg.waterfall_percent = primary.pain
    rows = parts.get("latest", {})
    if not rows:
        agg.waterfall = np.zeros(0)
        return
    (lf, bf), (w,) = _columns(rows, 2)
    if primary.pain:
        positive = bf > 0
        values = 100.0 * (lf[positive] - bf[positive]) / bf[positive]
        agg.waterfall = np.repeat(values, w[positive])
    else:
        agg.waterfall = np.repeat(lf - bf, w)


def _finish_follow_ups(parts: Parts, agg: Aggregates, name: Callable[[str, str, Any], Any]) -> None:
    rows = parts.get("follow_ups", {})
    if not rows:
        return
    (tps, medicine, opioid, mme), (w,) = _columns(rows, 4)
    for tp in np.unique(tps):
        at = tps == tp
        med, op, dose, n = medicine[at], opioid[at], mme[at], w[at]
        doses = (op == 1) & ~np.isnan(dose)
        mme_n, mme_mean, _ = _mean_sd(dose[doses], n[doses])
        agg.follow_ups[str(name("follow_ups", "timepoint", int(tp)))] = FollowUpAgg(
            n=int(n.sum()),
            medicine_known=int(n[~np.isnan(med)].sum()),
            medicine_users=int(n[med == 1].sum()),
            opioid_known=int(n[~np.isnan(op)].sum()),
            opioid_users=int(n[op == 1].sum()),
            mme_n=mme_n,
            mme_mean=mme_mean,
            mme_median=_median(dose[doses], n[doses]),
        )


def _finish_flares(parts: Parts, agg: Aggregates) -> None:
    (all_sessions,) = parts.get("sessions", {}).get((), [0])
    rows = parts.get("flares", {})
    sessions = sum(n for (n,) in rows.values())
    flared = [(k, n) for k, (n,) in rows.items() if k[1] > 0]
    peak = np.asarray([k[0] for k, _ in flared], np.float64)
    days = np.asarray([k[1] for k, _ in flared], np.float64)
    w = np.asarray([n for _, n in flared], np.int64)
    n_flared, peak_mean, peak_sd = _mean_sd(peak, w)
    _, duration_mean, duration_sd = _mean_sd(days, w)
    agg.flares = {
        "sessions": sessions,
        "flared": n_flared,
        "peak_mean": peak_mean,
        "peak_sd": peak_sd,
        "duration_mean": duration_mean,
        "duration_sd": duration_sd,
        "not_evaluable": all_sessions - sessions,
    }


def _breakdown_key(grouping: Any, keys: Any) -> Any:
    """The key of a GROUPING SETS row over (condition, practitioner, start year)."""
    return keys[{0b011: 0, 0b101: 1, 0b110: 2}[int(grouping)]]
