"""Per condition: pool the knowledge base's comparable trials, or say plainly why not.

A condition declares its ``syntheses`` (one comparison each: measure, outcome, the
direction that favours prolotherapy, why the trials belong together); a trial joins
one through its ``pooling`` block (docs/knowledge-format.md). This module turns each
block into an effect size oriented to its synthesis, pools two or more with the
random-effects model (REML for tau², Hartung-Knapp-Sidik-Jonkman interval, prediction
interval, I²) of :mod:`prolo.evidence.meta`, and draws the forest plot with each side
of the line of no effect labelled. The condition page and the clinician dashboard and
report (through :func:`evidence_summary`) show the same numbers.

Direction is never left implicit: an MD or SMD of a trial whose ``better`` differs
from its synthesis's is negated, so "favours prolotherapy" always lies on the side the
synthesis's ``better`` names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast

from prolo.evidence.meta import (
    PooledEstimate,
    hedges_g,
    log_risk_ratio,
    mean_difference,
    random_effects,
)
from prolo.knowledge.schema import (
    ArmEvents,
    ArmSummary,
    Condition,
    Difference,
    Study,
    Synthesis,
)

__all__ = [
    "MEASURE_LABELS",
    "SynthesisResult",
    "TrialEffect",
    "condition_syntheses",
    "evidence_summary",
    "synthesize",
    "trial_effect",
]

MEASURE_LABELS = {
    "MD": "Mean difference",
    "SMD": "Standardised mean difference (Hedges' g)",
    "RR": "Risk ratio",
}
Favours = Literal["prolotherapy", "comparator", "neither"]


@dataclass(frozen=True)
class TrialEffect:
    """One trial's effect in its synthesis, on the analysis scale (log for RR).

    ``yi`` is oriented so that the synthesis's ``better`` direction favours
    prolotherapy; ``derivation`` says in words how ``yi`` and ``vi`` were obtained.
    """

    study_id: str
    label: str
    yi: float
    vi: float
    n_treatment: int | None
    n_control: int | None
    outcome: str
    derivation: str
    url: str
    locator: str


@dataclass(frozen=True)
class SynthesisResult:
    """A synthesis with its trials' effects and, from two trials on, the pooled model."""

    condition_id: str
    condition_name: str
    synthesis: Synthesis
    effects: tuple[TrialEffect, ...]
    pooled: PooledEstimate | None

    @property
    def k(self) -> int:
        """The number of trials in the synthesis."""
        return len(self.effects)

    @property
    def ratio(self) -> bool:
        """Whether effects are ratios (pooled as logs, shown exponentiated)."""
        return self.synthesis.measure == "RR"

    @property
    def null_value(self) -> float:
        """No effect, on the scale shown to readers (1 for a ratio, else 0)."""
        return 1.0 if self.ratio else 0.0

    def shown(self, value: float) -> float:
        """A value on the analysis scale as readers see it (ratios exponentiated)."""
        return math.exp(value) if self.ratio else value

    @property
    def favours(self) -> Favours | None:
        """Which side the pooled interval lies on; ``neither`` when it spans no effect."""
        if self.pooled is None:
            return None
        return _favours(self.pooled.ci_low, self.pooled.ci_high, self.synthesis.better)

    @property
    def comparator(self) -> str:
        """The comparator's name, from the synthesis's ``comparison`` ("A vs B")."""
        parts = self.synthesis.comparison.split(" vs ", 1)
        return parts[1] if len(parts) == 2 else "the comparator"

    @property
    def note(self) -> str | None:
        """Why there is no pooled estimate, in plain words; None when there is one."""
        if self.pooled is not None:
            return None
        count = "no randomised trial" if self.k == 0 else "only one randomised trial"
        return (
            f"The knowledge base holds {count} of {self.condition_name.lower()} for this "
            f"comparison ({self.synthesis.title}) with the numbers needed for pooling, so no "
            "pooled estimate is shown. Fewer than two comparable trials cannot be combined."
        )

    @property
    def x_label(self) -> str:
        """Axis caption of the forest plot: the measure and, for an MD, its unit."""
        label = MEASURE_LABELS[self.synthesis.measure]
        if self.synthesis.measure == "MD":
            return f"{label}, {self.synthesis.unit}"
        if self.ratio:
            return f"{label} (log scale)"
        return label

    def sentence(self) -> str | None:
        """The pooled result in one sentence a clinician can read aloud; None without one."""
        p = self.pooled
        if p is None:
            return None
        measure = MEASURE_LABELS[self.synthesis.measure].lower()
        side = {
            "prolotherapy": "favours prolotherapy",
            "comparator": f"favours {self.comparator}",
            "neither": "the interval includes no effect, so neither is favoured",
        }[cast(Favours, self.favours)]
        unit = f" {self.synthesis.unit}" if self.synthesis.measure == "MD" else ""
        return (
            f"Pooled {measure} {_fmt(self.shown(p.estimate))}{unit} "
            f"(95% CI {_fmt(self.shown(p.ci_low))} to {_fmt(self.shown(p.ci_high))}; "
            f"95% prediction interval {_fmt(self.shown(p.pi_low))} to "
            f"{_fmt(self.shown(p.pi_high))}) from {self.k} trials: {side}. "
            f"τ² {p.tau2:.3g}, I² {p.i2:.0f}%."
        )

    def svg(self) -> str | None:
        """The forest plot (standalone SVG) with each side of the no-effect line labelled."""
        from prolo.evidence.forest import forest_plot_svg, forest_rows

        if self.pooled is None:
            return None
        labels = [e.label for e in self.effects]
        rows = forest_rows(
            labels, [e.yi for e in self.effects], [e.vi for e in self.effects], self.pooled
        )
        good = "Favours prolotherapy"
        bad = f"Favours {self.comparator}"
        left, right = (bad, good) if self.synthesis.better == "higher" else (good, bad)
        return forest_plot_svg(
            rows,
            self.pooled,
            title=self.synthesis.title,
            x_label=self.x_label,
            exp=self.ratio,
            # Short, so it stays clear of the diamond; the method is named in the text.
            pooled_label="Pooled (random effects)",
            id_prefix=f"forest-{self.condition_id}-{self.synthesis.id}",
            favours_left=left,
            favours_right=right,
        )

    def as_dict(self, *, with_svg: bool = True) -> dict[str, Any]:
        """Plain data for pages, the JSON report and the PDF (values as readers see them)."""
        s = self.synthesis
        out: dict[str, Any] = {
            "condition_id": self.condition_id,
            "name": self.condition_name,
            "synthesis_id": s.id,
            "title": s.title,
            "comparison": s.comparison,
            "outcome": s.outcome,
            "measure": s.measure,
            "measure_label": MEASURE_LABELS[s.measure],
            "unit": s.unit,
            "better": s.better,
            "comparable_because": s.comparable_because,
            "caveats": s.caveats,
            "k": self.k,
            "x_label": self.x_label,
            "null_value": self.null_value,
            "trials": [
                {
                    "study_id": e.study_id,
                    "label": e.label,
                    "n_treatment": e.n_treatment,
                    "n_control": e.n_control,
                    "outcome": e.outcome,
                    "derivation": e.derivation,
                    "url": e.url,
                    "locator": e.locator,
                }
                for e in self.effects
            ],
            "pooled": None,
            "note": self.note,
        }
        p = self.pooled
        if p is None:
            return out
        from prolo.evidence.forest import forest_rows

        out["pooled"] = {
            "measure": f"{MEASURE_LABELS[s.measure]}, prolotherapy vs comparator",
            "method": "REML, Hartung-Knapp-Sidik-Jonkman",
            "estimate": round(self.shown(p.estimate), 3),
            "ci_low": round(self.shown(p.ci_low), 3),
            "ci_high": round(self.shown(p.ci_high), 3),
            "pi_low": round(self.shown(p.pi_low), 3),
            "pi_high": round(self.shown(p.pi_high), 3),
            "tau2": round(p.tau2, 4),
            "i2": round(p.i2, 1),
            "q": round(p.q, 3),
            "q_p": round(p.q_p, 4),
            "favours": self.favours,
            "outcomes": [e.outcome for e in self.effects],
        }
        out["sentence"] = self.sentence()
        rows = forest_rows(
            [e.label for e in self.effects],
            [e.yi for e in self.effects],
            [e.vi for e in self.effects],
            p,
        )
        out["rows"] = [
            {
                "label": r.label,
                "estimate": self.shown(r.estimate),
                "ci_low": self.shown(r.ci_low),
                "ci_high": self.shown(r.ci_high),
                "weight": r.weight,
            }
            for r in rows
        ]
        if with_svg:
            out["svg"] = self.svg()
        return out


def _fmt(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _favours(low: float, high: float, better: str) -> Favours:
    if low <= 0.0 <= high:
        return "neither"
    above = low > 0.0
    return "prolotherapy" if above == (better == "higher") else "comparator"


def trial_effect(study: Study, synthesis: Synthesis) -> TrialEffect:
    """One trial's effect for ``synthesis``: MD, Hedges' g or log RR, oriented.

    Raises ValueError when the study has no ``pooling`` block for this synthesis.
    """
    p = study.pooling
    if p is None or p.synthesis != synthesis.id:
        raise ValueError(f"{study.id} has no pooling block for synthesis {synthesis.id!r}")
    # +1 when the trial reports in the synthesis's direction, -1 when the other way round.
    sign = 1.0 if p.better == synthesis.better else -1.0
    turned = "" if sign > 0 else "; negated, since this trial reports the other direction"
    t, c = p.treatment, p.control
    if synthesis.measure == "RR":
        t_ev, c_ev = cast(ArmEvents, t), cast(ArmEvents, c)
        es = log_risk_ratio(events1=t_ev.events, n1=t_ev.n, events2=c_ev.events, n2=c_ev.n)
        yi, vi = es.yi, es.vi
        how = (
            f"log risk ratio from {t_ev.events}/{t_ev.n} vs {c_ev.events}/{c_ev.n} events "
            "(metafor escalc RR)"
        )
    elif p.shape == "difference":
        d = cast(Difference, p.difference)
        yi, vi = sign * d.value, d.se**2
        how = (
            f"printed difference {d.value:g} (95% CI {d.ci_low:g} to {d.ci_high:g}); "
            f"SE = interval width {d.ci_high - d.ci_low:.4g} / (2 x 1.96) = {d.se:.3f}{turned}"
        )
    else:
        ta, ca = cast(ArmSummary, t), cast(ArmSummary, c)
        measure_fn = mean_difference if synthesis.measure == "MD" else hedges_g
        es = measure_fn(m1=ta.mean, sd1=ta.sd, n1=ta.n, m2=ca.mean, sd2=ca.sd, n2=ca.n)
        kind = "mean difference" if synthesis.measure == "MD" else "Hedges' g"
        yi, vi = sign * es.yi, es.vi
        spreads = {
            "sd": "SD as printed",
            "se": "SD = SE x sqrt(n)",
            "ci95": "SD from the 95% CI with t",
        }
        how = (
            f"{kind} from arm means {ta.mean:g} (n={ta.n}) and {ca.mean:g} (n={ca.n}); "
            f"{spreads[ta.sd_from]}{turned}"
        )
    return TrialEffect(
        study_id=study.id,
        label=f"{study.first_author} {study.year}",
        yi=yi,
        vi=vi,
        n_treatment=t.n,
        n_control=c.n,
        outcome=p.outcome,
        derivation=how,
        url=p.url,
        locator=p.locator,
    )


def synthesize(condition: Condition) -> tuple[SynthesisResult, ...]:
    """Every declared synthesis of ``condition``, pooled where it holds two or more trials."""
    out = []
    for synthesis in condition.syntheses:
        effects = tuple(
            trial_effect(s, synthesis)
            for s in condition.studies
            if s.pooling is not None and s.pooling.synthesis == synthesis.id
        )
        pooled = None
        if len(effects) >= 2:
            pooled = random_effects(
                [e.yi for e in effects], [e.vi for e in effects], method="REML", test="knha"
            )
        out.append(
            SynthesisResult(
                condition_id=condition.id,
                condition_name=condition.lay_name,
                synthesis=synthesis,
                effects=effects,
                pooled=pooled,
            )
        )
    return tuple(out)


@cache
def _shipped_syntheses(condition_id: str) -> tuple[SynthesisResult, ...]:
    from prolo.knowledge.loader import get_condition

    return synthesize(get_condition(condition_id))


def condition_syntheses(condition_id: str) -> tuple[SynthesisResult, ...]:
    """The shipped condition's syntheses (computed once); empty for an unknown id."""
    from prolo.knowledge.loader import load_conditions

    if condition_id not in load_conditions():
        return ()
    return _shipped_syntheses(condition_id)


def evidence_summary(condition_id: str) -> dict[str, Any]:
    """The published evidence for the dashboard and report, beside the clinic's own result.

    The first synthesis that pools (else the first declared) leads, with its forest
    plot; ``syntheses`` lists them all without pictures. A condition with none says so
    in ``note`` instead of failing.
    """
    from prolo.knowledge import loader

    condition = loader.load_conditions().get(condition_id)
    name = condition.lay_name if condition is not None else condition_id
    results = synthesize(condition) if condition is not None else ()
    if not results:
        return {
            "condition_id": condition_id,
            "name": name,
            "k": 0,
            "pooled": None,
            "note": (
                f"The knowledge base holds no randomised trial of {name.lower()} with the "
                "numbers needed for pooling, so no pooled estimate is shown. Fewer than two "
                "comparable trials cannot be combined."
            ),
            "syntheses": [],
        }
    lead = next((r for r in results if r.pooled is not None), results[0])
    out = lead.as_dict(with_svg=True)
    out["syntheses"] = [r.as_dict(with_svg=False) for r in results]
    return out
