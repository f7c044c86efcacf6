"""Pooled trial evidence in a real browser: the condition page and the clinician dashboard."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.browser


def test_a_condition_page_shows_the_pooled_estimate_and_its_forest_plot(page) -> None:
    page.goto("/conditions/knee-osteoarthritis")
    section = page.locator(
        "section", has=page.get_by_role("heading", name="What the trials show together")
    )
    assert (
        "Pooled mean difference 8.82 points of WOMAC composite improvement" in section.inner_text()
    )
    plot = section.get_by_role(
        "img", name="WOMAC composite at 52 weeks: dextrose vs saline injections"
    )
    assert plot.is_visible()
    # Both trials and the labelled sides of the line of no effect are drawn.
    drawn = plot.text_content() or ""
    for text in ("Rabago 2013", "Sit 2020", "Favours prolotherapy", "Favours blinded saline"):
        assert text in drawn
    # The plot keeps a legible size: its text is not shrunk below the 13px it is drawn at.
    box = plot.bounding_box()
    assert box is not None and box["width"] >= 870


def test_on_a_phone_the_forest_plot_scrolls_inside_its_region(browser, live_server) -> None:
    context = browser.new_context(base_url=live_server, viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        page.goto("/conditions/low-back-pain")
        region = page.get_by_role("region", name="Forest plot: At least 50% better at 6 months")
        widths = region.evaluate("el => [el.scrollWidth, el.clientWidth]")
        assert widths[0] > widths[1], "the plot scrolls sideways inside its region"
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page itself scrolls sideways by {overflow}px"
        assert "Pooled risk ratio" in page.locator("#pooled-h").locator("xpath=..").inner_text()
    finally:
        context.close()


def test_the_dashboard_shows_the_trials_beside_the_clinics_own_result(page) -> None:
    login(page, "clinician")
    page.goto("/outcomes?condition=low-back-pain")
    evidence = page.locator(
        "section", has=page.get_by_role("heading", name="Your results beside the published trials")
    )
    text = evidence.inner_text()
    assert "Pooled risk ratio" in text and "Your clinic" in text
    assert evidence.get_by_role("img", name="At least 50% better at 6 months").is_visible()
