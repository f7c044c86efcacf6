"""The outcome report as a PDF a clinic can hand out (matplotlib's PDF backend).

matplotlib installs from PyPI with its own fonts and needs no system library, so the
PDF renders the same on every machine. The pictures are drawn again here with
matplotlib (the web pages use SVG): trajectories with the MCID band, Kaplan-Meier
curves with their bands, the waterfall and the forest plots.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from prolo.outcomes.report import km_curve

__all__ = ["figures", "pictures", "report_pdf"]

A4 = (8.27, 11.69)
INK = "#1f2933"
MUTED = "#52606d"
TEAL = "#0f766e"
BAND = "#f0b429"
GREY = "#9aa5b1"


def _pct(share: dict[str, Any] | None) -> str:
    if not share or share.get("share") is None:
        return "no data"
    return (
        f"{share['share'] * 100:.0f}% ({share['count']} of {share['n']}; 95% CI "
        f"{share['ci_low'] * 100:.0f} to {share['ci_high'] * 100:.0f}%)"
    )


def _mean(m: dict[str, Any]) -> str:
    if m.get("mean") is None:
        return "no data"
    if m.get("ci_low") is None:
        return f"{m['mean']:+.2f} (n={m['n']}; too few for an interval)"
    return f"{m['mean']:+.2f} (95% CI {m['ci_low']:+.2f} to {m['ci_high']:+.2f}; n={m['n']})"


def summary_lines(report: dict[str, Any], title: str) -> list[tuple[str, str]]:
    """The report's figures as (style, text) lines: 'h' heading, 'p' text, 'm' muted."""
    lines: list[tuple[str, str]] = [("t", title), ("m", f"Report date {report['as_of']}")]
    sel = {k: v for k, v in report["selection"].items() if v is not None and k != "clinic_id"}
    lines.append(
        ("m", "Selection: " + (", ".join(f"{k} {v}" for k, v in sel.items()) or "all courses"))
    )
    if report.get("empty"):
        lines.append(
            ("p", "No treatment course matches this selection, so there is nothing to report.")
        )
        return lines
    c = report["courses"]
    lines += [
        ("h", "Patients and courses"),
        (
            "p",
            f"{c['patients_treated']} patients treated in {c['started']} started courses "
            f"({c['courses']} courses in all).",
        ),
        ("p", "By status: " + ", ".join(f"{k} {v}" for k, v in c["by_status"].items())),
        (
            "p",
            "Stop reasons: "
            + (
                ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c["stop_reasons"].items())
                or "none"
            ),
        ),
        ("p", f"Completion: {_pct(c['completion'])}"),
        (
            "p",
            f"Sessions per started course: mean {c['sessions_per_course']['mean']}, median "
            f"{c['sessions_per_course']['median']} "
            f"(planned mean {c['sessions_per_course']['planned_mean']}).",
        ),
    ]
    for inst in report["instruments"]:
        lines.append(("h", f"{inst['name']}: change from baseline"))
        lines.append(
            (
                "p",
                f"Baseline mean {inst['baseline']['mean']} (n={inst['baseline']['n']}). "
                + (
                    f"MCID {inst['mcid']} points."
                    if inst.get("mcid")
                    else inst.get("mcid_note", "")
                ),
            )
        )
        for row in inst["follow_ups"]:
            text = (
                f"{row['label']}: {_mean(row['change'])}; "
                f"missing {row['missing']} of {row['eligible']} due"
            )
            if row.get("responders"):
                text += f"; MCID reached {_pct(row['responders'])}"
            if row.get("reduction_30"):
                text += f"; >=30% less pain {_pct(row['reduction_30'])}"
                text += f"; >=50% {_pct(row['reduction_50'])}"
            lines.append(("p", text))
    ttr, dur = report.get("time_to_response"), report.get("durability")
    lines.append(("h", "Time to response and durability"))
    if ttr:
        med = (
            f"median {ttr['median_days']} days"
            if ttr["median_days"] is not None
            else "median not reached"
        )
        lines.append(
            ("p", f"Time to first response (MCID): {ttr['events']} of {ttr['n']} responded; {med}.")
        )
    else:
        lines.append(("p", "Time to first response: no data."))
    if dur and dur.get("at_365") is not None:
        lo, hi = dur["at_365_ci"]
        band = (
            f" (95% CI {lo * 100:.0f} to {hi * 100:.0f}%)"
            if lo is not None and hi is not None
            else ""
        )
        lines.append(
            (
                "p",
                "Still responding 12 months after the first response: "
                f"{dur['at_365'] * 100:.0f}%{band}.",
            )
        )
    else:
        lines.append(("p", "Durability at 12 months: not enough follow-up yet."))
    lines.append(("h", "Surgery and pain medicine"))
    s = report["surgery"]
    lines.append(
        (
            "p",
            f"Surgery planned at baseline: {s['planned_at_baseline']}; done by 12 months "
            f"{s['done_by_12_months']}; avoided {s['avoided_at_12_months']}; "
            f"unknown {s['unknown']}.",
        )
    )
    for row in report["medicine"]:
        mme = row["mme"]
        lines.append(
            (
                "p",
                f"{row['label']}: pain medicine {_pct(row['pain_medicine'])}; opioids "
                f"{_pct(row['opioids'])}"
                + (f"; mean {mme['mean']} MME/day (n={mme['n']})" if mme["n"] else ""),
            )
        )
    lines.append(("h", "Flares and adverse events"))
    fl = report["flares"]
    if fl.get("available"):
        lines.append(
            (
                "p",
                f"Post-injection flares: {_pct(fl['incidence'])}; "
                f"peak pain {_mean(fl['peak_pain'])}; "
                f"days {_mean(fl['duration_days'])}.",
            )
        )
    else:
        lines.append(("p", fl["note"]))
    ae = report["adverse_events"]
    lines.append(
        (
            "p",
            ("Adverse events: " + ", ".join(f"{k} {v}" for k, v in ae["by_kind"].items()))
            if ae.get("available") and ae["by_kind"]
            else ae.get("note", "Adverse events: none recorded."),
        )
    )
    lines.append(("h", "Missing follow-ups"))
    lines.append(("p", report["missing_note"]))
    return lines


def _text_pages(lines: list[tuple[str, str]]) -> list[Figure]:
    pages, fig, y = [], None, 0.0
    for style, text in lines:
        wrapped = textwrap.wrap(text, 95 if style != "t" else 60) or [""]
        need = 0.03 + 0.018 * len(wrapped) + (0.02 if style == "h" else 0)
        if fig is None or y - need < 0.05:
            fig = Figure(figsize=A4)
            pages.append(fig)
            y = 0.95
        if style == "h":
            y -= 0.015
        size = {"t": 18, "h": 12.5, "p": 9.5, "m": 9}[style]
        weight = "bold" if style in ("t", "h") else "normal"
        colour = MUTED if style == "m" else INK
        fig.text(
            0.07, y, "\n".join(wrapped), fontsize=size, fontweight=weight, color=colour, va="top"
        )
        y -= (0.03 if style == "t" else 0.0) + 0.0175 * len(wrapped) + 0.006
    return pages


def draw_trajectory(ax: Any, inst: dict[str, Any]) -> None:
    labels = ["Baseline"] + [r["label"] for r in inst["follow_ups"]]
    xs, ys, lo, hi = [0], [0.0], [0.0], [0.0]
    for i, row in enumerate(inst["follow_ups"], start=1):
        ch = row["change"]
        if ch["mean"] is None:
            ax.annotate(
                "no data", (i, 0), ha="center", va="bottom", color=MUTED, fontsize=8, style="italic"
            )
            continue
        xs.append(i)
        ys.append(ch["mean"])
        lo.append(ch["ci_low"] if ch["ci_low"] is not None else ch["mean"])
        hi.append(ch["ci_high"] if ch["ci_high"] is not None else ch["mean"])
    mcid = inst.get("mcid")
    if mcid:
        edge = mcid if inst.get("higher_is_better") else -mcid
        ax.axhspan(
            min(0, edge),
            max(0, edge),
            color=BAND,
            alpha=0.2,
            lw=0,
            label=f"Smaller than the MCID ({mcid:g} points)",
        )
    ax.axhline(0, color=GREY, lw=1)
    yerr = [
        [y - a for y, a in zip(ys, lo, strict=True)],
        [b - y for y, b in zip(ys, hi, strict=True)],
    ]
    ax.errorbar(xs, ys, yerr=yerr, color=TEAL, marker="o", capsize=4, lw=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(
        [
            f"{lab}\nn={n}"
            for lab, n in zip(
                labels,
                [inst["baseline"]["n"]] + [r["change"]["n"] for r in inst["follow_ups"]],
                strict=True,
            )
        ],
        fontsize=8,
    )
    ax.set_ylabel("Change from baseline (points)")
    ax.set_title(f"{inst['name']}: change from baseline", loc="left", fontsize=11)
    if mcid:
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def draw_km(ax: Any, summary: dict[str, Any], title: str, ylabel: str) -> None:
    curve = km_curve([tuple(row) for row in summary["counts"]])
    times = [0.0] + [t / 7 for t in curve.time]
    surv = [1.0] + list(curve.survival)
    low = [1.0] + [s if v is None else v for s, v in zip(curve.survival, curve.ci_low, strict=True)]
    high = [1.0] + [
        s if v is None else v for s, v in zip(curve.survival, curve.ci_high, strict=True)
    ]
    end = curve.last_time / 7
    ax.step(times + [end], surv + [surv[-1]], where="post", color=TEAL, lw=2)
    ax.fill_between(
        times + [end], low + [low[-1]], high + [high[-1]], step="post", color=TEAL, alpha=0.18, lw=0
    )
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(end, 1))
    ax.set_xlabel("Weeks")
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v * 100:.0f}%")
    ax.set_title(f"{title} (n={curve.n}; shaded: 95% CI)", loc="left", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)


def draw_waterfall(ax: Any, w: dict[str, Any], mcid: float | None) -> None:
    values = sorted(w["values"], reverse=True)
    threshold = -30.0 if w["percent"] else (-mcid if mcid else None)
    colours = [TEAL if threshold is not None and v <= threshold else GREY for v in values]
    ax.bar(range(len(values)), values, width=0.85, color=colours)
    lines = [-30.0, -50.0] if w["percent"] else ([-mcid] if mcid else [])
    for value in lines:
        ax.axhline(value, color=INK, ls="--", lw=1)
        ax.annotate(
            f"{value:g}{'%' if w['percent'] else ' points'}", (0, value), va="bottom", fontsize=8
        )
    ax.axhline(0, color=GREY, lw=1)
    ax.set_xticks([])
    ax.set_ylabel("Change (% of baseline)" if w["percent"] else "Change (points)")
    sample = " (evenly spaced sample)" if w["sampled"] else ""
    ax.set_title(
        f"Pain: change per patient at the latest follow-up, n={w['n']}{sample}",
        loc="left",
        fontsize=11,
    )
    ax.spines[["top", "right", "bottom"]].set_visible(False)


def draw_forest(ax: Any, evidence: dict[str, Any]) -> None:
    pooled = evidence["pooled"]
    rows = evidence["rows"]
    labels = [r["label"] for r in rows] + ["Pooled (random effects)"]
    for i, r in enumerate(rows):
        y = len(rows) - i
        ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=INK, lw=1.2)
        ax.plot([r["estimate"]], [y], "s", color=INK, ms=4 + r["weight"] / 10)
    est, lo, hi = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
    ax.fill([lo, est, hi, est], [0, 0.25, 0, -0.25], color=TEAL)
    ax.axvline(evidence.get("null_value", 0.0), color=GREY, lw=1)
    if evidence.get("measure") == "RR":
        ax.set_xscale("log")  # ratios: equal distances for halving and doubling
    ax.set_yticks(list(range(len(rows), -1, -1)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(evidence.get("x_label", "Standardised mean difference (Hedges' g)"))
    ax.set_title(f"{evidence['name']}: published trials", loc="left", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)


Drawer = Any  # a callable drawing one picture on a matplotlib Axes


def pictures(report: dict[str, Any]) -> list[Drawer]:
    """Every picture of the report as a drawing function, in reading order."""
    out: list[Drawer] = [
        lambda ax, i=inst: draw_trajectory(ax, i)
        for inst in report["instruments"]
        if inst["baseline"]["n"]
    ]
    if report.get("time_to_response"):
        ttr = report["time_to_response"]
        out.append(lambda ax: draw_km(ax, ttr, "Time to first response", "Not yet responding"))
    if report.get("durability"):
        dur = report["durability"]
        out.append(lambda ax: draw_km(ax, dur, "Durability of response", "Still responding"))
    if report["waterfall"]["n"]:
        w, mcid = report["waterfall"], report.get("primary_mcid")
        out.append(lambda ax: draw_waterfall(ax, w, mcid))
    for evidence in report.get("evidence", []):
        if evidence.get("pooled") and evidence.get("rows"):
            out.append(lambda ax, e=evidence: draw_forest(ax, e))
    return out


def figures(report: dict[str, Any]) -> list[Figure]:
    """Every picture as its own figure (for previews and PNG checks)."""
    out = []
    for draw in pictures(report):
        fig = Figure(figsize=(8.27, 4.0))
        draw(fig.add_subplot())
        fig.tight_layout()
        out.append(fig)
    return out


def report_pdf(report: dict[str, Any], *, title: str = "Outcome report") -> bytes:
    """The report as PDF bytes: the figures in words, then every picture."""
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": title, "Creator": "prolo"}) as pdf:
        for page in _text_pages(summary_lines(report, title)):
            pdf.savefig(page)
        drawers = pictures(report)
        for i in range(0, len(drawers), 2):
            page = Figure(figsize=A4)
            for j, draw in enumerate(drawers[i : i + 2]):
                draw(page.add_axes((0.11, 0.57 - j * 0.48, 0.84, 0.36)))
            pdf.savefig(page)
        evidence_text = [
            ("h", "Published evidence by condition"),
            *[
                (
                    "p",
                    f"{e['name']}: "
                    + (
                        e.get("note")
                        or e.get("sentence")
                        or (
                            f"pooled SMD {e['pooled']['estimate']} "
                            f"(95% CI {e['pooled']['ci_low']} to "
                            f"{e['pooled']['ci_high']}; {e['k']} trials; I2 {e['pooled']['i2']}%)"
                        )
                    ),
                )
                for e in report.get("evidence", [])
            ],
        ]
        if len(evidence_text) > 1:
            for page in _text_pages(evidence_text):
                pdf.savefig(page)
    return buffer.getvalue()
