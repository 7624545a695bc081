"""Cautions: pitfalls in the work-up and treatment.

Sources: BILLER2014 and RUSHTON2023 (no manipulation while dissection is
suspected); ICHD-3 and NAKASHIMA2015 (imaging findings are common without
symptoms; no imaging criteria); JULL2002, BINI2022, BLANPIED2017, COTE2019
(physical therapy before invasive procedures; its components); NAJA2006 and
VADOD2023 (insufficient evidence for repeated occipital blocks); BEAR2017 and
ICHD-3 (occipital headache in children and the place of MRI).

When: cervical artery dissection was derived
Then: caution.manipulation_contraindicated (EMERGENT).
When: an imaging study shows degenerative changes
Then: caution.imaging_not_diagnostic.
When: an occipital block, facet or epidural injection is recorded without >= 6 weeks of
      physical therapy
Then: caution.physical_therapy_first.
When: >= 2 occipital nerve block sessions
Then: caution.repeated_occipital_blocks.
When: physical therapy components are given and lack manual therapy, strengthening or
      motor control
Then: caution.incomplete_physical_therapy.
When: under 18, pain starts in the neck and does not radiate forward, no MRI
Then: caution.pediatric_occipital_pain (advisory; does not block treatment).
"""

from __future__ import annotations

from typing import Any

from durable.lang import c, m

from kb.facts import PhysicalTherapyComponent
from kb.model import Certainty, Evidence, Kind, Match, Rule, RuleGroup, Stage, Urgency
from kb.rules.mimics import ADULT_AGE, DISSECTION_CODE
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
PT_COMPONENTS: tuple[PhysicalTherapyComponent, ...] = (
    "manual_therapy",
    "strengthening",
    "motor_control",
)
COMPONENT_LABELS = {
    "manual_therapy": "manual therapy",
    "strengthening": "strengthening",
    "motor_control": "motor control",
}

MANIPULATION_CONTRAINDICATED = Rule(
    id="CAU-01",
    code="caution.manipulation_contraindicated",
    kind=Kind.CAUTION,
    urgency=Urgency.EMERGENT,
    title="No cervical manipulation",
    detail=(
        "Cervical artery dissection is suspected: no cervical manipulation until dissection "
        "is excluded."
    ),
    fires_when="Cervical artery dissection was derived.",
    citations=("BILLER2014", "RUSHTON2023"),
    evidence=Evidence(
        "Consensus: screen before manual therapy; do not proceed when vascular pathology is "
        "suspected.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.DERIVED,
    when=((c.dissection << concluded(DISSECTION_CODE),),),
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
    citations=("NAJA2006", "VADOD2023"),
    evidence=Evidence(
        "Guideline finds insufficient evidence for repeated blocks; one small RCT of a short "
        "course.",
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


def _incomplete_detail(match: Match) -> str:
    missing = [
        COMPONENT_LABELS[component]
        for therapy in match.read_of("treatment")
        for component in PT_COMPONENTS
        if component not in (therapy.components or ())
    ]
    return (
        f"The physical therapy programme lacks {', '.join(missing)}. Guidelines recommend "
        "combining manual therapy with strengthening and motor-control exercise, although "
        "the combination has not been shown to beat either part alone."
    )


def _lacks_a_component() -> Any:
    expression = getattr(m.components, PT_COMPONENTS[0]) == False  # noqa: E712
    for component in PT_COMPONENTS[1:]:
        expression = expression | (getattr(m.components, component) == False)  # noqa: E712
    return expression


INCOMPLETE_PHYSICAL_THERAPY = Rule(
    id="CAU-05",
    code="caution.incomplete_physical_therapy",
    kind=Kind.CAUTION,
    title="Physical therapy programme incomplete",
    detail=_incomplete_detail,
    fires_when=(
        "The physical therapy components are given and lack any of manual therapy, "
        "strengthening or motor control."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=Evidence(
        "The combination is what the seed guideline and BLANPIED2017 recommend, while "
        "JULL2002 found it not significantly better than either part alone.",
        Certainty.LOW,
    ),
    stage=Stage.FINDINGS,
    when=((c.physical_therapy << treatment(PHYSICAL_THERAPY) & _lacks_a_component(),),),
)

PEDIATRIC_OCCIPITAL_PAIN = Rule(
    id="CAU-06",
    code="caution.pediatric_occipital_pain",
    kind=Kind.CAUTION,
    title="Occipital pain in a child or adolescent",
    detail=(
        "In children, MRI is useful only to exclude structural pathology such as a Chiari "
        "malformation; occipital location alone with a normal examination is low-yield. "
        "Advisory: it does not block treatment."
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
        "BILLER2014, RUSHTON2023, ICHD-3, NAKASHIMA2015, JULL2002, BLANPIED2017, NAJA2006, "
        "VADOD2023, BEAR2017: pitfalls to avoid."
    ),
    rules=(
        MANIPULATION_CONTRAINDICATED,
        IMAGING_NOT_DIAGNOSTIC,
        PHYSICAL_THERAPY_FIRST,
        REPEATED_OCCIPITAL_BLOCKS,
        INCOMPLETE_PHYSICAL_THERAPY,
        PEDIATRIC_OCCIPITAL_PAIN,
    ),
)
