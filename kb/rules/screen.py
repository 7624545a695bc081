"""The red-flag screen: its items, how they read, and what makes it complete.

A screen is complete when the `red_flags` fact gives every one of its fields
(true or false) and the headache's onset is given: an absent field is an
unasked question, and treatment (manipulation above all) comes only after a
negative screen (RUSHTON2023, COTE2019). The items are the fields of the
`RedFlags` model, so a red flag added to the vocabulary joins the screen (a
test checks every field has a label here).
"""

from __future__ import annotations

from typing import Any

from kb.facts import RedFlags
from kb.model import Match

RED_FLAG_LABELS: dict[str, str] = {
    "horner_syndrome": "Horner syndrome",
    "focal_neurological_deficit": "a focal neurological deficit",
    "recent_neck_trauma": "recent neck trauma or manipulation",
    "fever_or_systemic_illness": "fever or systemic illness",
    "cancer_history": "a history of cancer",
    "papilledema": "papilloedema",
    "progressive_worsening": "progressive worsening",
    "pregnancy_or_postpartum": "pregnancy or the postpartum period",
    "immunosuppression": "immunosuppression",
    "new_onset_after_50": "onset after age 50",
    "pulsatile_tinnitus": "pulsatile tinnitus",
    "lower_cranial_nerve_palsy": "a lower cranial-nerve palsy",
    "transient_visual_loss_or_tia": "transient visual loss or a transient ischaemic attack",
    "posterior_circulation_symptoms": "posterior-circulation symptoms",
    "meningism": "meningism",
    "reduced_consciousness": "reduced consciousness",
    "painful_red_eye": "a painful red eye",
    "new_or_changed_headache": "a new or changed headache",
    "exertional_onset": "exertional onset",
}
SCREEN_FIELDS: tuple[str, ...] = tuple(RedFlags.model_fields)
ONSET_LABEL = "the onset of the headache (sudden or gradual)"


def listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def true_flags(match: Match, names: Any) -> list[str]:
    """Labels of the flags among `names` that the rule's red_flags fact gives as true."""
    return [
        RED_FLAG_LABELS[name]
        for flags in match.read_of("red_flags")
        for name in names
        if getattr(flags, name) is True
    ]


def missing_items(match: Match) -> list[str]:
    """Every screen item not given, in vocabulary order; onset last."""
    screens = match.all_of("red_flags")
    missing = [
        RED_FLAG_LABELS[name]
        for name in SCREEN_FIELDS
        if not screens or getattr(screens[0], name) is None
    ]
    if any(headache.onset is None for headache in match.all_of("headache")):
        missing.append(ONSET_LABEL)
    return missing
