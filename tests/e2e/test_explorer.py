"""The public explorer in a real browser: list, filter, a condition page, its sources."""

from __future__ import annotations

import re

import pytest

from prolo.knowledge.loader import load_conditions

pytestmark = pytest.mark.browser


def test_a_visitor_filters_the_list_and_reads_a_condition(page) -> None:
    page.goto("/conditions")
    assert page.get_by_role("heading", level=1).inner_text() == "What can prolotherapy help with?"
    cards = page.locator(".condition-card")
    assert cards.count() == len(load_conditions())
    for n in range(cards.count()):
        assert cards.nth(n).locator(".grade").inner_text().startswith("Evidence: ")

    page.get_by_label("Where is the pain?").select_option("elbow")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*region=elbow.*"))
    names = cards.locator("h2").all_inner_texts()
    assert "Tennis elbow" in names and not any("knee" in n.lower() for n in names)

    page.get_by_role("link", name="Tennis elbow").click()
    page.wait_for_url(re.compile(r".*/conditions/lateral-epicondylosis$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Tennis elbow"
    assert page.locator(".grade-card .grade").inner_text().startswith("Evidence: ")
    studies = page.locator(".study")
    assert studies.count() == len(load_conditions()["lateral-epicondylosis"].studies)
    external = page.locator("a[rel~=external]").first
    assert "(external site)" in external.inner_text()
    assert page.get_by_role("heading", name="Common claims, checked against the evidence")


def test_every_statement_about_prolotherapy_opens_its_sources(page) -> None:
    page.goto("/conditions/hip-osteoarthritis")
    about = page.locator("#about-prolotherapy")
    assert "not approved by the U.S. Food and Drug Administration" in about.inner_text()
    assert "Insufficient evidence." in page.locator("main").inner_text()
    statement = about.locator("#about-not-fda-approved")
    link = statement.locator(".sources a").first
    assert not link.is_visible()
    statement.locator("summary").click()  # a native <details>: no script needed
    assert link.is_visible() and link.get_attribute("href", timeout=1000).startswith("http")


def test_keyboard_users_can_skip_to_the_content(page) -> None:
    page.goto("/conditions")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Skip to content"


def test_a_condition_page_fits_a_phone_screen(browser, live_server) -> None:
    context = browser.new_context(base_url=live_server, viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        for path in ("/conditions", "/conditions/knee-osteoarthritis"):
            page.goto(path)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
    finally:
        context.close()
