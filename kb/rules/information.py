"""Information needed: what is missing to confirm the diagnosis or exclude a mimic.

Sources: CHISG1998 and ICHD-3 (the examination completes the criteria);
FREEMAN2011 and SHELDON2015 (orthostatic vitals and age decide OH and POTS);
CHEEMA2023 and ICHD-3 (the positional history screens for intracranial
hypotension); DO2019 (red-flag screen); JULL2002, BINI2022, BLANPIED2017,
COTE2019 (the weeks and response of physical therapy choose the next step).

When: the headache pattern and provocation hold and there is no cervical exam
Then: info.cervical_exam.
When: diagnosis supported and no orthostatic vitals         Then: info.orthostatic_vitals.
When: diagnosis supported and the positional response is unknown (no percentage, or
      > 50 % without its timing)
Then: info.positional_response.
When: diagnosis supported, no mimic, physical therapy recorded without weeks, or with
      >= 6 weeks and a pending response
Then: info.physical_therapy_progress.
When: orthostatic vitals or a headache are given and there is no patient fact
Then: info.patient_age.
When: diagnosis supported and no red-flag screen             Then: info.red_flag_screen.
"""

from __future__ import annotations

from durable.lang import c, m

from kb.model import Certainty, Evidence, Kind, Rule, RuleGroup, Stage
from kb.rules.diagnosis import DIAGNOSIS_CITATIONS, headache_pattern_and_provocation
from kb.rules.mimics import SIH_IMPROVEMENT_PCT
from kb.rules.patterns import DIAGNOSIS, absent, concluded, fact, treatment
from kb.rules.treatment import (
    PHYSICAL_THERAPY,
    PHYSICAL_THERAPY_CITATIONS,
    PHYSICAL_THERAPY_EVIDENCE,
    PT_MINIMUM_WEEKS,
    eligible,
)

ORTHOSTATIC_CITATIONS = ("FREEMAN2011", "SHELDON2015")
ORTHOSTATIC_EVIDENCE = Evidence(
    "Consensus definitions need the lying-to-standing test and, for POTS, the age.",
    Certainty.CONSENSUS,
)

CERVICAL_EXAM = Rule(
    id="INF-01",
    code="info.cervical_exam",
    kind=Kind.INFORMATION_NEEDED,
    title="Cervical examination needed",
    detail=(
        "The headache pattern and provocation fit cervicogenic headache: examine the neck "
        "(range of motion; myofascial, cervical spine, paraspinal and suboccipital "
        "tenderness) to complete the criteria."
    ),
    fires_when=(
        "The headache pattern and provocation parts of the diagnosis hold and there is no "
        "cervical exam."
    ),
    citations=DIAGNOSIS_CITATIONS,
    evidence=Evidence("Consensus criteria require the examination.", Certainty.CONSENSUS),
    stage=Stage.FINDINGS,
    when=((c.headache << headache_pattern_and_provocation(), absent(fact("cervical_exam"))),),
)

ORTHOSTATIC_VITALS = Rule(
    id="INF-02",
    code="info.orthostatic_vitals",
    kind=Kind.INFORMATION_NEEDED,
    title="Orthostatic vitals needed",
    detail=(
        "Measure heart rate and blood pressure lying and after standing: POTS and orthostatic "
        "hypotension cannot be excluded without them."
    ),
    fires_when="Diagnosis supported and there are no orthostatic vitals.",
    citations=ORTHOSTATIC_CITATIONS,
    evidence=ORTHOSTATIC_EVIDENCE,
    stage=Stage.DERIVED,
    when=((c.diagnosis << concluded(DIAGNOSIS), absent(fact("orthostatic_vitals"))),),
)

POSITIONAL_RESPONSE = Rule(
    id="INF-03",
    code="info.positional_response",
    kind=Kind.INFORMATION_NEEDED,
    title="Positional response needed",
    detail=(
        "Ask how much, and how soon, the headache improves after lying flat: spontaneous "
        "intracranial hypotension cannot be excluded without it."
    ),
    fires_when=(
        "Diagnosis supported and the improvement after lying flat is not given, or it is "
        f"more than {SIH_IMPROVEMENT_PCT} % and how soon it comes is not given."
    ),
    citations=("CHEEMA2023", "ICHD3"),
    evidence=Evidence("Consensus history heuristic.", Certainty.CONSENSUS),
    stage=Stage.DERIVED,
    when=(
        (
            c.diagnosis << concluded(DIAGNOSIS),
            c.headache << fact("headache") & -m.improvement_lying_down_pct,
        ),
        (
            c.diagnosis << concluded(DIAGNOSIS),
            c.headache << fact("headache")
            & (m.improvement_lying_down_pct > SIH_IMPROVEMENT_PCT)
            & -m.improvement_lying_down_within_hours,
        ),
    ),
)

PHYSICAL_THERAPY_PROGRESS = Rule(
    id="INF-04",
    code="info.physical_therapy_progress",
    kind=Kind.INFORMATION_NEEDED,
    title="Physical therapy progress needed",
    detail="Record the weeks of physical therapy and the response to choose the next step.",
    fires_when=(
        "Diagnosis supported, no mimic, physical therapy recorded, and either its weeks are "
        f"not given or it has run at least {PT_MINIMUM_WEEKS} weeks with a pending response."
    ),
    citations=PHYSICAL_THERAPY_CITATIONS,
    evidence=PHYSICAL_THERAPY_EVIDENCE,
    stage=Stage.TREATMENT,
    when=(
        (*eligible(), c.physical_therapy << treatment(PHYSICAL_THERAPY) & -m.weeks),
        (
            *eligible(),
            c.physical_therapy << treatment(PHYSICAL_THERAPY)
            & (m.weeks >= PT_MINIMUM_WEEKS)
            & (m.response == "pending"),
        ),
    ),
)

PATIENT_AGE = Rule(
    id="INF-05",
    code="info.patient_age",
    kind=Kind.INFORMATION_NEEDED,
    title="Patient age needed",
    detail=(
        "Give the patient's age: the POTS heart-rate threshold and the migraine duration "
        "window depend on it."
    ),
    fires_when="Orthostatic vitals or a headache are given and there is no patient fact.",
    citations=ORTHOSTATIC_CITATIONS,
    evidence=ORTHOSTATIC_EVIDENCE,
    stage=Stage.FINDINGS,
    when=(
        (c.vitals << fact("orthostatic_vitals"), absent(fact("patient"))),
        (c.headache << fact("headache"), absent(fact("patient"))),
    ),
)

RED_FLAG_SCREEN = Rule(
    id="INF-06",
    code="info.red_flag_screen",
    kind=Kind.INFORMATION_NEEDED,
    title="Red-flag screen needed",
    detail="Screen for red flags of a secondary headache before treating.",
    fires_when="Diagnosis supported and there is no red-flag screen.",
    citations=("DO2019",),
    evidence=Evidence("Consensus red-flag list (SNNOOP10).", Certainty.CONSENSUS),
    stage=Stage.DERIVED,
    when=((c.diagnosis << concluded(DIAGNOSIS), absent(fact("red_flags"))),),
)

GROUP = RuleGroup(
    name="information",
    source=(
        "CHISG1998, ICHD-3, FREEMAN2011, SHELDON2015, CHEEMA2023, DO2019, JULL2002: what is "
        "still needed to decide."
    ),
    rules=(
        CERVICAL_EXAM,
        ORTHOSTATIC_VITALS,
        POSITIONAL_RESPONSE,
        PHYSICAL_THERAPY_PROGRESS,
        PATIENT_AGE,
        RED_FLAG_SCREEN,
    ),
)
