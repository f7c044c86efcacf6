"""The outcome report's aggregates in plain pandas: the baseline the engine is held to.

This is the straightforward way to write the report (filter, group, pivot, merge) on
in-memory DataFrames. The tests and ``bench/analytics.py`` compute the same
:class:`~prolo.outcomes.report.Aggregates` here and with :mod:`prolo.outcomes.engine`
and require them to agree; the benchmark prints how much faster the engine is.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prolo.outcomes.report import (
    FLARE_RISE,
    FOLLOW_UPS,
    PRIMARY_INSTRUMENT,
    Aggregates,
    ChangeAgg,
    FollowUpAgg,
    GroupAgg,
    InstrumentRule,
    RegistryTables,
    Selection,
)

__all__ = ["Frames", "compute", "frames"]


@dataclass
class Frames:
    """The registry tables as pandas DataFrames."""

    courses: pd.DataFrame
    scores: pd.DataFrame
    follow_ups: pd.DataFrame
    flares: pd.DataFrame | None
    adverse_events: pd.DataFrame | None


def frames(tables: RegistryTables) -> Frames:
    """Convert the Arrow tables to DataFrames (strings as categoricals, dates as datetime64)."""

    def conv(table: Any) -> pd.DataFrame | None:
        if table is None:
            return None
        return table.to_pandas(strings_to_categorical=True, date_as_object=False)

    courses = conv(tables.courses)
    scores = conv(tables.scores)
    follow_ups = conv(tables.follow_ups)
    assert courses is not None and scores is not None and follow_ups is not None  # noqa: S101
    return Frames(courses, scores, follow_ups, conv(tables.flares), conv(tables.adverse_events))


def _f(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def compute(
    data: Frames | RegistryTables,
    selection: Selection,
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    """The report's aggregates for the courses in ``selection``, as of ``as_of``."""
    fr = data if isinstance(data, Frames) else frames(data)
    c = fr.courses
    mask = pd.Series(True, index=c.index)
    if selection.clinic_id is not None:
        mask &= c["clinic_id"] == selection.clinic_id
    if selection.condition_id is not None:
        mask &= c["condition_id"].astype(object) == selection.condition_id
    if selection.practitioner_id is not None:
        mask &= c["practitioner_id"] == selection.practitioner_id
    if selection.injectate is not None:
        mask &= c["injectate"].astype(object) == selection.injectate
    if selection.started_from is not None:
        mask &= c["started_on"] >= pd.Timestamp(selection.started_from)
    if selection.started_to is not None:
        mask &= c["started_on"] <= pd.Timestamp(selection.started_to)
    filtered = not bool(mask.all())
    c = c[mask]
    ids = c["course_id"]
    agg = Aggregates()

    started = c["started_on"].notna()
    agg.n_courses = len(c)
    agg.n_patients = int(c["patient_id"].nunique())
    agg.n_started = int(started.sum())
    agg.n_patients_treated = int(c.loc[started, "patient_id"].nunique())
    done = c.loc[started, "sessions_done"]
    agg.sessions_n = agg.n_started
    agg.sessions_mean = _f(done.mean()) if len(done) else None
    agg.sessions_median = _f(done.median()) if len(done) else None
    agg.sessions_min = int(done.min()) if len(done) else None
    agg.sessions_max = int(done.max()) if len(done) else None
    agg.planned_mean = _f(c.loc[started, "planned_sessions"].mean()) if len(done) else None
    agg.status_counts = {
        str(k): int(v) for k, v in c["status"].astype(object).value_counts().items()
    }
    agg.stop_reasons = {
        str(k): int(v) for k, v in c["stop_reason"].astype(object).dropna().value_counts().items()
    }

    s = fr.scores
    if filtered:
        s = s[s["course_id"].isin(ids)]
    tps = [t.key for t in FOLLOW_UPS]
    agg.instruments_seen = sorted(str(i) for i in s["instrument_id"].astype(object).unique())
    wanted = s[s["timepoint"].astype(object).isin(["baseline", *tps])]
    pivot = (
        wanted.groupby(["course_id", "instrument_id", "timepoint"], observed=True)["value"]
        .mean()
        .unstack("timepoint")
    )
    pivot = pivot.reindex(columns=["baseline", *tps])
    pivot.columns = ["b", *[f"v{i}" for i in range(len(tps))]]
    pc = pivot[pivot["b"].notna()].reset_index()
    pc["instrument_id"] = pc["instrument_id"].astype(object)
    pc = pc.merge(c[["course_id", "started_on"]], on="course_id")

    for instrument_id, group in pc.groupby("instrument_id"):
        agg.baseline[str(instrument_id)] = (
            len(group),
            _f(group["b"].mean()),
            _f(group["b"].std()),
        )

    for i, tp in enumerate(FOLLOW_UPS):
        v = pc[f"v{i}"]
        cutoff = pd.Timestamp(as_of - dt.timedelta(days=tp.days))
        for instrument_id, group in pc.groupby("instrument_id"):
            rule = rules.get(str(instrument_id))
            gv, gb = group[f"v{i}"], group["b"]
            answered = gv.notna()
            change = gv - gb
            improvement = change if (rule is not None and rule.higher_is_better) else gb - gv
            mcid = rule.mcid if rule is not None else None
            positive = answered & (gb > 0)
            agg.change[(str(instrument_id), tp.key)] = ChangeAgg(
                n=int(answered.sum()),
                mean=_f(change.mean()),
                sd=_f(change.std()),
                baseline_mean=_f(gb[answered].mean()),
                follow_up_mean=_f(gv.mean()),
                responders=int((answered & (improvement >= mcid)).sum()) if mcid is not None else 0,
                pct_n=int(positive.sum()),
                pct30=int((positive & ((gb - gv) * 10 >= 3 * gb)).sum()),
                pct50=int((positive & ((gb - gv) * 2 >= gb)).sum()),
                eligible=int((answered | (group["started_on"] <= cutoff)).sum()),
            )
        del v

    primary = rules.get(PRIMARY_INSTRUMENT)
    lc = None
    if PRIMARY_INSTRUMENT in agg.baseline and primary is not None:
        pb = pc.loc[
            pc["instrument_id"] == PRIMARY_INSTRUMENT, ["course_id", "b", "v0", "v1", "v2", "v3"]
        ]
        post = s[
            (s["instrument_id"].astype(object) == PRIMARY_INSTRUMENT)
            & (s["timepoint"].astype(object) != "baseline")
            & (s["day"] > 0)
        ][["course_id", "day", "value"]].merge(pb[["course_id", "b"]], on="course_id")
        post["imp"] = (
            post["value"] - post["b"] if primary.higher_is_better else post["b"] - post["value"]
        )
        n_primary = agg.baseline[PRIMARY_INSTRUMENT][0]
        if primary.mcid is not None:
            m = float(primary.mcid)
            post["resp_day"] = post["day"].where(post["imp"] >= m)
            first = post.groupby("course_id").agg(
                first_day=("resp_day", "min"), last_day=("day", "max")
            )
            t = first["first_day"].fillna(first["last_day"]).astype(np.int64)
            event = first["first_day"].notna()
            agg.km_response = _counts(t, event)
            agg.no_post_baseline = n_primary - len(first)
            responded = first[event].reset_index()
            later = post[["course_id", "day", "imp"]].merge(
                responded[["course_id", "first_day"]], on="course_id"
            )
            later["loss_day"] = later["day"].where(
                (later["day"] > later["first_day"]) & (later["imp"] < m)
            )
            loss = later.groupby("course_id")["loss_day"].min()
            responded = responded.set_index("course_id")
            responded["loss"] = loss
            dt_ = (responded["loss"].fillna(responded["last_day"]) - responded["first_day"]).astype(
                np.int64
            )
            agg.km_durability = _counts(dt_, responded["loss"].notna())
        else:
            agg.no_post_baseline = n_primary - int(post["course_id"].nunique())

        latest = pb["v3"].fillna(pb["v2"]).fillna(pb["v1"]).fillna(pb["v0"])
        lc = pb.assign(latest=latest)[latest.notna()]
        sign = lc["latest"] - lc["b"] if primary.higher_is_better else lc["b"] - lc["latest"]
        mcid_value = math.inf if primary.mcid is None else float(primary.mcid)
        lc = lc.assign(ch=lc["latest"] - lc["b"], resp=sign >= mcid_value)
        agg.waterfall_percent = primary.pain
        if primary.pain:
            pos = lc[lc["b"] > 0]
            agg.waterfall = (100.0 * (pos["latest"] - pos["b"]) / pos["b"]).to_numpy(np.float64)
        else:
            agg.waterfall = lc["ch"].to_numpy(np.float64)

    keyed = c[["course_id", "condition_id", "practitioner_id", "started_on"]].copy()
    if lc is not None:
        keyed = keyed.merge(lc[["course_id", "ch", "resp"]], on="course_id", how="left")
    else:
        keyed["ch"] = np.nan
        keyed["resp"] = False
    keyed["resp"] = keyed["resp"].astype(object).eq(True)
    practitioner = keyed["practitioner_id"].astype("Int64")
    year = keyed["started_on"].dt.year.astype("Int64")
    keys = {
        "condition_id": keyed["condition_id"].astype(object).astype(str),
        "practitioner_id": practitioner.astype(object).map(
            lambda x: "none" if x is pd.NA else str(x)
        ),
        "start_year": year.astype(object).map(lambda x: "not started" if x is pd.NA else str(x)),
    }
    for dim, key in keys.items():
        rows = []
        for k, group in keyed.groupby(key.to_numpy(), sort=True):
            rows.append(
                GroupAgg(
                    key=str(k),
                    courses=len(group),
                    n=int(group["ch"].notna().sum()),
                    mean=_f(group["ch"].mean()),
                    sd=_f(group["ch"].std()),
                    responders=int(group["resp"].sum()),
                )
            )
        agg.breakdowns[dim] = sorted(rows, key=lambda g: g.key)

    f = fr.follow_ups
    if filtered:
        f = f[f["course_id"].isin(ids)]
    tp_col = f["timepoint"].astype(object)
    for tp_key, group in f.groupby(tp_col):
        med = group["pain_medicine_use"]
        op = group["opioid_use"]
        users = group[op.eq(True)]
        mme = users["opioid_mme_per_day"].dropna()
        agg.follow_ups[str(tp_key)] = FollowUpAgg(
            n=len(group),
            medicine_known=int(med.notna().sum()),
            medicine_users=int(med.eq(True).sum()),
            opioid_known=int(op.notna().sum()),
            opioid_users=int(op.eq(True).sum()),
            mme_n=len(mme),
            mme_mean=_f(mme.mean()) if len(mme) else None,
            mme_median=_f(mme.median()) if len(mme) else None,
        )
    planned = f.loc[(tp_col == "baseline") & f["surgery_planned"].eq(True), "course_id"].unique()
    later = f[tp_col != "baseline"]
    done_courses = set(later.loc[later["surgery_done"].eq(True), "course_id"])
    known12 = set(
        later.loc[
            (later["timepoint"].astype(object) == "month_12") & later["surgery_done"].notna(),
            "course_id",
        ]
    )
    agg.surgery_planned = len(planned)
    agg.surgery_done = sum(1 for cid in planned if cid in done_courses)
    agg.surgery_avoided = sum(1 for cid in planned if cid not in done_courses and cid in known12)

    if fr.flares is not None:
        fl = fr.flares
        if filtered:
            fl = fl[fl["course_id"].isin(ids)]
        base = pc.loc[pc["instrument_id"] == PRIMARY_INSTRUMENT, ["course_id", "b"]]
        fl = fl.merge(base, on="course_id", how="left")
        fl["flare_day"] = fl["pain"] >= fl["b"] + FLARE_RISE
        per = fl.groupby("session_id").agg(
            b=("b", "first"), peak=("pain", "max"), flare_days=("flare_day", "sum")
        )
        evaluable = per["b"].notna()
        flared = per[per["flare_days"] > 0]
        agg.flares = {
            "sessions": int(evaluable.sum()),
            "flared": len(flared),
            "peak_mean": _f(flared["peak"].mean()) if len(flared) else None,
            "peak_sd": _f(flared["peak"].std()) if len(flared) else None,
            "duration_mean": _f(flared["flare_days"].mean()) if len(flared) else None,
            "duration_sd": _f(flared["flare_days"].std()) if len(flared) else None,
            "not_evaluable": int((~evaluable).sum()),
        }
    if fr.adverse_events is not None:
        ae = fr.adverse_events
        if filtered:
            ae = ae[ae["course_id"].isin(ids)]
        agg.adverse_events = {
            str(k): int(v) for k, v in ae["kind"].astype(object).value_counts().items()
        }
    return agg


def _counts(times: pd.Series, events: pd.Series) -> list[tuple[int, int, int]]:
    table = pd.DataFrame({"t": times.to_numpy(), "e": events.to_numpy()})
    grouped = table.groupby("t")["e"].agg(["sum", "count"]).sort_index()
    return [
        (int(t), int(e), int(n - e))
        for t, (e, n) in zip(grouped.index, grouped.to_numpy(), strict=True)
    ]
