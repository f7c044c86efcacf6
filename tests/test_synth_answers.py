"""Synthesized questionnaire responses are valid answers to their instrument."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.instruments.catalog import get_instrument
from prolo.instruments.questionnaire import questionnaire_item_ids
from prolo.portal.answers import score_complete
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.synth import PAIN_NRS_LINK_ID, SynthConfig, generate

TODAY = dt.date(2026, 6, 1)


def test_the_pain_link_id_is_the_questionnaires() -> None:
    assert questionnaire_item_ids("pain-nrs") == (PAIN_NRS_LINK_ID,)


def test_synthesized_responses_validate_against_their_instrument(session: Session) -> None:
    summary = generate(session, SynthConfig(patients=12, seed=11, today=TODAY))
    rows = session.execute(
        select(QuestionnaireResponse, Score)
        .join(Score, Score.response_id == QuestionnaireResponse.id)
        .where(QuestionnaireResponse.clinic_id == summary.clinic_id)
    ).all()
    assert rows, "the synthetic clinic answered no questionnaire"
    for response, score in rows:
        instrument = get_instrument(response.instrument_id)
        # Every answer is keyed by one of the Questionnaire's linkIds ...
        assert set(response.answers) <= set(questionnaire_item_ids(instrument.id))
        # ... passes the portal's own checks, and scores to the stored value.
        scored = score_complete(instrument, response.answers)
        assert scored[score.score_key].value == score.value
