"""Information needed: what is missing to confirm the diagnosis or exclude a mimic.

Sources: CHISG1998 and ICHD-3 (the examination completes the criteria);
FREEMAN2011 and SHELDON2015 (orthostatic vitals and age decide OH and POTS);
CHEEMA2023 and ICHD-3 (the positional history screens for intracranial
hypotension); DO2019 and RUSHTON2023 (the red-flag screen comes before any
treatment); JULL2002, BINI2022, BLANPIED2017, COTE2019 (the weeks and response
of physical therapy choose the next step).

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
When: diagnosis supported and the red-flag screen is incomplete (no red_flags fact, a
      red_flags field not given, or the headache's onset not given)
Then: info.red_flag_screen (names every missing item; no step fires meanwhile).
"""

from __future__ import annotations

from durable.lang import c, m

from kb.model import Certainty, ComputedDetail, DetailPart, Evidence, Kind, Rule, RuleGroup, Stage
from kb.rules.diagnosis import DIAGNOSIS_CITATIONS, headache_pattern_and_provocation
from kb.rules.mimics import SIH_IMPROVEMENT_PCT, SIH_WITHIN_HOURS
from kb.rules.patterns import DIAGNOSIS, absent, any_missing, concluded, fact, is_missing, treatment
from kb.rules.screen import ONSET_LABEL, RED_FLAG_LABELS, SCREEN_FIELDS, listing, missing_items
from kb.rules.treatment import (
    PHYSICAL_THERAPY,
    PHYSICAL_THERAPY_CITATIONS,
    PHYSICAL_THERAPY_EVIDENCE,
    PT_MINIMUM_WEEKS,
    RED_FLAG_SCREEN_CODE,
    with_diagnosis_and_no_mimic,
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
        "(range of motion; cervical spine, paraspinal and suboccipital tenderness) to complete "
        "the criteria."
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
        "Ask how much, and how soon, the headache improves after lying flat: more than "
        f"{SIH_IMPROVEMENT_PCT} % within {SIH_WITHIN_HOURS} h suggests spontaneous intracranial "
        "hypotension, and a negative answer does not exclude it."
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
            c.headache << fact("headache") & is_missing("improvement_lying_down_pct"),
        ),
        (
            c.diagnosis << concluded(DIAGNOSIS),
            c.headache << fact("headache")
            & (m.improvement_lying_down_pct > SIH_IMPROVEMENT_PCT)
            & is_missing("improvement_lying_down_within_hours"),
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
        (
            *with_diagnosis_and_no_mimic(),
            c.physical_therapy << treatment(PHYSICAL_THERAPY) & is_missing("weeks"),
        ),
        (
            *with_diagnosis_and_no_mimic(),
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
        "Give the patient's age: the POTS heart-rate threshold, the migraine duration window "
        "and the choice of treatment (manipulation, amitriptyline) depend on it."
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
    code=RED_FLAG_SCREEN_CODE,
    kind=Kind.INFORMATION_NEEDED,
    title="Red-flag screen incomplete",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Complete the red-flag screen; not yet recorded: {missing}. No treatment step "
                "is given until every item is answered: treatment, and cervical manipulation "
                "above all, comes only after a negative screen."
            ),
        ),
        values=lambda match: {"missing": listing(missing_items(match))},
        placeholders=(
            (
                "missing",
                "every item not given, in this order: "
                + ", ".join(RED_FLAG_LABELS[name] for name in SCREEN_FIELDS)
                + f", {ONSET_LABEL}",
            ),
        ),
    ),
    fires_when=(
        "Diagnosis supported and the red-flag screen is incomplete: no red-flag screen, one of "
        "its items not given (true or false), or the headache's onset not given."
    ),
    citations=("DO2019", "RUSHTON2023", "COTE2019"),
    evidence=Evidence(
        "Consensus red-flag list (SNNOOP10) and screening framework before manual therapy.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.DERIVED,
    when=(
        (c.diagnosis << concluded(DIAGNOSIS), absent(fact("red_flags"))),
        (
            c.diagnosis << concluded(DIAGNOSIS),
            c.red_flags << fact("red_flags") & any_missing(*SCREEN_FIELDS),
        ),
        (c.diagnosis << concluded(DIAGNOSIS), c.headache << fact("headache") & is_missing("onset")),
    ),
)

GROUP = RuleGroup(
    name="information",
    source=(
        "CHISG1998, ICHD-3, FREEMAN2011, SHELDON2015, CHEEMA2023, DO2019, RUSHTON2023, "
        "JULL2002: what is still needed to decide."
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
