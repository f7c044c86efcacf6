"""Search value parsing: date ranges at every precision, prefixes, tokens, references."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.fhir.search import SearchError, parse_instant, reference_id, split_prefix, split_token


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024", "2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2024-12", "2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2024-02-29", "2024-02-29T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),
        ("2024-03-10T08:30", "2024-03-10T08:30:00+00:00", "2024-03-10T08:31:00+00:00"),
        ("2024-03-10T08:30:15-05:00", "2024-03-10T13:30:15+00:00", "2024-03-10T13:30:16+00:00"),
        (
            "2024-03-10T08:30:15.250Z",
            "2024-03-10T08:30:15.250000+00:00",
            "2024-03-10T08:30:15.250001+00:00",
        ),
    ],
)
def test_a_value_covers_the_range_of_its_precision(text: str, start: str, end: str) -> None:
    lo, hi = parse_instant(text)
    assert (lo.isoformat(), hi.isoformat()) == (start, end)


@pytest.mark.parametrize(
    "text", ["2024-13", "2024-02-30", "24-01-01", "2024-01-01T25:00", "soon", ""]
)
def test_impossible_dates_are_search_errors(text: str) -> None:
    with pytest.raises(SearchError):
        parse_instant(text)


@settings(max_examples=100, deadline=None)
# Hypothesis bounds are naive by design; the strategy attaches UTC.
@given(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    )
)
def test_every_instant_lies_in_the_range_of_each_of_its_truncations(moment: dt.datetime) -> None:
    for text in (
        f"{moment:%Y}",
        f"{moment:%Y-%m}",
        f"{moment:%Y-%m-%d}",
        f"{moment:%Y-%m-%dT%H:%M}",
        f"{moment:%Y-%m-%dT%H:%M:%S}Z",
    ):
        lo, hi = parse_instant(text)
        assert lo <= moment.replace(microsecond=0) < hi, text
        assert hi > lo


def test_prefixes_tokens_and_references() -> None:
    assert split_prefix("ge2024") == ("ge", "2024")
    assert split_prefix("2024") == ("eq", "2024")
    assert split_token("http://loinc.org|1234-5") == ("http://loinc.org", "1234-5")
    assert split_token("|abc") == ("", "abc")
    assert split_token("http://x|") == ("http://x", None)
    assert split_token("abc") == (None, "abc")
    assert reference_id("Patient/12", "Patient", name="p") == 12
    assert reference_id("https://host/fhir/Patient/12", "Patient", name="p") == 12
    assert reference_id("12", "Patient", name="p") == 12
    with pytest.raises(SearchError):
        reference_id("Practitioner/12", "Patient", name="p")
    with pytest.raises(SearchError):
        reference_id("Patient/abc", "Patient", name="p")
