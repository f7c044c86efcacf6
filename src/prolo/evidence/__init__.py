"""Evidence synthesis: effect sizes, meta-analysis and forest plots (pure numerics)."""

from prolo.evidence.forest import ForestRow, forest_plot_svg, forest_rows
from prolo.evidence.meta import (
    EffectSize,
    EffectSizes,
    PooledEstimate,
    fixed_effect,
    hedges_g,
    log_risk_ratio,
    log_risk_ratios,
    mean_difference,
    random_effects,
)

__all__ = [
    "EffectSize",
    "EffectSizes",
    "ForestRow",
    "PooledEstimate",
    "fixed_effect",
    "forest_plot_svg",
    "forest_rows",
    "hedges_g",
    "log_risk_ratio",
    "log_risk_ratios",
    "mean_difference",
    "random_effects",
]
