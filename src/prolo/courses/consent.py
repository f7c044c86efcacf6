"""The informed-consent text for a prolotherapy course, as versioned, sourced data.

A consent records which version of this text the patient was shown and which statements
they acknowledged; every statement marked ``required`` must be acknowledged before the
first session. Statements that carry a clinical fact cite where it was read
(CLINICAL-SOURCES.md: ``source``, ``url``, ``locator``, ``grade``). Changing a statement
means a new version: consents already given keep pointing at the words the patient saw.

Honest limits of the sources, stated so a reviewer can improve them:

- Regulatory status: no page from the FDA or another regulator was found in the stored
  sources (docs/clinical-content.md, section 3). The statement that prolotherapy is not
  FDA-approved is required by the product brief (issue 5) and is cited to a newspaper
  report and an insurer's policy, both secondary; replace them with a regulator's page
  once one is read.
- Risks: the prolotherapy-specific sources are a university prolotherapy group's safety
  page (which teaches prolotherapy: a stated conflict of interest) and a practitioner
  survey on back and neck prolotherapy (Dagenais 2006), whose estimates come from
  practitioners' recall, not from trials.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONSENT_TEXTS", "CURRENT_VERSION", "ConsentStatement", "ConsentText", "Source"]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a statement's clinical content was read."""

    source: str
    url: str
    locator: str
    grade: str  # "primary" or "secondary"
    note: str = ""


@dataclass(frozen=True, slots=True)
class ConsentStatement:
    """One statement the patient acknowledges, in plain words."""

    id: str
    text: str
    required: bool = True
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsentText:
    """A version of the consent text."""

    version: str
    title: str
    statements: tuple[ConsentStatement, ...]

    def statement(self, statement_id: str) -> ConsentStatement:
        """The statement with this id; KeyError naming it when unknown."""
        for statement in self.statements:
            if statement.id == statement_id:
                return statement
        raise KeyError(f"consent text {self.version} has no statement {statement_id!r}")

    @property
    def required_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.statements if s.required)


_UW_PEARL = (
    "University of Wisconsin Department of Family Medicine and Community Health, UW "
    "Prolotherapy Education and Research Lab (UW-PEARL): prolotherapy safety"
)
_UW_PEARL_URL = "https://fammed.wisc.edu/?p=17684"
_UW_PEARL_COI = "Written by a group that teaches and researches prolotherapy."
_DAGENAIS = (
    "Dagenais S, Ogunseitan O, Haldeman S, Wooley JR, Newcomb RL. Side effects and adverse "
    "events related to intraligamentous injection of sclerosing solutions (prolotherapy) for "
    "back and neck pain: a survey of practitioners. Arch Phys Med Rehabil. 2006;87(7):909-913. "
    "PMID 16813776. doi:10.1016/j.apmr.2006.03.017"
)
_DAGENAIS_URL = "https://pesquisa.bvsalud.org/portal/resource/e/mdl-16813776"
_DAGENAIS_NOTE = (
    "Postal survey of 171 practitioners (50% response) about back and neck prolotherapy; "
    "prevalences are practitioners' estimates."
)

V1 = ConsentText(
    version="2026-11-v1",
    title="Consent to a course of prolotherapy injections",
    statements=(
        ConsentStatement(
            id="not-fda-approved",
            text=(
                "Prolotherapy is not an FDA-approved treatment for my condition. Health "
                "insurers such as Aetna consider it experimental and investigational, "
                "because there is not enough evidence that it works."
            ),
            sources=(
                Source(
                    source=(
                        "The Advocate (Baton Rouge), news feature on prolotherapy quoting a "
                        "local pain-management physician"
                    ),
                    url=(
                        "http://www.theadvocate.com/baton_rouge/entertainment_life/"
                        "article_27b731f5-0b7e-529b-a3d3-78302e910cee.html"
                    ),
                    locator="'Prolotherapy isn't approved by the Food and Drug Administration'",
                    grade="secondary",
                    note=(
                        "A newspaper, not a regulator: no FDA page was found in the stored "
                        "sources. Replace with a regulator's statement once one is read."
                    ),
                ),
                Source(
                    source="Aetna. Clinical Policy Bulletin 0207: Prolotherapy and Sclerotherapy",
                    url="http://www.aetna.com/cpb/medical/data/200_299/0207.html",
                    locator=(
                        "Policy: 'Aetna considers prolotherapy ... experimental and "
                        "investigational for all indications ... because there is inadequate "
                        "evidence of its effectiveness'"
                    ),
                    grade="secondary",
                    note="An insurer's coverage policy: context on evidence, not regulation.",
                ),
            ),
        ),
        ConsentStatement(
            id="pain-flare",
            text=(
                "Pain, stiffness and a feeling of fullness at the injected places are common "
                "after a session. The pain can flare for a few days: in clinical trials about "
                "1 in 10 people had pain lasting up to 3 days. It usually settles by itself."
            ),
            sources=(
                Source(
                    source=_UW_PEARL,
                    url=_UW_PEARL_URL,
                    locator=(
                        "'Post-injection pain that persists after prolotherapy session for up to "
                        "72 hours is less common, with clinical trials reporting that "
                        "approximately 10% of participants experience such pain. This is "
                        "typically self-limited'"
                    ),
                    grade="secondary",
                    note=_UW_PEARL_COI,
                ),
                Source(
                    source=_DAGENAIS,
                    url=_DAGENAIS_URL,
                    locator=(
                        "Abstract, Results: side effects with the highest median estimated "
                        "prevalence were pain (70%), stiffness (25%), and bruising (5%)"
                    ),
                    grade="primary",
                    note=_DAGENAIS_NOTE,
                ),
            ),
        ),
        ConsentStatement(
            id="bleeding",
            text=(
                "The needle can cause bleeding or bruising where it goes in. Serious bleeding "
                "is rare; the risk is higher if I take blood-thinning medicines, so I have "
                "told the clinic about every medicine I take."
            ),
            sources=(
                Source(
                    source=_UW_PEARL,
                    url=_UW_PEARL_URL,
                    locator=(
                        "'The main risk of injection-based therapy is pain, and mild bleeding or "
                        "bruising as an outcome of needle-related trauma'"
                    ),
                    grade="secondary",
                    note=_UW_PEARL_COI,
                ),
                Source(
                    source=_DAGENAIS,
                    url=_DAGENAIS_URL,
                    locator=(
                        "Abstract, Results: of 472 reported adverse events, most related to "
                        "needle injuries, including hemorrhage (n=27)"
                    ),
                    grade="primary",
                    note=_DAGENAIS_NOTE,
                ),
                Source(
                    source=(
                        "Moss Healthcare (NHS general practice, Harrogate). Steroid joint "
                        "injections information (patient leaflet)"
                    ),
                    url="https://www.mosshealthcare-harrogate.nhs.uk/steroid-joint-injections-information/",
                    locator=(
                        "Severe side effects: bleeding into the joint ... particularly if you "
                        "take blood thinning medication"
                    ),
                    grade="secondary",
                    note="Steroid joint injections, not prolotherapy specifically.",
                ),
            ),
        ),
        ConsentStatement(
            id="infection",
            text=(
                "Any injection can cause an infection. The clinic uses sterile technique to "
                "keep this risk low. If the injected area becomes hot, red and swollen, or I "
                "get a fever, I will contact the clinic the same day."
            ),
            sources=(
                Source(
                    source=_UW_PEARL,
                    url=_UW_PEARL_URL,
                    locator=(
                        "'All injection procedures, including prolotherapy, carry the risk of "
                        "infection ... this risk is minimized by following appropriate "
                        "infection control procedures'"
                    ),
                    grade="secondary",
                    note=_UW_PEARL_COI,
                ),
                Source(
                    source=(
                        "Moss Healthcare (NHS general practice, Harrogate). Steroid joint "
                        "injections information (patient leaflet)"
                    ),
                    url="https://www.mosshealthcare-harrogate.nhs.uk/steroid-joint-injections-information/",
                    locator=(
                        "Severe side effects: joint infection: red, hot, swollen joint, extreme "
                        "pain on movement, fevers"
                    ),
                    grade="secondary",
                    note="Steroid joint injections, not prolotherapy specifically.",
                ),
            ),
        ),
        ConsentStatement(
            id="nerve-irritation",
            text=(
                "The needle can irritate a nerve and cause numbness, tingling or burning near "
                "the injected place. This is usually short-lived; lasting nerve injury has "
                "been reported but is rare."
            ),
            sources=(
                Source(
                    source=_UW_PEARL,
                    url=_UW_PEARL_URL,
                    locator=(
                        "'Patients may report pain, tissue fullness and occasional numbness at "
                        "the injection site at the time of therapy. These symptoms are "
                        "typically self-limited and short-lived'"
                    ),
                    grade="secondary",
                    note=_UW_PEARL_COI,
                ),
                Source(
                    source=_DAGENAIS,
                    url=_DAGENAIS_URL,
                    locator=(
                        "Abstract, Results: 472 adverse events reported, including nerve damage "
                        "(n=54) and 5 that resulted in permanent injury secondary to nerve "
                        "injury; practitioners had given a median of 2000 treatments each"
                    ),
                    grade="primary",
                    note=_DAGENAIS_NOTE,
                ),
            ),
        ),
        ConsentStatement(
            id="evidence-explained",
            text=(
                "My clinician has explained what is known about prolotherapy for my "
                "condition, including how uncertain the evidence is, and the other treatments "
                "I could choose instead."
            ),
        ),
        ConsentStatement(
            id="questions-and-withdrawal",
            text=(
                "I have been able to ask questions and have had them answered. I can stop "
                "the course at any time without it affecting the rest of my care."
            ),
        ),
    ),
)

CURRENT_VERSION = V1.version
CONSENT_TEXTS: dict[str, ConsentText] = {V1.version: V1}
