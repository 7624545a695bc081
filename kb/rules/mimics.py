"""Mimics: conditions to exclude before treating cervicogenic headache.

Sources: FREEMAN2011 and SHELDON2015 (orthostatic hypotension, POTS; VERNINO2021
adds that POTS needs symptoms for 3 months and no other cause); CHEEMA2023 (the
differential of orthostatic headache and its "> 50 % better within 2 h of lying
flat" heuristic; ICHD-3 7.2.3 warns the orthostatic pattern cannot be relied
upon); ICHD-3 1.1 (migraine without aura) and COTE2019 (rule out migraine
first); BILLER2014 and RUSHTON2023 (the presenting features of cervical artery
dissection); DO2019 (SNNOOP10 red flags, the emergencies among them first) and
HUNDER1990 (giant-cell arteritis from age 50); ICHD-3 7.7 (Chiari
malformation), 3.4 (hemicrania continua) and 8.2 (medication overuse).

When: supine minus standing systolic >= 20 mmHg, or diastolic >= 10 mmHg
Then: mimic.orthostatic_hypotension.
When: standing minus supine heart rate >= 40 bpm at ages 12-19, >= 30 bpm from 20
      or with age unknown (never under 12), and orthostatic hypotension was not
      derived
Then: mimic.pots.
When: lying flat improves the headache by > 50 % within <= 2 h
Then: mimic.spontaneous_intracranial_hypotension.
When: >= 5 attacks of 4-72 h (2-72 h under 18), two of four pain features and
      nausea/vomiting or photophobia with phonophobia
Then: mimic.migraine.
When: Horner syndrome, pulsatile tinnitus, a lower cranial-nerve palsy, transient
      visual loss or TIA, or posterior-circulation symptoms
Then: mimic.cervical_artery_dissection (EMERGENT).
When: sudden (thunderclap) onset
Then: mimic.thunderclap_headache (EMERGENT).
When: a focal neurological deficit, papilloedema, meningism, reduced
      consciousness or a painful red eye
Then: mimic.emergency_red_flag (EMERGENT).
When: a structural lesion on imaging or any other SNNOOP10 red flag
Then: mimic.secondary_headache (URGENT).
When: a Chiari malformation on imaging, or cough/strain provocation with no MRI
Then: mimic.chiari_malformation.
When: side-locked unilateral headache with cranial autonomic features
Then: mimic.trigeminal_autonomic_cephalalgia.
When: medication overuse
Then: mimic.medication_overuse_headache.
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
from kb.rules.patterns import CONCLUSION, absent, any_true, concluded, fact, is_true
from kb.rules.screen import RED_FLAG_LABELS, listing, true_flags

OH_SYSTOLIC_DROP_MMHG = 20
OH_DIASTOLIC_DROP_MMHG = 10
POTS_HR_RISE_BPM = 30
POTS_HR_RISE_ADOLESCENT_BPM = 40
POTS_ADOLESCENT_MIN_AGE = 12
POTS_ADOLESCENT_MAX_AGE = 19
SIH_IMPROVEMENT_PCT = 50
SIH_WITHIN_HOURS = 2
MIGRAINE_MIN_ATTACKS = 5
MIGRAINE_MIN_HOURS = 4
MIGRAINE_MIN_HOURS_UNDER_18 = 2
MIGRAINE_MAX_HOURS = 72
ADULT_AGE = 18

ORTHOSTATIC_HYPOTENSION_CODE = "mimic.orthostatic_hypotension"
DISSECTION_CODE = "mimic.cervical_artery_dissection"

THUNDERCLAP_CODE = "mimic.thunderclap_headache"
DISSECTION_SIGNS = (
    "horner_syndrome",
    "pulsatile_tinnitus",
    "lower_cranial_nerve_palsy",
    "transient_visual_loss_or_tia",
    "posterior_circulation_symptoms",
)
EMERGENCY_RED_FLAGS = (
    "focal_neurological_deficit",
    "papilledema",
    "meningism",
    "reduced_consciousness",
    "painful_red_eye",
)
SECONDARY_RED_FLAGS = (
    "recent_neck_trauma",
    "fever_or_systemic_illness",
    "cancer_history",
    "progressive_worsening",
    "pregnancy_or_postpartum",
    "immunosuppression",
    "new_onset_after_50",
    "new_or_changed_headache",
    "exertional_onset",
)


ORTHOSTATIC_HYPOTENSION = Rule(
    id="MIM-01",
    code=ORTHOSTATIC_HYPOTENSION_CODE,
    kind=Kind.MIMIC_SUSPECTED,
    title="Orthostatic hypotension suspected",
    detail=(
        f"Blood pressure falls on standing by at least {OH_SYSTOLIC_DROP_MMHG} mmHg systolic or "
        f"{OH_DIASTOLIC_DROP_MMHG} mmHg diastolic: orthostatic hypotension can cause orthostatic "
        "headache and must be excluded before treating cervicogenic headache."
    ),
    fires_when=(
        f"Supine minus standing systolic pressure is at least {OH_SYSTOLIC_DROP_MMHG} mmHg, or "
        f"supine minus standing diastolic pressure is at least {OH_DIASTOLIC_DROP_MMHG} mmHg."
    ),
    citations=("FREEMAN2011", "CHEEMA2023"),
    evidence=Evidence(
        "Consensus definition (sustained fall within 3 min of standing).", Certainty.CONSENSUS
    ),
    stage=Stage.FINDINGS,
    when=(
        (
            c.vitals << fact("orthostatic_vitals")
            & (
                (m.supine_sbp_mmhg >= m.standing_sbp_mmhg + OH_SYSTOLIC_DROP_MMHG)
                | (m.supine_dbp_mmhg >= m.standing_dbp_mmhg + OH_DIASTOLIC_DROP_MMHG)
            ),
        ),
    ),
)


def _hr_rise(bpm: int) -> Any:
    return fact("orthostatic_vitals") & (m.standing_hr_bpm >= m.supine_hr_bpm + bpm)


def _no_orthostatic_hypotension() -> Any:
    return absent(concluded(ORTHOSTATIC_HYPOTENSION_CODE))


POTS = Rule(
    id="MIM-02",
    code="mimic.pots",
    kind=Kind.MIMIC_SUSPECTED,
    title="Postural orthostatic tachycardia syndrome suspected",
    detail=(
        f"Heart rate rises on standing by at least {POTS_HR_RISE_BPM} bpm "
        f"({POTS_HR_RISE_ADOLESCENT_BPM} bpm at ages {POTS_ADOLESCENT_MIN_AGE}-"
        f"{POTS_ADOLESCENT_MAX_AGE}) without orthostatic hypotension: consider POTS, which "
        "also requires symptoms for at least 3 months and no other cause."
    ),
    fires_when=(
        f"Standing minus supine heart rate is at least {POTS_HR_RISE_ADOLESCENT_BPM} bpm at "
        f"ages {POTS_ADOLESCENT_MIN_AGE}-{POTS_ADOLESCENT_MAX_AGE}, or at least "
        f"{POTS_HR_RISE_BPM} bpm from age {POTS_ADOLESCENT_MAX_AGE + 1} or when age is unknown "
        f"(never under {POTS_ADOLESCENT_MIN_AGE}), and orthostatic hypotension was not derived."
    ),
    citations=("FREEMAN2011", "SHELDON2015", "VERNINO2021", "CHEEMA2023"),
    evidence=Evidence(
        "Consensus heart-rate criteria; the stand test alone does not establish POTS.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.DERIVED,
    when=(
        (
            c.vitals << _hr_rise(POTS_HR_RISE_ADOLESCENT_BPM),
            c.patient << fact("patient")
            & (m.age_years >= POTS_ADOLESCENT_MIN_AGE)
            & (m.age_years <= POTS_ADOLESCENT_MAX_AGE),
            _no_orthostatic_hypotension(),
        ),
        (
            c.vitals << _hr_rise(POTS_HR_RISE_BPM),
            c.patient << fact("patient") & (m.age_years > POTS_ADOLESCENT_MAX_AGE),
            _no_orthostatic_hypotension(),
        ),
        (
            c.vitals << _hr_rise(POTS_HR_RISE_BPM),
            absent(fact("patient")),
            _no_orthostatic_hypotension(),
        ),
    ),
)

SPONTANEOUS_INTRACRANIAL_HYPOTENSION = Rule(
    id="MIM-03",
    code="mimic.spontaneous_intracranial_hypotension",
    kind=Kind.MIMIC_SUSPECTED,
    title="Spontaneous intracranial hypotension suspected",
    detail=(
        f"The headache improves by more than {SIH_IMPROVEMENT_PCT} % within "
        f"{SIH_WITHIN_HOURS} h of lying flat: consider spontaneous intracranial hypotension. "
        "This history is a heuristic only; the orthostatic pattern cannot be relied upon to "
        "confirm or exclude it."
    ),
    fires_when=(
        f"Lying flat improves the headache by more than {SIH_IMPROVEMENT_PCT} % within "
        f"{SIH_WITHIN_HOURS} hours or less."
    ),
    citations=("CHEEMA2023", "ICHD3"),
    evidence=Evidence("Consensus history heuristic, not a validated test.", Certainty.CONSENSUS),
    stage=Stage.FINDINGS,
    when=(
        (
            c.headache << fact("headache")
            & (m.improvement_lying_down_pct > SIH_IMPROVEMENT_PCT)
            & (m.improvement_lying_down_within_hours <= SIH_WITHIN_HOURS),
        ),
    ),
)


def _migraine_headache(min_hours: int) -> Any:
    """ICHD-3 1.1 B-D for one duration window: >= 5 attacks, 2 of 4, 1 of 2."""
    features = [
        m.laterality == "unilateral",
        is_true("pulsating"),
        (m.intensity == "moderate") | (m.intensity == "severe"),
        is_true("aggravated_by_routine_activity"),
    ]
    two_of_four = None
    for first in range(len(features)):
        for second in range(first + 1, len(features)):
            pair = features[first] & features[second]
            two_of_four = pair if two_of_four is None else two_of_four | pair
    return (
        fact("headache")
        & (m.attack_count >= MIGRAINE_MIN_ATTACKS)
        & (m.attack_duration_hours >= min_hours)
        & (m.attack_duration_hours <= MIGRAINE_MAX_HOURS)
        & two_of_four
        & (is_true("nausea_or_vomiting") | (is_true("photophobia") & is_true("phonophobia")))
    )


MIGRAINE = Rule(
    id="MIM-04",
    code="mimic.migraine",
    kind=Kind.MIMIC_SUSPECTED,
    title="Migraine suspected",
    detail=(
        "The attacks meet the ICHD-3 criteria for migraine without aura (number, duration, "
        "pain features and accompanying symptoms): rule out migraine before attributing the "
        "headache to the neck."
    ),
    fires_when=(
        f"At least {MIGRAINE_MIN_ATTACKS} attacks lasting {MIGRAINE_MIN_HOURS}-"
        f"{MIGRAINE_MAX_HOURS} h ({MIGRAINE_MIN_HOURS_UNDER_18}-{MIGRAINE_MAX_HOURS} h under "
        f"age {ADULT_AGE}; the adult window when age is unknown), with at least two of "
        "unilateral, pulsating, moderate or severe, aggravated by routine activity, and "
        "nausea/vomiting or both photophobia and phonophobia."
    ),
    citations=("ICHD3", "COTE2019"),
    evidence=Evidence("Consensus classification criteria.", Certainty.CONSENSUS),
    stage=Stage.FINDINGS,
    when=(
        (
            c.headache << _migraine_headache(MIGRAINE_MIN_HOURS_UNDER_18),
            c.patient << fact("patient") & (m.age_years < ADULT_AGE),
        ),
        (
            c.headache << _migraine_headache(MIGRAINE_MIN_HOURS),
            c.patient << fact("patient") & (m.age_years >= ADULT_AGE),
        ),
        (c.headache << _migraine_headache(MIGRAINE_MIN_HOURS), absent(fact("patient"))),
    ),
)


def _flag_given(name: str) -> Any:
    """A detail condition: the rule read a red_flags fact giving `name` as true."""
    return lambda match: any(getattr(flags, name) is True for flags in match.read_of("red_flags"))


CERVICAL_ARTERY_DISSECTION = Rule(
    id="MIM-05",
    code=DISSECTION_CODE,
    kind=Kind.MIMIC_SUSPECTED,
    urgency=Urgency.EMERGENT,
    title="Cervical artery dissection suspected",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Sign of cervical artery dissection: {signs}. Arrange emergency assessment with "
                "vascular imaging of the neck arteries; no cervical manipulation."
            ),
        ),
        values=lambda match: {"signs": listing(true_flags(match, DISSECTION_SIGNS))},
        placeholders=(
            (
                "signs",
                "the signs found: " + ", ".join(RED_FLAG_LABELS[name] for name in DISSECTION_SIGNS),
            ),
        ),
    ),
    fires_when=(
        "Horner syndrome, pulsatile tinnitus, a lower cranial-nerve palsy, transient visual "
        "loss or a transient ischaemic attack, or posterior-circulation symptoms."
    ),
    citations=("BILLER2014", "RUSHTON2023"),
    evidence=Evidence(
        "Consensus statements on the presenting features of cervical arterial dissection.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=((c.red_flags << fact("red_flags") & any_true(*DISSECTION_SIGNS),),),
)

THUNDERCLAP_HEADACHE = Rule(
    id="MIM-08",
    code=THUNDERCLAP_CODE,
    kind=Kind.MIMIC_SUSPECTED,
    urgency=Urgency.EMERGENT,
    title="Thunderclap headache",
    detail=(
        "Sudden (thunderclap) onset, peaking within a minute: subarachnoid haemorrhage until "
        "proven otherwise. Arrange an emergency CT of the head, then lumbar puncture and/or CT "
        "angiography. Other causes include cervical artery dissection, reversible cerebral "
        "vasoconstriction syndrome, cerebral venous thrombosis and pituitary apoplexy."
    ),
    fires_when="The headache's onset is sudden (thunderclap).",
    citations=("DO2019", "ICHD3"),
    evidence=Evidence(
        "Consensus red flag (SNNOOP10: sudden onset) and classification (ICHD-3).",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=((c.headache << fact("headache") & (m.onset == "sudden"),),),
)

EMERGENCY_RED_FLAG = Rule(
    id="MIM-09",
    code="mimic.emergency_red_flag",
    kind=Kind.MIMIC_SUSPECTED,
    urgency=Urgency.EMERGENT,
    title="Emergency red flag",
    detail=ComputedDetail(
        parts=(
            DetailPart("Emergency red flag: {flags}."),
            DetailPart(
                "A new focal neurological deficit: follow the acute stroke pathway now.",
                "a focal neurological deficit",
                _flag_given("focal_neurological_deficit"),
            ),
            DetailPart(
                "Papilloedema: same-day imaging for raised intracranial pressure.",
                "papilloedema",
                _flag_given("papilledema"),
            ),
            DetailPart(
                "Meningism or reduced consciousness: assess now for meningitis, encephalitis or "
                "haemorrhage.",
                "meningism or reduced consciousness",
                lambda match: (
                    _flag_given("meningism")(match) or _flag_given("reduced_consciousness")(match)
                ),
            ),
            DetailPart(
                "A painful red eye: exclude acute angle-closure glaucoma now.",
                "a painful red eye",
                _flag_given("painful_red_eye"),
            ),
        ),
        values=lambda match: {"flags": listing(true_flags(match, EMERGENCY_RED_FLAGS))},
        placeholders=(
            (
                "flags",
                "the flags found: "
                + ", ".join(RED_FLAG_LABELS[name] for name in EMERGENCY_RED_FLAGS),
            ),
        ),
    ),
    fires_when=(
        "A focal neurological deficit, papilloedema, meningism, reduced consciousness or a "
        "painful red eye."
    ),
    citations=("DO2019", "ICHD3"),
    evidence=Evidence(
        "Consensus red-flag list (SNNOOP10) and classification (ICHD-3).", Certainty.CONSENSUS
    ),
    stage=Stage.FINDINGS,
    when=((c.red_flags << fact("red_flags") & any_true(*EMERGENCY_RED_FLAGS),),),
)


def _secondary_flags(match: Match) -> dict[str, str]:
    found = true_flags(match, SECONDARY_RED_FLAGS)
    if any(image.finding == "structural_lesion" for image in match.read_of("imaging")):
        found.insert(0, "a structural lesion on imaging")
    return {"flags": listing(found)}


SECONDARY_HEADACHE = Rule(
    id="MIM-06",
    code="mimic.secondary_headache",
    kind=Kind.MIMIC_SUSPECTED,
    urgency=Urgency.URGENT,
    title="Secondary headache suspected",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Red flag for a secondary headache: {flags}. Investigate the secondary cause "
                "before attributing the headache to the neck."
            ),
            DetailPart(
                "Onset after 50: check ESR and CRP for giant-cell arteritis.",
                "onset after age 50",
                _flag_given("new_onset_after_50"),
            ),
        ),
        values=_secondary_flags,
        placeholders=(
            (
                "flags",
                "what was found: a structural lesion on imaging, "
                + ", ".join(RED_FLAG_LABELS[name] for name in SECONDARY_RED_FLAGS),
            ),
        ),
    ),
    fires_when=(
        "An imaging study shows a structural lesion, or any of these red flags is present: "
        "recent neck trauma or manipulation, fever or systemic illness, cancer history, "
        "progressive worsening, pregnancy or postpartum, immunosuppression, onset after 50, a "
        "new or changed headache, exertional onset."
    ),
    citations=("DO2019", "ICHD3", "HUNDER1990"),
    evidence=Evidence(
        "Consensus red-flag list (SNNOOP10); age 50 is the giant-cell arteritis criterion.",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=(
        (c.imaging << fact("imaging") & (m.finding == "structural_lesion"),),
        (c.red_flags << fact("red_flags") & any_true(*SECONDARY_RED_FLAGS),),
    ),
)


def _chiari_on_imaging(match: Match) -> bool:
    return any(image.finding == "chiari_malformation" for image in match.read_of("imaging"))


CHIARI_MALFORMATION = Rule(
    id="MIM-07",
    code="mimic.chiari_malformation",
    kind=Kind.MIMIC_SUSPECTED,
    title="Chiari malformation suspected",
    detail=ComputedDetail(
        parts=(
            DetailPart(
                "Imaging reports tonsillar descent (a Chiari malformation). It explains the "
                "headache only with the features ICHD-3 7.7 describes: provoked by cough or "
                "Valsalva, occipital, lasting under 5 minutes, or with brainstem or cerebellar "
                "signs. Exclude acquired descent from intracranial hypotension or raised "
                "intracranial pressure.",
                "imaging reports a Chiari malformation",
                _chiari_on_imaging,
            ),
            DetailPart(
                "Headache provoked by cough or straining can be caused by a Chiari malformation.",
                "the headache is provoked by cough or straining",
                lambda match: bool(match.read_of("headache")),
            ),
            DetailPart(
                "No MRI has been done: obtain MRI to exclude structural pathology.",
                "no MRI (of any region) has been done",
                lambda match: not match.any_fact("imaging", modality="mri"),
            ),
        ),
    ),
    fires_when=(
        "An imaging study shows a Chiari malformation, or the headache is provoked by cough "
        "or straining and no MRI (of any region) has been done."
    ),
    citations=("ICHD3",),
    evidence=Evidence("Consensus classification (ICHD-3 7.7).", Certainty.CONSENSUS),
    stage=Stage.FINDINGS,
    when=(
        (c.imaging << fact("imaging") & (m.finding == "chiari_malformation"),),
        (
            c.headache << fact("headache") & is_true("provoked_by_cough_or_strain"),
            absent(fact("imaging") & (m.modality == "mri")),
        ),
    ),
)

TRIGEMINAL_AUTONOMIC_CEPHALALGIA = Rule(
    id="MIM-10",
    code="mimic.trigeminal_autonomic_cephalalgia",
    kind=Kind.MIMIC_SUSPECTED,
    title="Trigeminal autonomic cephalalgia suspected",
    detail=(
        "Side-locked unilateral headache with ipsilateral cranial autonomic features: consider "
        "hemicrania continua and the other trigeminal autonomic cephalalgias; an indomethacin "
        "trial helps to decide (CHISG lists a poor response to indomethacin as a feature of "
        "cervicogenic headache)."
    ),
    fires_when=(
        "The headache is unilateral and side-locked, with ipsilateral cranial autonomic features."
    ),
    citations=("ICHD3", "CHISG1998"),
    evidence=Evidence(
        "Consensus classification (ICHD-3 3.4 hemicrania continua) and criteria (CHISG).",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=(
        (
            c.headache << fact("headache")
            & is_true("autonomic_features")
            & (m.laterality == "unilateral")
            & is_true("side_locked"),
        ),
    ),
)

MEDICATION_OVERUSE_HEADACHE = Rule(
    id="MIM-11",
    code="mimic.medication_overuse_headache",
    kind=Kind.MIMIC_SUSPECTED,
    title="Medication-overuse headache suspected",
    detail=(
        "Regular overuse of acute headache medication can itself cause chronic headache: "
        "withdraw or limit it before attributing the headache to the neck."
    ),
    fires_when=(
        "Acute headache medication is overused (10 or more days a month for triptans, opioids "
        "or combinations, 15 or more for simple analgesics, for more than 3 months)."
    ),
    citations=("ICHD3", "DO2019"),
    evidence=Evidence(
        "Consensus classification (ICHD-3 8.2) and red-flag list (SNNOOP10: painkiller overuse).",
        Certainty.CONSENSUS,
    ),
    stage=Stage.FINDINGS,
    when=((c.headache << fact("headache") & is_true("medication_overuse"),),),
)

GROUP = RuleGroup(
    name="mimics",
    source=(
        "FREEMAN2011, SHELDON2015, VERNINO2021, CHEEMA2023, ICHD-3, COTE2019, BILLER2014, "
        "RUSHTON2023, DO2019, HUNDER1990: exclude mimics, emergencies first, before treating."
    ),
    rules=(
        ORTHOSTATIC_HYPOTENSION,
        POTS,
        SPONTANEOUS_INTRACRANIAL_HYPOTENSION,
        MIGRAINE,
        CERVICAL_ARTERY_DISSECTION,
        THUNDERCLAP_HEADACHE,
        EMERGENCY_RED_FLAG,
        SECONDARY_HEADACHE,
        CHIARI_MALFORMATION,
        TRIGEMINAL_AUTONOMIC_CEPHALALGIA,
        MEDICATION_OVERUSE_HEADACHE,
    ),
)

__all__ = ["CONCLUSION", "DISSECTION_CODE", "GROUP", "THUNDERCLAP_CODE"]
