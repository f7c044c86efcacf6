"""The procedure record pages in a real browser: labels, errors beside fields, signing."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.browser


def test_a_clinician_documents_a_session_and_signing_says_what_is_missing(
    browser, live_server
) -> None:
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, "clinician")
    page.wait_for_url(re.compile(r".*/home$"))
    page.goto("/procedures/new?patient_id=1")
    assert page.get_by_role("heading", level=1).inner_text() == "Document an injection session"

    # Every input is reachable by its label, as a screen reader would find it.
    page.get_by_label("Body region").select_option("knee")
    page.get_by_label("Solution").fill("dextrose")
    page.get_by_label(re.compile(r"^Concentration")).fill("25")
    page.get_by_label("Total volume (mL)").fill("7")
    page.get_by_label("Site 1").select_option("knee-intra-articular")
    row = page.get_by_role("group", name="Site 1")
    row.get_by_label("Side").select_option("right")
    row.get_by_label("Volume (mL)").fill("6")
    page.get_by_label("Needle gauge (G)").fill("25")
    page.get_by_label("Needle length (mm)").fill("38")
    page.get_by_label("Pain duration (weeks)").fill("30")
    page.get_by_role("button", name="Save draft").click()

    # The sites add up to 6 mL, not 7: the message sits beside the total, nothing saved.
    total = page.get_by_label("Total volume (mL)")
    assert total.get_attribute("aria-invalid") == "true"
    assert "add up to 6 mL" in page.locator("#f-injectate\\.total_volume_ml-error").inner_text()
    total.fill("6")
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(re.compile(r".*/procedures/\d+$"))
    assert "Draft" in page.get_by_role("heading", level=1).inner_text()

    # No consent on file for this patient in the demo: signing is refused, and says so.
    page.get_by_role("button", name="Sign record").click()
    alert = page.get_by_role("alert")
    assert "no informed consent is on file" in alert.inner_text()
    assert "Draft" in page.get_by_role("heading", level=1).inner_text()
    context.close()
