"""Forest plot SVG: structure, accessibility and geometry."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from prolo.evidence.forest import ForestRow, forest_plot_svg, forest_rows
from prolo.evidence.meta import fixed_effect, random_effects

SVG = "{http://www.w3.org/2000/svg}"
YI = [-0.8893, -1.5854, -1.3481, -0.2175, 0.0120]
VI = [0.3256, 0.1946, 0.4154, 0.0512, 0.0040]
LABELS = ["Aronson 1948", "Ferguson & Simes 1949", "Rosenthal <et al> 1960", "F-M 1973", "Madras"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - parsing our own output


@pytest.fixture
def random_plot():
    pooled = random_effects(YI, VI)
    rows = forest_rows(LABELS, YI, VI, pooled)
    svg = forest_plot_svg(
        rows, pooled, title="BCG & TB", x_label="Risk ratio (log scale)", exp=True
    )
    return pooled, rows, svg


def test_svg_is_well_formed_and_accessible(random_plot):
    pooled, _, svg = random_plot
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    desc = root.find(f"{SVG}desc")
    assert title is not None and title.text == "BCG & TB"
    assert desc is not None and "Forest plot of 5 studies" in (desc.text or "")
    assert "prediction interval" in (desc.text or "")
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"


def test_labels_are_escaped_and_every_study_is_drawn(random_plot):
    _, _, svg = random_plot
    root = parse(svg)
    texts = [el.text for el in root.iter(f"{SVG}text")]
    for label in LABELS:
        assert label in texts
    assert "&amp;" in svg and "&lt;et al&gt;" in svg
    squares = [r for r in root.iter(f"{SVG}rect") if r.get("fill") != "#ffffff"]
    assert len(squares) == len(LABELS)
    assert len(list(root.iter(f"{SVG}polygon"))) == 1


def test_squares_are_sized_by_weight(random_plot):
    pooled, _, svg = random_plot
    root = parse(svg)
    squares = [r for r in root.iter(f"{SVG}rect") if r.get("fill") != "#ffffff"]
    sides = [float(r.get("width")) for r in squares]
    heaviest = max(range(len(pooled.weights)), key=pooled.weights.__getitem__)
    assert sides[heaviest] == max(sides)
    # area proportional to weight (above the minimum size)
    ratio = pooled.weights[0] / pooled.weights[heaviest]
    assert sides[0] == pytest.approx(max(4.0, 15.0 * math.sqrt(ratio)), abs=0.11)


def test_ratio_axis_shows_the_null_and_ratio_ticks(random_plot):
    pooled, _, svg = random_plot
    root = parse(svg)
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert "1" in texts  # the ratio at the line of no effect
    assert f"{math.exp(pooled.estimate):.2f} [{math.exp(pooled.ci_low):.2f}, " in svg
    dashed = [ln for ln in root.iter(f"{SVG}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 1
    tick_labels = {
        el.text: float(el.get("x"))
        for el in root.iter(f"{SVG}text")
        if el.get("x") is not None and el.text in {"0.2", "0.5", "1", "2"}
    }
    # the null line sits exactly on the tick labelled 1
    assert float(dashed[0].get("x1")) == pytest.approx(tick_labels["1"], abs=0.11)


def test_prediction_interval_only_for_heterogeneous_random_effects():
    fe = fixed_effect(YI, VI)
    svg = forest_plot_svg(
        forest_rows(LABELS, YI, VI, fe), fe, title="FE", x_label="log RR", exp=False
    )
    assert "prediction interval" not in svg
    assert "Fixed-effect model" in svg
    knha = random_effects(YI, VI, test="knha")
    svg = forest_plot_svg(forest_rows(LABELS, YI, VI, knha), knha, title="K", x_label="x")
    assert "Hartung-Knapp" in svg and "prediction interval" in svg


def test_negative_numbers_use_a_true_minus_sign():
    fe = fixed_effect([-0.5, -0.3], [0.01, 0.02])
    svg = forest_plot_svg(
        forest_rows(["A", "B"], [-0.5, -0.3], [0.01, 0.02], fe), fe, title="T", x_label="MD"
    )
    assert "\u22120.50" in svg
    assert not re.search(r">-\d", svg)


def test_long_labels_are_shortened_but_kept_in_the_tooltip():
    label = "A randomised trial of dextrose prolotherapy for chronic knee osteoarthritis"
    fe = fixed_effect([0.1, 0.2], [0.01, 0.01])
    svg = forest_plot_svg(
        forest_rows([label, "B"], [0.1, 0.2], [0.01, 0.01], fe), fe, title="T", x_label="x"
    )
    root = parse(svg)
    shown = [el.text or "" for el in root.iter(f"{SVG}text")]
    assert any(text.endswith("\u2026") and len(text) <= 36 for text in shown)
    assert label in svg


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([], {}, "rows must contain at least one study"),
        ([ForestRow("A", 1.0, 2.0, 3.0, 50.0)], {}, "ci_low <= estimate <= ci_high"),
        ([ForestRow("A", 1.0, 0.0, math.inf, 50.0)], {}, "finite"),
        ([ForestRow("A", 1.0, 0.0, 2.0, -1.0)], {}, "weight"),
        ([ForestRow("A", 1.0, 0.0, 2.0, 1.0)], {"title": " "}, "title"),
        ([ForestRow("A", 1.0, 0.0, 2.0, 1.0)], {"null_value": math.nan}, "null_value"),
    ],
)
def test_forest_plot_errors_name_the_bad_value(rows, kwargs, message):
    pooled = fixed_effect([1.0], [0.25])
    options = {"title": "T", "x_label": "x"} | kwargs
    with pytest.raises(ValueError, match=message):
        forest_plot_svg(rows, pooled, **options)


def test_forest_rows_checks_lengths_and_variances():
    fe = fixed_effect([0.1, 0.2], [0.01, 0.01])
    with pytest.raises(ValueError, match="labels, yi and vi"):
        forest_rows(["A"], [0.1, 0.2], [0.01, 0.01], fe)
    with pytest.raises(ValueError, match="vi must be positive"):
        forest_rows(["A", "B"], [0.1, 0.2], [0.01, 0.0], fe)


def test_narrow_ratio_range_still_gets_ticks():
    yi, vi = [0.01, -0.02, 0.03], [0.0004, 0.0003, 0.0005]
    fe = fixed_effect(yi, vi)
    rows = forest_rows(["a", "b", "c"], yi, vi, fe)
    svg = forest_plot_svg(rows, fe, title="T", x_label="RR", exp=True)
    root = parse(svg)
    tick_group = next(g for g in root.iter(f"{SVG}g") if g.get("text-anchor") == "middle")
    labels = [el.text for el in tick_group]
    assert len(labels) >= 3
    assert all(float(text) > 0 for text in labels)


def test_single_point_range_does_not_divide_by_zero():
    fe = fixed_effect([0.0], [1e-30])
    svg = forest_plot_svg(forest_rows(["a"], [0.0], [1e-30], fe), fe, title="T", x_label="x")
    assert "nan" not in svg.lower()
