"""Treatment: the next step of the stepped algorithm.

Sources: JULL2002 (a 6-week programme of manipulative therapy and exercise,
reassessed at 3, 6 and 12 months), BINI2022 (manual and exercise therapy:
moderate-to-large effects short-term, small long-term), BLANPIED2017 and
COTE2019 (manual therapy with strengthening and endurance exercise; rule out
structural pathology and migraine first); VADOD2023 (aerobic exercise and
strength training; occipital nerve block for short-term relief; amitriptyline
for chronic tension-type headache); NAJA2006 (occipital nerve block);
BOGDUK2009 and WANG2014 (facet and epidural procedures, weak evidence);
BENDTSEN2010 (amitriptyline for chronic tension-type headache).

Every step requires the diagnosis and no mimic (exclude mimics first).
"Physical therapy failed" means at least 6 weeks of it with an inadequate response.

When: no physical therapy yet                 Then: step.physical_therapy.
When: no aerobic exercise yet                  Then: step.adjunct_exercise.
When: physical therapy for under 6 weeks       Then: step.continue_physical_therapy.
When: >= 6 weeks with an adequate response     Then: step.maintain_and_reassess.
When: physical therapy failed, no occipital block yet
Then: step.greater_occipital_nerve_block.
When: physical therapy failed, the block was inadequate, no facet or epidural injection yet
Then: step.percutaneous_intervention.
When: physical therapy failed, the block was inadequate, a facet or epidural injection inadequate
Then: step.specialist_referral.
When: prominent tension-type features, no amitriptyline yet
Then: step.amitriptyline.
"""

from __future__ import annotations

from typing import Any

from durable.lang import c, m

from kb.model import Certainty, Evidence, Kind, Rule, RuleGroup, Stage
from kb.rules.patterns import DIAGNOSIS, absent, concluded, fact, is_true, no_mimic, treatment

PT_MINIMUM_WEEKS = 6

PHYSICAL_THERAPY = "physical_therapy"
AEROBIC_EXERCISE = "aerobic_exercise"
OCCIPITAL_BLOCK = "greater_occipital_nerve_block"
FACET_INJECTION = "facet_joint_injection"
EPIDURAL_INJECTION = "cervical_epidural_steroid_injection"
AMITRIPTYLINE = "amitriptyline"

PHYSICAL_THERAPY_CITATIONS = ("JULL2002", "BINI2022", "BLANPIED2017", "COTE2019")
PHYSICAL_THERAPY_EVIDENCE = Evidence(
    "One RCT (JULL2002) and a meta-analysis with moderate-to-large short-term but small "
    "long-term effects (BINI2022); guideline support (BLANPIED2017, COTE2019).",
    Certainty.LOW,
)
INTERVENTION_CITATIONS = ("BOGDUK2009", "WANG2014")
INTERVENTION_EVIDENCE = Evidence(
    "Facet procedures rest on weak evidence and epidural steroid injection has no "
    "randomised trial.",
    Certainty.VERY_LOW,
)


def eligible() -> tuple[Any, ...]:
    """Diagnosis derived and no mimic: the gate of every step."""
    return (c.diagnosis << concluded(DIAGNOSIS), no_mimic())


def physical_therapy_failed() -> Any:
    return (
        treatment(PHYSICAL_THERAPY) & (m.weeks >= PT_MINIMUM_WEEKS) & (m.response == "inadequate")
    )


def inadequate(kind: str) -> Any:
    return treatment(kind) & (m.response == "inadequate")


PHYSICAL_THERAPY_STEP = Rule(
    id="STP-01",
    code="step.physical_therapy",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Start physical therapy",
    detail=(
        "Start therapist-driven physical therapy: cervical manipulation or mobilisation with "
        "cervico-scapular strengthening and motor-control exercises, for at least "
        f"{PT_MINIMUM_WEEKS} weeks; reassess at 3, 6 and 12 months."
    ),
    fires_when="Diagnosis supported, no mimic, and no physical therapy recorded.",
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=PHYSICAL_THERAPY_EVIDENCE,
    stage=Stage.TREATMENT,
    when=((*eligible(), absent(treatment(PHYSICAL_THERAPY))),),
)

ADJUNCT_EXERCISE = Rule(
    id="STP-02",
    code="step.adjunct_exercise",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Add aerobic exercise or strength training",
    detail=(
        "Consider aerobic exercise or progressive strength training alongside physical "
        "therapy; the evidence comes mostly from migraine and tension-type headache."
    ),
    fires_when="Diagnosis supported, no mimic, and no aerobic exercise recorded.",
    citations=("VADOD2023",),
    evidence=Evidence(
        "Guideline recommendation extrapolated from migraine and tension-type headache.",
        Certainty.LOW,
    ),
    stage=Stage.TREATMENT,
    when=((*eligible(), absent(treatment(AEROBIC_EXERCISE))),),
)

CONTINUE_PHYSICAL_THERAPY = Rule(
    id="STP-03",
    code="step.continue_physical_therapy",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Continue physical therapy",
    detail=(
        f"Physical therapy has run for less than {PT_MINIMUM_WEEKS} weeks: continue it; do "
        f"not judge the response or escalate before {PT_MINIMUM_WEEKS} weeks."
    ),
    fires_when=(
        f"Diagnosis supported, no mimic, and physical therapy has run for less than "
        f"{PT_MINIMUM_WEEKS} weeks (any response)."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=PHYSICAL_THERAPY_EVIDENCE,
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.physical_therapy << treatment(PHYSICAL_THERAPY) & (m.weeks < PT_MINIMUM_WEEKS),
        ),
    ),
)

MAINTAIN_AND_REASSESS = Rule(
    id="STP-04",
    code="step.maintain_and_reassess",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Maintain the home programme and reassess",
    detail=(
        "Physical therapy has helped: keep the home exercise programme and reassess at 3, 6 "
        "and 12 months."
    ),
    fires_when=(
        f"Diagnosis supported, no mimic, and at least {PT_MINIMUM_WEEKS} weeks of physical "
        "therapy with an adequate response."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=PHYSICAL_THERAPY_EVIDENCE,
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.physical_therapy << treatment(PHYSICAL_THERAPY)
            & (m.weeks >= PT_MINIMUM_WEEKS)
            & (m.response == "adequate"),
        ),
    ),
)

OCCIPITAL_NERVE_BLOCK = Rule(
    id="STP-05",
    code="step.greater_occipital_nerve_block",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Consider a greater occipital nerve block",
    detail=(
        "Physical therapy has failed: consider a greater occipital nerve block (local "
        "anaesthetic with or without corticosteroid) for short-term relief; it is diagnostic "
        "as well as therapeutic."
    ),
    fires_when=(
        f"Diagnosis supported, no mimic, physical therapy failed (at least {PT_MINIMUM_WEEKS} "
        "weeks, inadequate response), and no occipital nerve block recorded."
    ),
    citations=("NAJA2006", "VADOD2023"),
    evidence=Evidence(
        "One small RCT (n = 50) of short-term relief; guideline support for short-term use.",
        Certainty.LOW,
    ),
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.physical_therapy << physical_therapy_failed(),
            absent(treatment(OCCIPITAL_BLOCK)),
        ),
    ),
)

PERCUTANEOUS_INTERVENTION = Rule(
    id="STP-06",
    code="step.percutaneous_intervention",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Consider a percutaneous intervention",
    detail=(
        "Physical therapy and an occipital nerve block have failed: consider a facet joint "
        "injection or a cervical epidural steroid injection; evidence for both is weak."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, physical therapy failed, the occipital nerve block "
        "response was inadequate, and no facet joint or cervical epidural injection recorded."
    ),
    citations=INTERVENTION_CITATIONS,
    evidence=INTERVENTION_EVIDENCE,
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.physical_therapy << physical_therapy_failed(),
            c.occipital_block << inadequate(OCCIPITAL_BLOCK),
            absent(treatment(FACET_INJECTION)),
            absent(treatment(EPIDURAL_INJECTION)),
        ),
    ),
)

SPECIALIST_REFERRAL = Rule(
    id="STP-07",
    code="step.specialist_referral",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Refer to a headache or pain specialist",
    detail=(
        "Physical therapy, an occipital nerve block and a percutaneous intervention have not "
        "helped enough: refer to a headache or pain specialist."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, physical therapy failed, the occipital nerve block "
        "response was inadequate, and a facet joint or cervical epidural injection response "
        "was inadequate."
    ),
    citations=INTERVENTION_CITATIONS,
    evidence=INTERVENTION_EVIDENCE,
    stage=Stage.TREATMENT,
    when=tuple(
        (
            *eligible(),
            c.physical_therapy << physical_therapy_failed(),
            c.occipital_block << inadequate(OCCIPITAL_BLOCK),
            c.injection << inadequate(kind),
        )
        for kind in (FACET_INJECTION, EPIDURAL_INJECTION)
    ),
)

AMITRIPTYLINE_STEP = Rule(
    id="STP-08",
    code="step.amitriptyline",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Consider amitriptyline",
    detail=(
        "Tension-type features are prominent: consider amitriptyline, the first-choice "
        "preventive for chronic tension-type headache; its evidence is in tension-type "
        "headache, not cervicogenic headache."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, tension-type features are prominent, and no "
        "amitriptyline recorded."
    ),
    citations=("BENDTSEN2010", "VADOD2023"),
    evidence=Evidence(
        "Evidence is for chronic tension-type headache, extrapolated to coexisting features.",
        Certainty.LOW,
    ),
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.headache << fact("headache") & is_true("tension_type_features_prominent"),
            absent(treatment(AMITRIPTYLINE)),
        ),
    ),
)

GROUP = RuleGroup(
    name="treatment",
    source=(
        "JULL2002, BINI2022, BLANPIED2017, COTE2019, VADOD2023, NAJA2006, BOGDUK2009, "
        "WANG2014, BENDTSEN2010: the stepped treatment algorithm."
    ),
    rules=(
        PHYSICAL_THERAPY_STEP,
        ADJUNCT_EXERCISE,
        CONTINUE_PHYSICAL_THERAPY,
        MAINTAIN_AND_REASSESS,
        OCCIPITAL_NERVE_BLOCK,
        PERCUTANEOUS_INTERVENTION,
        SPECIALIST_REFERRAL,
        AMITRIPTYLINE_STEP,
    ),
)
