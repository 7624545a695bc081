"""The published conclusion codes (version 2, the clinical safety revision).

The catalogue is the contract clients program against: every code here must be
produced by exactly one rule, and every rule must produce a code from here with
this kind and urgency (`kb.lint` checks both). Add the code here first.
"""

from __future__ import annotations

from kb.model import Kind, Urgency

CATALOGUE: dict[str, tuple[Kind, Urgency]] = {
    "dx.cervicogenic_headache_supported": (Kind.DIAGNOSIS_SUPPORTED, Urgency.ROUTINE),
    "mimic.orthostatic_hypotension": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.pots": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.spontaneous_intracranial_hypotension": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.migraine": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.cervical_artery_dissection": (Kind.MIMIC_SUSPECTED, Urgency.EMERGENT),
    "mimic.secondary_headache": (Kind.MIMIC_SUSPECTED, Urgency.URGENT),
    "mimic.thunderclap_headache": (Kind.MIMIC_SUSPECTED, Urgency.EMERGENT),
    "mimic.emergency_red_flag": (Kind.MIMIC_SUSPECTED, Urgency.EMERGENT),
    "mimic.chiari_malformation": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.trigeminal_autonomic_cephalalgia": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "mimic.medication_overuse_headache": (Kind.MIMIC_SUSPECTED, Urgency.ROUTINE),
    "step.physical_therapy": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.adjunct_exercise": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.continue_physical_therapy": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.maintain_and_reassess": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.greater_occipital_nerve_block": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.specialist_referral": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "step.amitriptyline": (Kind.NEXT_TREATMENT_STEP, Urgency.ROUTINE),
    "caution.manipulation_contraindicated": (Kind.CAUTION, Urgency.EMERGENT),
    "caution.imaging_not_diagnostic": (Kind.CAUTION, Urgency.ROUTINE),
    "caution.physical_therapy_first": (Kind.CAUTION, Urgency.ROUTINE),
    "caution.repeated_occipital_blocks": (Kind.CAUTION, Urgency.ROUTINE),
    "caution.pediatric_occipital_pain": (Kind.CAUTION, Urgency.ROUTINE),
    "info.cervical_exam": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
    "info.orthostatic_vitals": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
    "info.positional_response": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
    "info.physical_therapy_progress": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
    "info.patient_age": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
    "info.red_flag_screen": (Kind.INFORMATION_NEEDED, Urgency.ROUTINE),
}
