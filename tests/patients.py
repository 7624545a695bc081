"""Facts the transport tests share: a headache and an exam that together support
the diagnosis, and a complete negative red-flag screen that, with the headache's
onset, lets the treatment steps fire (the clinical scenarios themselves live in
kb/scenarios)."""

from typing import Any

from kb.facts import RedFlags

HEADACHE: dict[str, Any] = {
    "id": "h",
    "type": "headache",
    "fields": {
        "laterality": "unilateral",
        "side_locked": True,
        "starts_in_neck": True,
        "radiates_oculo_fronto_temporal": True,
        "provoked_by_occipital_pressure": True,
        "onset": "gradual",  # part of the red-flag screen
    },
}
EXAM: dict[str, Any] = {
    "id": "x",
    "type": "cervical_exam",
    # Myofascial sensitivity alone no longer supports the diagnosis.
    "fields": {
        "rom_reduced": True,
        "myofascial_sensitivity": True,
        "suboccipital_tenderness": True,
    },
}
# Every red flag asked and absent: built from the vocabulary, so a red flag added
# to it joins the screen.
NEGATIVE_SCREEN_FIELDS: dict[str, bool] = dict.fromkeys(RedFlags.model_fields, False)
NEGATIVE_SCREEN: dict[str, Any] = {
    "id": "r",
    "type": "red_flags",
    "fields": NEGATIVE_SCREEN_FIELDS,
}


def patient(age: int) -> dict[str, Any]:
    return {"id": "p", "type": "patient", "fields": {"age_years": age}}
