"""Facts the transport tests share: a headache and an exam that together support
the diagnosis (the clinical scenarios themselves live in kb/scenarios)."""

from typing import Any

HEADACHE: dict[str, Any] = {
    "id": "h",
    "type": "headache",
    "fields": {
        "laterality": "unilateral",
        "side_locked": True,
        "starts_in_neck": True,
        "radiates_oculo_fronto_temporal": True,
        "provoked_by_occipital_pressure": True,
    },
}
EXAM: dict[str, Any] = {
    "id": "x",
    "type": "cervical_exam",
    "fields": {"rom_reduced": True, "myofascial_sensitivity": True},
}


def patient(age: int) -> dict[str, Any]:
    return {"id": "p", "type": "patient", "fields": {"age_years": age}}
