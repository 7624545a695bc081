"""Property: a stream's changes, applied in order, always equal a fresh Evaluate.

Hypothesis streams random batches (asserts, replacements, retractions, some of
them invalid or conditional on a wrong version) into a session over gRPC. A
plain model of the fact set predicts whether each batch is applied; after
every applied batch, the conclusions the client holds (the opening set with
every streamed change applied) must equal `Evaluate` on the model's facts, and
the version must count the applied batches. Re-opening at the end must show
the same conclusions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.api import BatchApplied, CdsClient, Conclusion
from kb.facts import FactIn, InvalidFacts, validate_facts
from server.app import RunningServer, ServerConfig, create_server

PT = "physical_therapy"
VARIANTS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "p": ("patient", [{"age_years": 35}, {"age_years": 12}, {"age_years": 61, "sex": "female"}]),
    "h": (
        "headache",
        [
            {
                "laterality": "unilateral",
                "side_locked": True,
                "starts_in_neck": True,
                "radiates_oculo_fronto_temporal": True,
                "provoked_by_occipital_pressure": True,
                "provoked_by_neck_movement": True,
            },
            {"onset": "sudden", "intensity": "severe", "laterality": "unilateral"},
            {
                "laterality": "unilateral",
                "pulsating": True,
                "nausea_or_vomiting": True,
                "photophobia": True,
                "phonophobia": True,
                "attack_count": 12,
                "attack_duration_hours": 12,
                "tension_type_features_prominent": True,
            },
            {"improvement_lying_down_pct": 90, "improvement_lying_down_within_hours": 0.5},
        ],
    ),
    "x": ("cervical_exam", [{"rom_reduced": True, "myofascial_sensitivity": True}, {}]),
    "x2": ("cervical_exam", [{"rom_reduced": True, "myofascial_sensitivity": True}]),
    "v": (
        "orthostatic_vitals",
        [
            {
                "supine_hr_bpm": 70,
                "standing_hr_bpm": 80,
                "supine_sbp_mmhg": 120,
                "standing_sbp_mmhg": 118,
                "supine_dbp_mmhg": 80,
                "standing_dbp_mmhg": 82,
            },
            {
                "supine_hr_bpm": 62,
                "standing_hr_bpm": 101,
                "supine_sbp_mmhg": 118,
                "standing_sbp_mmhg": 116,
                "supine_dbp_mmhg": 76,
                "standing_dbp_mmhg": 78,
            },
        ],
    ),
    "r": (
        "red_flags",
        [{"horner_syndrome": False, "recent_neck_trauma": False}, {"horner_syndrome": True}],
    ),
    "i1": (
        "imaging",
        [{"modality": "mri", "region": "cervical_spine", "finding": "degenerative_changes"}],
    ),
    "i2": ("imaging", [{"modality": "mri", "region": "brain", "finding": "chiari_malformation"}]),
    "t-pt": (
        "treatment",
        [
            {"kind": PT, "weeks": 3, "response": "pending"},
            {"kind": PT, "weeks": 6, "response": "inadequate"},
            {"kind": PT, "weeks": 8, "response": "adequate"},
        ],
    ),
    "t-pt2": ("treatment", [{"kind": PT, "weeks": 2, "response": "pending"}]),
    "t-walk": ("treatment", [{"kind": "aerobic_exercise", "weeks": 6, "response": "inadequate"}]),
    "t-gon": (
        "treatment",
        [{"kind": "greater_occipital_nerve_block", "sessions": 1, "response": "inadequate"}],
    ),
    "t-ami": ("treatment", [{"kind": "amitriptyline", "weeks": 4, "response": "pending"}]),
}
IDS = sorted(VARIANTS)
INVALID = {"age_years": 400}  # asserted under "p": a bad value rejects the whole batch


def fact(fact_id: str, variant: int, invalid: bool) -> dict[str, Any]:
    fact_type, options = VARIANTS[fact_id]
    fields = INVALID if invalid and fact_id == "p" else options[variant % len(options)]
    return {"id": fact_id, "type": fact_type, "fields": fields}


facts_strategy = st.one_of(
    st.lists(
        st.builds(fact, st.sampled_from(IDS), st.integers(0, 3), st.just(False)),
        max_size=4,
        unique_by=lambda f: f["id"],
    ),
    st.lists(st.builds(fact, st.sampled_from(IDS), st.integers(0, 3), st.just(False)), max_size=3),
)


def retractions(held: list[str]) -> st.SearchStrategy[list[str]]:
    """Mostly ids the session holds; now and then one it does not, or one twice."""
    if not held:
        return st.one_of(st.just([]), st.lists(st.sampled_from(IDS), max_size=1))
    known = st.sampled_from(held)
    return st.one_of(
        st.just([]),
        st.lists(known, max_size=2, unique=True),
        st.lists(st.one_of(known, st.sampled_from(IDS)), max_size=3),
    )


@pytest.fixture(scope="module")
def cds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdsClient]:
    db: Path = tmp_path_factory.mktemp("property") / "sessions.db"
    running: RunningServer = create_server(ServerConfig(port=0, session_db=str(db)))
    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10) as client:
            yield client
    finally:
        running.stop(grace=1)


def evaluated(cds: CdsClient, facts: list[dict[str, Any]]) -> dict[str, Conclusion]:
    return {e.code: e for e in cds.evaluate(facts) if isinstance(e, Conclusion)}


def predict(
    held: dict[str, dict[str, Any]], retract: list[str], facts: list[dict[str, Any]]
) -> dict[str, dict[str, Any]] | None:
    """The fact set after the batch, in session order, or None if it must be rejected."""
    if len(set(retract)) != len(retract) or not set(retract) <= set(held):
        return None
    after = {fact_id: f for fact_id, f in held.items() if fact_id not in retract}
    ids = [f["id"] for f in facts]
    if len(set(ids)) != len(ids):
        return None
    for f in facts:
        after[f["id"]] = f  # an existing id keeps its place, a new one goes last
    try:
        validate_facts([FactIn(f["id"], f["type"], f["fields"]) for f in after.values()])
    except InvalidFacts:
        return None
    return after


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), count=st.integers(1, 8))
def test_streamed_changes_reproduce_a_fresh_evaluate(
    cds: CdsClient, data: st.DataObject, count: int
) -> None:
    held: dict[str, dict[str, Any]] = {}
    with cds.session() as session:
        assert session.conclusions == {}
        version = applied = 0
        for _ in range(count):
            retract = data.draw(retractions(list(held)), label="retract")
            facts = data.draw(facts_strategy, label="assert")
            if data.draw(st.integers(0, 9), label="invalid") == 0:
                facts.append(fact("p", 0, invalid=True))
            condition = data.draw(st.sampled_from(["none", "none", "right", "wrong"]))
            expected = {"none": 0, "right": version, "wrong": version + 2}[condition]
            after = predict(held, retract, facts)
            if condition == "wrong":
                after = None
            result = session.apply(facts, retract, expected_version=expected)
            assert isinstance(result.outcome, BatchApplied) == (after is not None), result.outcome
            applied += after is not None
            if after is None:
                assert result.changes == () and session.version == version
                continue
            version += 1
            held = after
            assert session.version == version
            assert {c.version for c in result.changes} <= {version}
            assert session.conclusions == evaluated(cds, list(held.values()))
        final = dict(session.conclusions)
        event(f"{applied} of {count} batches applied")
    with cds.session(session.session_id) as reopened:
        assert reopened.version == version
        assert reopened.conclusions == final
    cds.delete_session(session.session_id)
