"""The engine's traps (shared/notes/durable-rules.md), each shown handled."""

from __future__ import annotations

import json
import random
import threading
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.engine import (
    BEGIN,
    DONE,
    EngineFailure,
    EvaluationCancelled,
    RulesEngine,
    _engine_number,
    _to_json,
    encode_fact,
)
from kb.facts import FACT_TYPES, MAX_FACTS_PER_REQUEST, Fact, FactIn, validate_facts
from kb.model import Stage
from kb.scenarios import load_scenarios
from tests.patients import NEGATIVE_SCREEN_FIELDS

HEADACHE = FactIn(
    "h",
    "headache",
    {
        "laterality": "unilateral",
        "side_locked": True,
        "starts_in_neck": True,
        "radiates_oculo_fronto_temporal": True,
        "provoked_by_neck_movement": True,
        "onset": "gradual",
    },
)
EXAM = FactIn("x", "cervical_exam", {"rom_reduced": True, "suboccipital_tenderness": True})
PATIENT = FactIn("p", "patient", {"age_years": 41})
# Every step needs a complete red-flag screen: every red flag given, and the onset.
SCREEN = FactIn("r", "red_flags", NEGATIVE_SCREEN_FIELDS)


def fnv1a_32(text: str) -> int:
    """durable_rules' fnv1Hash32 (src/rules/state.c), which keys facts by id."""
    value = 0x811C9DC5
    for byte in text.encode("ascii"):
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def codes(engine: RulesEngine, facts: list[FactIn]) -> list[str]:
    return [c.code for c in engine.evaluate(validate_facts(facts)).conclusions]


def test_engine_ids_have_distinct_32_bit_hashes(engine: RulesEngine) -> None:
    """Facts are matched by hash without a string compare: ids must never collide."""
    ids = [f"f{i}" for i in range(20 * MAX_FACTS_PER_REQUEST)]
    ids += [f"c{i}" for i in range(1, len(engine.rules) + 1)]
    ids += [f"s{i}" for i in range(BEGIN, DONE + 1)]
    assert len({fnv1a_32(i) for i in ids}) == len(ids)


def test_sids_have_distinct_32_bit_hashes() -> None:
    """Evaluations may be live together: their sids must never share state."""
    from kb.engine import _FREE_SIDS, MAX_LIVE_EVALUATIONS

    assert len({fnv1a_32(sid) for sid in _FREE_SIDS}) == MAX_LIVE_EVALUATIONS


def test_interleaved_evaluations_each_get_their_own_answer(engine: RulesEngine) -> None:
    """Stage by stage, two evaluations driven in turn on one thread (as the
    server's event loop does) give exactly what each gives alone."""
    first = validate_facts([HEADACHE, EXAM, PATIENT, SCREEN])
    second = validate_facts([HEADACHE, EXAM, PATIENT])
    alone = [[c.code for c in engine.evaluate(facts).conclusions] for facts in (first, second)]
    runs = [engine.stages(first), engine.stages(second)]
    derived: list[list[str]] = [[], []]
    finished = [False, False]
    while not all(finished):
        for index, run in enumerate(runs):
            if finished[index]:
                continue
            try:
                derived[index] += [c.code for c in next(run)]
            except StopIteration as result:
                finished[index] = True
                assert [c.code for c in result.value.conclusions] == derived[index]
    assert derived == alone and derived[0] != derived[1]


def test_an_engine_never_starts_the_racing_dispatch_threads() -> None:
    """durable_rules' Host starts timer threads; the engine drives the C module
    itself and starts none."""
    before = {thread.ident for thread in threading.enumerate()}
    engine = RulesEngine()
    assert "dx.cervicogenic_headache_supported" in codes(engine, [HEADACHE, EXAM, PATIENT])
    after = {thread.ident for thread in threading.enumerate()}
    engine.close()
    assert after == before


def test_an_evaluation_that_derives_nothing_is_clean(engine: RulesEngine) -> None:
    """delete_state crashes the process on a sid where no action ran."""
    assert codes(engine, []) == []
    assert (
        codes(
            engine,
            [FactIn("i", "imaging", {"modality": "ct", "region": "brain", "finding": "normal"})],
        )
        == []
    )


def test_more_evaluations_than_live_sids_allow(engine: RulesEngine) -> None:
    """At most 1,024 live sids: each evaluation's sid must be deleted."""
    facts = validate_facts([HEADACHE, EXAM, PATIENT])
    for _ in range(1500):
        result = engine.evaluate(facts)
    assert "dx.cervicogenic_headache_supported" in [c.code for c in result.conclusions]


@pytest.mark.parametrize("tiny", [5e-05, 1e-300, 4.9e-324])
def test_tiny_numbers_do_not_crash_the_engine(engine: RulesEngine, tiny: float) -> None:
    """Exponent notation crashes the engine's JSON parser; 0 < x < 1e-4 is sent as 1e-4."""
    treatment = FactIn(
        "t", "treatment", {"kind": "physical_therapy", "weeks": tiny, "response": "pending"}
    )
    found = codes(engine, [HEADACHE, EXAM, PATIENT, SCREEN, treatment])
    assert "step.continue_physical_therapy" in found


def test_largest_integer_reaches_the_engine_intact(engine: RulesEngine) -> None:
    block = FactIn(
        "b",
        "treatment",
        {"kind": "greater_occipital_nerve_block", "sessions": 2**53 - 1, "response": "pending"},
    )
    assert "caution.repeated_occipital_blocks" in codes(engine, [block])


def test_should_stop_cancels_between_stages_and_releases_the_sid(engine: RulesEngine) -> None:
    facts = validate_facts([HEADACHE, EXAM, PATIENT, SCREEN])
    polls = []

    def stop_after_first_stage() -> bool:
        polls.append(1)
        return len(polls) > 1

    seen = []
    with pytest.raises(EvaluationCancelled):
        engine.evaluate(facts, on_stage=seen.extend, should_stop=stop_after_first_stage)
    assert [c.code for c in seen] == ["dx.cervicogenic_headache_supported"]
    assert len(polls) == 2
    assert "step.physical_therapy" in codes(engine, [HEADACHE, EXAM, PATIENT, SCREEN])


class _ActionRaises(RulesEngine):
    """An action whose exception durable_rules would swallow into the state."""

    def _fire_action(self, rule: Any) -> Any:
        def action(matched: dict[str, Any]) -> None:
            raise RuntimeError("boom")

        return action


class _AssertFails(RulesEngine):
    """Chaining fails inside an action (like an unhandled conclusion fact)."""

    def _chain(self, conclusion: dict[str, Any]) -> None:
        raise RuntimeError("refused")


@pytest.mark.parametrize("engine_class", [_ActionRaises, _AssertFails])
def test_swallowed_errors_fail_the_evaluation(engine_class: type[RulesEngine]) -> None:
    broken = engine_class()
    with pytest.raises(EngineFailure):
        broken.evaluate(validate_facts([HEADACHE, EXAM, PATIENT]))


def test_engine_failure_message_has_no_fact_values() -> None:
    sentinel = FactIn(
        "b",
        "treatment",
        {"kind": "greater_occipital_nerve_block", "sessions": 987654321, "response": "pending"},
    )
    with pytest.raises(EngineFailure) as raised:
        _AssertFails().evaluate(validate_facts([sentinel]))
    assert "987654321" not in str(raised.value)


def test_stages_are_all_used_and_ordered(engine: RulesEngine) -> None:
    assert sorted({rule.stage for rule in engine.rules}) == list(Stage)


def _patients() -> list[list[Fact]]:
    return [validate_facts(list(s.facts)) for s in load_scenarios() if not s.error and s.facts]


def test_concurrent_callers_get_their_sequential_answers(engine: RulesEngine) -> None:
    """32 threads x 625 evaluations = 20,000: each equal to its sequential answer."""
    patients = _patients()
    expected = [engine.evaluate(facts).conclusions for facts in patients]
    failures: list[str] = []

    def caller(seed: int) -> None:
        chooser = random.Random(seed)
        for _ in range(625):
            index = chooser.randrange(len(patients))
            try:
                if engine.evaluate(patients[index]).conclusions != expected[index]:
                    failures.append(f"patient {index}: different answer")
            except Exception as error:
                failures.append(f"patient {index}: {type(error).__name__}")

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def _enum_values(model: Any) -> set[str]:
    """Every string a field of `model` may hold (its literals, lists' included)."""
    values: set[str] = set()
    pending = [info.annotation for info in model.model_fields.values()]
    while pending:
        annotation = pending.pop()
        if typing.get_origin(annotation) is typing.Literal:
            values.update(a for a in typing.get_args(annotation) if isinstance(a, str))
        else:
            pending.extend(typing.get_args(annotation))
    return values


def _standard_json(value: Any) -> str:
    """What durable_rules' own layer would send, compact."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_the_engine_gets_the_json_the_standard_library_writes() -> None:
    """Every scenario's facts, as the engine sees them, are encoded (orjson)
    exactly as the standard library encodes them."""
    patients = _patients()
    assert len(patients) > 100
    for facts in patients:
        messages = [encode_fact(fact, f"f{i}", "1") for i, fact in enumerate(facts)]
        assert _to_json(messages) == _standard_json(messages)


@settings(max_examples=3000, deadline=None)
@given(
    number=st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**53), max_value=2**53),
    text=st.sampled_from(sorted({v for f in FACT_TYPES.values() for v in _enum_values(f.model)})),
)
def test_numbers_and_enums_encode_as_the_standard_library_does(
    number: float | int, text: str
) -> None:
    value = {"n": _engine_number(number) if isinstance(number, float) else number, "s": text}
    assert _to_json(value) == _standard_json(value)
