"""Treatment: the next step of the stepped algorithm.

Sources: JULL2002 (a 6-week programme of manipulative therapy and exercise,
reassessed at 3, 6 and 12 months; the combination not significantly better than
either alone), BINI2022 (manual and exercise therapy: larger effects short-term
than long-term), BLANPIED2017 and COTE2019 (exercise and/or manual therapy; rule
out structural pathology and migraine first); BILLER2014 and RUSHTON2023
(screen before manipulation; discuss the rare association with dissection);
VADOD2023 (aerobic exercise and strength training); NAJA2006 and BOGDUK2009
(occipital nerve block: short-term relief, not a diagnostic test); BOGDUK2009,
GOVIND2003, WANG2014 and FDA2014 (specialist care: controlled diagnostic blocks
and radiofrequency neurotomy; the risks of epidural steroid injections);
BENDTSEN2010 (amitriptyline for chronic tension-type headache, in adults).

Every step requires the diagnosis, no mimic (exclude mimics first) and a
complete red-flag screen. The screen is judged once, by `info.red_flag_screen`:
given the diagnosis it is derived exactly when the screen is incomplete, so a
step requires that it was *not* derived, and Explain shows the missing items.
"Physical therapy failed" means at least 6 weeks of it with an inadequate response.

When: no physical therapy yet                 Then: step.physical_therapy
      (exercise-based, without manipulation, under 18 or with age unknown).
When: no aerobic exercise yet                  Then: step.adjunct_exercise.
When: physical therapy for under 6 weeks       Then: step.continue_physical_therapy.
When: >= 6 weeks with an adequate response     Then: step.maintain_and_reassess.
When: physical therapy failed, no occipital block yet
Then: step.greater_occipital_nerve_block.
When: physical therapy failed and the occipital block was inadequate
Then: step.specialist_referral.
When: prominent tension-type features, an adult, no amitriptyline yet
Then: step.amitriptyline.
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
)
from kb.rules.patterns import DIAGNOSIS, absent, concluded, fact, is_true, no_mimic, treatment

PT_MINIMUM_WEEKS = 6
ADULT_AGE = 18
RED_FLAG_SCREEN_CODE = "info.red_flag_screen"

PHYSICAL_THERAPY = "physical_therapy"
AEROBIC_EXERCISE = "aerobic_exercise"
OCCIPITAL_BLOCK = "greater_occipital_nerve_block"
FACET_INJECTION = "facet_joint_injection"
EPIDURAL_INJECTION = "cervical_epidural_steroid_injection"
AMITRIPTYLINE = "amitriptyline"

PHYSICAL_THERAPY_CITATIONS = ("JULL2002", "BINI2022", "BLANPIED2017", "COTE2019")
MANIPULATION_SAFETY_CITATIONS = ("BILLER2014", "RUSHTON2023")
PHYSICAL_THERAPY_EVIDENCE = Evidence(
    "One RCT (JULL2002) and a meta-analysis with moderate-to-large short-term but small "
    "long-term effects (BINI2022); guideline support (BLANPIED2017, COTE2019).",
    Certainty.LOW,
)


def with_diagnosis_and_no_mimic() -> tuple[Any, ...]:
    """The diagnosis was derived and no mimic was."""
    return (c.diagnosis << concluded(DIAGNOSIS), no_mimic())


def eligible() -> tuple[Any, ...]:
    """The gate of every step: diagnosis, no mimic, and a complete red-flag screen
    (`info.red_flag_screen`, derived in an earlier stage, was not)."""
    return (*with_diagnosis_and_no_mimic(), absent(concluded(RED_FLAG_SCREEN_CODE)))


def physical_therapy_failed() -> Any:
    return (
        treatment(PHYSICAL_THERAPY) & (m.weeks >= PT_MINIMUM_WEEKS) & (m.response == "inadequate")
    )


def inadequate(kind: str) -> Any:
    return treatment(kind) & (m.response == "inadequate")


def _adult(match: Match) -> bool:
    """Known to be an adult: the evidence for manual therapy is in adults."""
    return any(patient.age_years >= ADULT_AGE for patient in match.read_of("patient"))


PHYSICAL_THERAPY_STEP = Rule(
    id="STP-01",
    code="step.physical_therapy",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Start physical therapy",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Start physical therapy: low-load craniocervical and cervicoscapular exercise "
                "and/or manual therapy (mobilisation; manipulation only after vascular screening "
                "and after discussing with the patient its rare association with cervical artery "
                "dissection).",
                f"the patient is {ADULT_AGE} or older",
                _adult,
            ),
            DetailPart(
                "Start exercise-based physical therapy without spinal manipulation: low-load "
                "craniocervical and cervicoscapular exercise (the evidence for manual therapy is "
                "in adults).",
                f"the patient is under {ADULT_AGE}, or the age is unknown",
                lambda match: not _adult(match),
            ),
            DetailPart(
                f"The main trial used a {PT_MINIMUM_WEEKS}-week course; reassess at 3, 6 and 12 "
                "months."
            ),
        ),
    ),
    fires_when=(
        "Diagnosis supported, no mimic, a complete red-flag screen, and no physical therapy "
        f"recorded (exercise-based, without manipulation, under {ADULT_AGE} or when the age is "
        "unknown)."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS + MANIPULATION_SAFETY_CITATIONS,
    evidence=PHYSICAL_THERAPY_EVIDENCE,
    stage=Stage.TREATMENT,
    # Two alternatives so that the patient, whose age chooses the wording, is in the
    # provenance when there is one.
    when=(
        (*eligible(), absent(treatment(PHYSICAL_THERAPY)), c.patient << fact("patient")),
        (*eligible(), absent(treatment(PHYSICAL_THERAPY)), absent(fact("patient"))),
    ),
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
    fires_when=(
        "Diagnosis supported, no mimic, a complete red-flag screen, and no aerobic exercise "
        "recorded."
    ),
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
        f"not move on to injections before {PT_MINIMUM_WEEKS} weeks. Reassess at once if new "
        "neurological symptoms, red flags or marked worsening appear, especially after "
        "manipulation."
    ),
    fires_when=(
        f"Diagnosis supported, no mimic, a complete red-flag screen, and physical therapy has "
        f"run for less than {PT_MINIMUM_WEEKS} weeks (any response)."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS + MANIPULATION_SAFETY_CITATIONS,
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
        f"Diagnosis supported, no mimic, a complete red-flag screen, and at least "
        f"{PT_MINIMUM_WEEKS} weeks of physical therapy with an adequate response."
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
        "anaesthetic with or without corticosteroid), which may give short-term relief (one "
        "small trial of combined occipital blocks, outcome at 2 weeks). A single uncontrolled "
        "response does not confirm a cervical source."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, a complete red-flag screen, physical therapy failed (at "
        f"least {PT_MINIMUM_WEEKS} weeks, inadequate response), and no occipital nerve block "
        "recorded."
    ),
    citations=("NAJA2006", "BOGDUK2009"),
    evidence=Evidence(
        "One small RCT (n = 50) of combined greater and lesser occipital blocks with a 2-week "
        "outcome; no trial of a greater occipital block alone in cervicogenic headache.",
        Certainty.VERY_LOW,
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

SPECIALIST_REFERRAL = Rule(
    id="STP-07",
    code="step.specialist_referral",
    kind=Kind.NEXT_TREATMENT_STEP,
    title="Refer to a headache or pain specialist",
    detail=(
        "Physical therapy and an occipital nerve block have not helped enough: refer to a "
        "headache or pain specialist. Controlled diagnostic blocks (third occipital nerve, C2-3 "
        "medial branch) and, when they are positive, radiofrequency neurotomy have the best "
        "interventional evidence. Intra-articular facet and cervical epidural steroid "
        "injections have weak evidence and rare but serious risks (the FDA warned in 2014 of "
        "loss of vision, stroke, paralysis and death after epidural corticosteroid injections)."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, a complete red-flag screen, physical therapy failed, "
        "and the occipital nerve block response was inadequate."
    ),
    citations=("BOGDUK2009", "GOVIND2003", "WANG2014", "FDA2014"),
    evidence=Evidence(
        "Good practice (consensus) to refer after first-line treatment fails; not a claim that "
        "injections work: controlled blocks and neurotomy rest on uncontrolled series "
        "(BOGDUK2009, GOVIND2003), epidural steroids on no randomised trial (WANG2014).",
        Certainty.CONSENSUS,
    ),
    stage=Stage.TREATMENT,
    when=(
        (
            *eligible(),
            c.physical_therapy << physical_therapy_failed(),
            c.occipital_block << inadequate(OCCIPITAL_BLOCK),
        ),
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
        "headache, not cervicogenic headache. Check contraindications first: cardiac "
        "conduction disease, age 65 or over, suicide risk, pregnancy, orthostatic hypotension."
    ),
    fires_when=(
        "Diagnosis supported, no mimic, a complete red-flag screen, tension-type features are "
        f"prominent, the patient is {ADULT_AGE} or older, and no amitriptyline recorded."
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
            c.patient << fact("patient") & (m.age_years >= ADULT_AGE),
            absent(treatment(AMITRIPTYLINE)),
        ),
    ),
)

GROUP = RuleGroup(
    name="treatment",
    source=(
        "JULL2002, BINI2022, BLANPIED2017, COTE2019, BILLER2014, RUSHTON2023, VADOD2023, "
        "NAJA2006, BOGDUK2009, GOVIND2003, WANG2014, FDA2014, BENDTSEN2010: the stepped "
        "treatment algorithm, after a negative red-flag screen."
    ),
    rules=(
        PHYSICAL_THERAPY_STEP,
        ADJUNCT_EXERCISE,
        CONTINUE_PHYSICAL_THERAPY,
        MAINTAIN_AND_REASSESS,
        OCCIPITAL_NERVE_BLOCK,
        SPECIALIST_REFERRAL,
        AMITRIPTYLINE_STEP,
    ),
)
