"""Red flags in the flare diary, against the knowledge base's warning signs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.knowledge.safety import load_safety_rules
from prolo.portal.flare import RULES, DiaryDay, pain_mcid, red_flags


def day(**kw: object) -> DiaryDay:
    values: dict[str, object] = {
        "day": 2,
        "pain": 4,
        "swelling": "some",
        "redness": "at_site",
        "warmth": False,
        "fever": False,
        "normal_activity": True,
        "hours_after_session": 30.0,
    }
    values.update(kw)
    return DiaryDay(**values)  # type: ignore[arg-type]


def ids(flags: tuple) -> list[str]:
    return [f.sign_id for f in flags]


def test_every_warning_sign_in_the_knowledge_base_has_a_diary_rule() -> None:
    signs = [s.id for s in load_safety_rules().post_injection_warning_signs]
    assert signs, "the knowledge base lists no post-injection warning signs"
    assert sorted(signs) == sorted(RULES)


def test_an_expected_flare_raises_nothing() -> None:
    # Soreness, some swelling and redness at the site without warmth, early on.
    assert red_flags(day(pain=7, day=1, hours_after_session=6)) == ()


def test_fever_is_a_red_flag_with_the_knowledge_base_message() -> None:
    (flag,) = red_flags(day(fever=True))
    sign = next(s for s in load_safety_rules().post_injection_warning_signs if s.id == flag.sign_id)
    assert flag.sign_id == "fever-after-injection"
    assert flag.patient_message == sign.patient_message


def test_spreading_redness_alone_is_a_red_flag() -> None:
    assert ids(red_flags(day(redness="spreading", swelling="none"))) == ["hot-red-swelling"]


def test_red_warm_and_swollen_together_is_a_red_flag_but_not_each_alone() -> None:
    assert ids(red_flags(day(warmth=True))) == ["hot-red-swelling"]
    assert red_flags(day(warmth=True, swelling="none")) == ()
    assert red_flags(day(warmth=True, redness="none")) == ()


def test_marked_swelling_suggests_bleeding_into_the_site() -> None:
    assert ids(red_flags(day(swelling="marked", redness="none"))) == ["bleeding-into-site"]


def test_pain_far_above_baseline_counts_only_after_72_hours() -> None:
    assert pain_mcid().value == 2  # Farrar 2001, from the instrument library
    assert ids(red_flags(day(pain=7, day=4, hours_after_session=80), baseline_pain=5)) == [
        "pain-worsening-after-72-hours"
    ]
    # 71 hours: the same pain is an expected flare
    assert red_flags(day(pain=7, day=3, hours_after_session=71), baseline_pain=5) == ()
    # one point above baseline is less than the MCID
    assert red_flags(day(pain=6, day=4, hours_after_session=80), baseline_pain=5) == ()


def test_pain_still_rising_after_72_hours_is_a_red_flag() -> None:
    earlier = [day(day=3, pain=4, hours_after_session=60)]
    rising = day(day=4, pain=5, hours_after_session=80)
    assert ids(red_flags(rising, earlier=earlier, baseline_pain=4)) == [
        "pain-worsening-after-72-hours"
    ]
    # rising but still below the usual pain before the session: settling, not worsening
    assert red_flags(rising, earlier=earlier, baseline_pain=6) == ()
    # without a baseline, rising after 72 hours is enough
    assert ids(red_flags(rising, earlier=earlier)) == ["pain-worsening-after-72-hours"]


@settings(max_examples=100, deadline=None)
@given(
    pain=st.integers(0, 10),
    swelling=st.sampled_from(["none", "some", "marked"]),
    redness=st.sampled_from(["none", "at_site", "spreading"]),
    warmth=st.booleans(),
    fever=st.booleans(),
    hours=st.floats(0, 200),
    baseline=st.one_of(st.none(), st.integers(0, 10)),
)
def test_red_flags_are_monotone_in_each_warning_answer(
    pain, swelling, redness, warmth, fever, hours, baseline
) -> None:
    base = day(
        pain=pain,
        swelling=swelling,
        redness=redness,
        warmth=warmth,
        fever=fever,
        hours_after_session=hours,
    )
    found = set(ids(red_flags(base, baseline_pain=baseline)))
    worse = day(
        pain=min(10, pain + 1),
        swelling="marked",
        redness="spreading",
        warmth=True,
        fever=True,
        hours_after_session=hours,
    )
    assert found <= set(ids(red_flags(worse, baseline_pain=baseline)))
    assert ("fever-after-injection" in found) == fever
    calm = day(pain=0, swelling="none", redness="none", hours_after_session=hours)
    assert red_flags(calm, baseline_pain=baseline) == ()
