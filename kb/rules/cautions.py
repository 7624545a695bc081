"""Cautions: pitfalls in the work-up and treatment.

Sources: BILLER2014 and RUSHTON2023 (no manipulation while dissection is
suspected; new headache after neck trauma or manipulation is a classic
presentation of dissection); DO2019 (thunderclap onset); ICHD-3 and
NAKASHIMA2015 (imaging findings are common without symptoms; no imaging
criteria); JULL2002, BINI2022, BLANPIED2017, COTE2019 (physical therapy before
invasive procedures); NAJA2006, BOGDUK2009 and VADOD2023 (insufficient evidence
for repeated occipital blocks); BEAR2017 and ICHD-3 (occipital headache in
children and the place of MRI).

When: cervical artery dissection or a thunderclap headache was derived, or
      recent neck trauma or manipulation
Then: caution.manipulation_contraindicated (EMERGENT).
When: an imaging study shows degenerative changes
Then: caution.imaging_not_diagnostic.
When: an occipital block, facet or epidural injection is recorded without >= 6 weeks of
      physical therapy
Then: caution.physical_therapy_first.
When: >= 2 occipital nerve block sessions
Then: caution.repeated_occipital_blocks.
When: under 18, pain starts in the neck and does not radiate forward, no MRI
Then: caution.pediatric_occipital_pain.
"""

from __future__ import annotations

from typing import Any

from durable.lang import c, m

from kb.model import (
    Certainty,
    ComputedDetail,
    DetailPart,
    Evidence,
    Kind,
    Match,
    Rule,
    RuleGroup,
    Stage,
    Urgency,
)
from kb.rules.mimics import ADULT_AGE, DISSECTION_CODE, THUNDERCLAP_CODE
from kb.rules.patterns import absent, concluded, fact, is_false, is_true, treatment
from kb.rules.treatment import (
    EPIDURAL_INJECTION,
    FACET_INJECTION,
    OCCIPITAL_BLOCK,
    PHYSICAL_THERAPY,
    PHYSICAL_THERAPY_CITATIONS,
    PT_MINIMUM_WEEKS,
)

REPEATED_BLOCK_SESSIONS = 2


def _concluded_in_match(code: str) -> Any:
    return lambda match: code in match.derived_from


MANIPULATION_CONTRAINDICATED = Rule(
    id="CAU-01",
    code="caution.manipulation_contraindicated",
    kind=Kind.CAUTION,
    urgency=Urgency.EMERGENT,
    title="No cervical manipulation",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Cervical artery dissection is suspected.",
                "cervical artery dissection was derived",
                _concluded_in_match(DISSECTION_CODE),
            ),
            DetailPart(
                "A thunderclap headache can be caused by cervical artery dissection.",
                "a thunderclap headache was derived",
                _concluded_in_match(THUNDERCLAP_CODE),
            ),
            DetailPart(
                "New headache after neck trauma or manipulation is a classic presentation of "
                "cervical artery dissection.",
                "recent neck trauma or manipulation",
                lambda match: bool(match.read_of("red_flags")),
            ),
            DetailPart("No cervical manipulation until dissection is excluded{after_trauma}."),
        ),
        values=lambda match: {
            "after_trauma": " (after trauma, also fracture and instability)"
            if match.read_of("red_flags")
            else ""
        },
        placeholders=(
            (
                "after_trauma",
                '" (after trauma, also fracture and instability)" after recent neck trauma or '
                "manipulation, otherwise nothing",
            ),
        ),
    ),
    fires_when=(
        "Cervical artery dissection or a thunderclap headache was derived, or there was recent "
        "neck trauma or manipulation."
    ),
    citations=("BILLER2014", "RUSHTON2023", "DO2019"),
    evidence=Evidence(
        "Consensus: screen before manual therapy; do not proceed when vascular pathology is "
        "suspected.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.DERIVED,
    when=(
        (c.dissection << concluded(DISSECTION_CODE),),
        (c.thunderclap << concluded(THUNDERCLAP_CODE),),
        (c.red_flags << fact("red_flags") & is_true("recent_neck_trauma"),),
    ),
)

IMAGING_NOT_DIAGNOSTIC = Rule(
    id="CAU-02",
    code="caution.imaging_not_diagnostic",
    kind=Kind.CAUTION,
    title="Degenerative imaging findings are not diagnostic",
    detail=(
        "Degenerative changes are common in people without symptoms; there are no imaging "
        "criteria for cervicogenic headache, so such findings neither confirm nor explain it."
    ),
    fires_when="An imaging study shows degenerative changes.",
    citations=("ICHD3", "NAKASHIMA2015"),
    evidence=Evidence(
        "Large cohort of asymptomatic adults (NAKASHIMA2015) and consensus (ICHD-3).",
        Certainty.MODERATE,
    ),
    stage=Stage.FINDINGS,
    when=((c.imaging << fact("imaging") & (m.finding == "degenerative_changes"),),),
)

PHYSICAL_THERAPY_FIRST = Rule(
    id="CAU-03",
    code="caution.physical_therapy_first",
    kind=Kind.CAUTION,
    title="Physical therapy before invasive procedures",
    detail=(
        f"An invasive procedure is recorded without {PT_MINIMUM_WEEKS} weeks of physical "
        "therapy: physical therapy comes first in the stepped algorithm."
    ),
    fires_when=(
        "A greater occipital nerve block, facet joint injection or cervical epidural steroid "
        f"injection is recorded while there is no physical therapy of at least "
        f"{PT_MINIMUM_WEEKS} weeks."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=Evidence(
        "Physical therapy has the better evidence (JULL2002, BINI2022) and guideline support "
        "as first line (BLANPIED2017, COTE2019).",
        Certainty.LOW,
    ),
    stage=Stage.FINDINGS,
    when=(
        (
            c.procedure << fact("treatment")
            & (
                (m.kind == OCCIPITAL_BLOCK)
                | (m.kind == FACET_INJECTION)
                | (m.kind == EPIDURAL_INJECTION)
            ),
            absent(treatment(PHYSICAL_THERAPY) & (m.weeks >= PT_MINIMUM_WEEKS)),
        ),
    ),
)

REPEATED_OCCIPITAL_BLOCKS = Rule(
    id="CAU-04",
    code="caution.repeated_occipital_blocks",
    kind=Kind.CAUTION,
    title="Repeated occipital blocks",
    detail=(
        "Evidence is insufficient that repeated occipital nerve blocks prevent chronic "
        "symptoms; their relief is short-term."
    ),
    fires_when=f"At least {REPEATED_BLOCK_SESSIONS} greater occipital nerve block sessions.",
    citations=("NAJA2006", "BOGDUK2009", "VADOD2023"),
    evidence=Evidence(
        "A guideline finds insufficient evidence for repeated blocks (VADOD2023, from migraine); "
        "the one trial in cervicogenic headache followed a short course for 2 weeks (NAJA2006).",
        Certainty.LOW,
    ),
    stage=Stage.FINDINGS,
    when=(
        (
            c.occipital_block << treatment(OCCIPITAL_BLOCK)
            & (m.sessions >= REPEATED_BLOCK_SESSIONS),
        ),
    ),
)


def _normal_examination(match: Match) -> bool:
    return match.any_fact("red_flags", focal_neurological_deficit=False)


PEDIATRIC_OCCIPITAL_PAIN = Rule(
    id="CAU-06",
    code="caution.pediatric_occipital_pain",
    kind=Kind.CAUTION,
    title="Occipital pain in a child or adolescent",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "With a normal neurological examination, occipital location alone is low-yield "
                "for imaging.",
                "a focal neurological deficit is given as absent (a normal examination)",
                _normal_examination,
            ),
            DetailPart(
                "Examine the child first, including a full neurological examination.",
                "otherwise (no examination recorded)",
                lambda match: not _normal_examination(match),
            ),
            DetailPart(
                "Either way, image (MRI) when the examination is abnormal, attacks are provoked "
                "by cough or Valsalva or are very brief, or there are brainstem or cerebellar "
                "signs."
            ),
        ),
    ),
    fires_when=(
        f"Age under {ADULT_AGE}, the pain starts in the neck, it does not radiate to the eye, "
        "forehead or temple (given as false), and no MRI has been done."
    ),
    citations=("BEAR2017", "ICHD3"),
    evidence=Evidence(
        "One retrospective paediatric imaging study (BEAR2017) and consensus.", Certainty.LOW
    ),
    stage=Stage.FINDINGS,
    when=(
        (
            c.patient << fact("patient") & (m.age_years < ADULT_AGE),
            c.headache << fact("headache")
            & is_true("starts_in_neck")
            & is_false("radiates_oculo_fronto_temporal"),
            absent(fact("imaging") & (m.modality == "mri")),
        ),
    ),
)

GROUP = RuleGroup(
    name="cautions",
    source=(
        "BILLER2014, RUSHTON2023, DO2019, ICHD-3, NAKASHIMA2015, JULL2002, BLANPIED2017, "
        "NAJA2006, BOGDUK2009, VADOD2023, BEAR2017: pitfalls to avoid."
    ),
    rules=(
        MANIPULATION_CONTRAINDICATED,
        IMAGING_NOT_DIAGNOSTIC,
        PHYSICAL_THERAPY_FIRST,
        REPEATED_OCCIPITAL_BLOCKS,
        PEDIATRIC_OCCIPITAL_PAIN,
    ),
)
