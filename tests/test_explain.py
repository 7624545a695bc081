"""Explain: why and why not, for every code, agreeing with the engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.cli import main
from kb.engine import RulesEngine
from kb.explain import Explanation, UnknownCode, explain
from kb.facts import FactIn, validate_facts
from kb.scenarios import Scenario, load_scenarios
from server.app import RunningServer
from tests.conftest import to_proto_facts

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = [s for s in load_scenarios() if not s.error]
POTS = json.loads((ROOT / "examples" / "pots-mimic.json").read_text())["facts"]


def _codes(explanation: Explanation) -> set[str]:
    return {explanation.code} | set().union(*(_codes(link) for link in explanation.chain))


@pytest.mark.parametrize("scenario", SCENARIOS[::4], ids=[s.name for s in SCENARIOS[::4]])
def test_explanations_agree_with_the_engine_for_every_code(
    engine: RulesEngine, scenario: Scenario
) -> None:
    """Every code, fired or not: a rule fired exactly when one alternative held
    in full, and the code is derived exactly when the engine derives it."""
    facts = validate_facts(list(scenario.facts))
    derived = {c.code: c for c in engine.evaluate(facts).conclusions}
    for rule in engine.rules:
        explanation = explain(engine, facts, rule.code)
        assert explanation.derived == (rule.code in derived)
        assert explanation.conclusion == derived.get(rule.code)
        (result,) = explanation.rules
        assert result.fired == (rule.code in derived)
        for alternative in result.alternatives:
            assert alternative.held == all(c.held for c in alternative.conditions)
        if not result.fired:
            assert all(
                any(not c.held for c in alternative.conditions)
                for alternative in result.alternatives
            )


def test_every_code_is_explained_fired_and_not_fired(engine: RulesEngine) -> None:
    fired, not_fired = set(), set()
    for scenario in SCENARIOS:
        facts = validate_facts(list(scenario.facts))
        derived = {c.code for c in engine.evaluate(facts).conclusions}
        for rule in engine.rules:
            if (rule.code in fired and rule.code in not_fired) or (
                rule.code in (fired if rule.code in derived else not_fired)
            ):
                continue
            explanation = explain(engine, facts, rule.code)
            (fired if explanation.derived else not_fired).add(rule.code)
    codes = {rule.code for rule in engine.rules}
    assert fired == codes
    assert not_fired == codes


def test_why_not_names_the_mimic_and_the_values(engine: RulesEngine) -> None:
    facts = validate_facts([FactIn(f["id"], f["type"], f["fields"]) for f in POTS])
    step = explain(engine, facts, "step.physical_therapy")
    assert not step.derived
    (rule,) = step.rules
    failing = [c for c in rule.alternatives[0].conditions if not c.held]
    assert [c.description for c in failing] == ["no conclusion of kind MIMIC_SUSPECTED derived"]
    assert [candidate.id for candidate in failing[0].candidates] == ["mimic.pots"]
    assert {"dx.cervicogenic_headache_supported", "mimic.pots"} <= _codes(step)
    pots = next(link for link in step.chain if link.code == "mimic.pots")
    adolescent, adult, unknown_age = pots.rules[0].alternatives
    assert (adolescent.held, adult.held, unknown_age.held) == (False, True, False)
    vitals = adolescent.conditions[0].candidates[0].tests[0]
    assert vitals.description == "standing_hr_bpm >= supine_hr_bpm + 40"
    assert vitals.observed == {"standing_hr_bpm": 101, "supine_hr_bpm": 62}
    assert not vitals.held


def test_unknown_code_is_refused(engine: RulesEngine) -> None:
    with pytest.raises(UnknownCode):
        explain(engine, [], "mimic.nothing")


def test_explain_over_grpc(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    answer = stub.Explain(
        pb.ExplainRequest(facts=to_proto_facts(POTS), code="step.physical_therapy"), timeout=10
    )
    assert answer.code == "step.physical_therapy"
    assert not answer.derived
    assert [link.code for link in answer.chain] == [
        "dx.cervicogenic_headache_supported",
        "mimic.pots",
        "info.red_flag_screen",
    ]
    (rule,) = answer.rules
    kinds = [condition.kind for condition in rule.alternatives[0].conditions]
    assert kinds == [
        pb.CONDITION_KIND_CONCLUSION,  # the diagnosis
        pb.CONDITION_KIND_NO_CONCLUSION,  # no mimic
        pb.CONDITION_KIND_NO_CONCLUSION,  # a complete red-flag screen
        pb.CONDITION_KIND_NO_FACT,  # no physical therapy
        pb.CONDITION_KIND_FACT,  # the patient, whose age chooses the wording
    ]
    assert answer.chain[1].derived
    assert answer.chain[1].conclusion.code == "mimic.pots"
    assert not answer.chain[2].derived, "the example's red-flag screen is complete"


@pytest.mark.parametrize(
    ("code", "facts"),
    [("mimic.unknown", POTS), ("mimic.pots", [{"id": "p", "type": "patient", "fields": {}}])],
)
def test_explain_rejects_bad_requests(
    stub: pb_grpc.DecisionSupportServiceStub, code: str, facts: list
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Explain(pb.ExplainRequest(facts=to_proto_facts(facts), code=code), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    reasons = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert reasons == (["UNKNOWN_CODE"] if code == "mimic.unknown" else ["FACT_INVALID"])


def test_cli_explain_prints_pertinent_negatives(running_server: RunningServer) -> None:
    out = io.StringIO()
    status = main(
        [
            "--target",
            f"127.0.0.1:{running_server.port}",
            "explain",
            str(ROOT / "examples" / "pots-mimic.json"),
            "step.physical_therapy",
        ],
        stdout=out,
    )
    assert status == 0
    text = out.getvalue()
    assert text.startswith("step.physical_therapy: NOT derived\n")
    assert "- no conclusion of kind MIMIC_SUSPECTED derived" in text
    assert "but found mimic.pots" in text
    assert "not standing_hr_bpm >= supine_hr_bpm + 40 (saw" in text


def test_explain_shows_the_values_the_caller_sent(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    """Hardening II, item 6: a number the engine cannot parse is moved to 1e-4 for
    the engine, but Explain shows what the caller sent, not that stand-in."""
    facts = [
        {"id": "p", "type": "patient", "fields": {"age_years": 40}},
        {
            "id": "h",
            "type": "headache",
            "fields": {
                "improvement_lying_down_pct": 60,
                "improvement_lying_down_within_hours": 1e-05,
            },
        },
    ]
    code = "mimic.spontaneous_intracranial_hypotension"
    answer = stub.Explain(pb.ExplainRequest(facts=to_proto_facts(facts), code=code), timeout=10)
    assert answer.derived
    shown = [
        dict(test.observed)
        for rule in answer.rules
        for alternative in rule.alternatives
        for condition in alternative.conditions
        for candidate in condition.candidates
        for test in candidate.tests
    ]
    field = "improvement_lying_down_within_hours"
    within = [values[field] for values in shown if field in values]
    assert within and all(value == 1e-05 for value in within)
