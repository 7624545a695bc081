"""EvaluateFhir and TranslateFhir over a real in-process server (issue 9).

A bundle must give exactly the conclusions its facts give through `Evaluate`,
with the report first and the summary last; every conclusion names the FHIR
records behind it, transitively through chaining; broken FHIR is
INVALID_ARGUMENT with paths and nothing evaluated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from cds.v1 import decision_support_pb2 as pb
from client.api import CdsClient, CdsError, Conclusion, Summary, error_from_rpc
from fhir_in import canonical as questionnaire_url
from kb.facts import FactIn, validate_facts
from server.app import RunningServer
from tests.fhir_writer import AS_OF, Style, write_bundle
from tests.test_fhir_examples import NAMES, canonical, fact_sets, facts_file, styles

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cds(running_server: RunningServer) -> Iterator[CdsClient]:
    with CdsClient(f"127.0.0.1:{running_server.port}", timeout=20) as client:
        yield client


def bundle_text(name: str) -> str:
    return (EXAMPLES / "fhir" / f"{name}.bundle.json").read_text()


def events(cds: CdsClient, bundle: Any, as_of: datetime | None = AS_OF) -> list[Any]:
    return list(cds.evaluate_fhir(bundle, as_of))


def shape(conclusion: Conclusion) -> tuple[str, str, str, str, tuple[str, ...]]:
    """What must agree between Evaluate and EvaluateFhir (fact ids aside: the
    reader names its own facts)."""
    return (
        conclusion.code,
        conclusion.urgency,
        conclusion.detail,
        conclusion.rule_id,
        conclusion.derived_from,
    )


def evaluated(cds: CdsClient, facts: list[dict[str, Any]]) -> list[Conclusion]:
    return [event for event in cds.evaluate(facts) if isinstance(event, Conclusion)]


@pytest.mark.parametrize("name", NAMES)
def test_each_example_bundle_gives_exactly_its_facts_conclusions(cds: CdsClient, name: str) -> None:
    answer = events(cds, bundle_text(name))
    assert isinstance(answer[0], pb.MappingReport), "the report comes first"
    assert isinstance(answer[-1], Summary), "the summary comes last"
    conclusions = answer[1:-1]
    assert all(isinstance(c, Conclusion) for c in conclusions)
    assert answer[-1].conclusion_count == len(conclusions) > 0
    expected = evaluated(cds, facts_file(name))
    assert [shape(c) for c in conclusions] == [shape(c) for c in expected]
    # TranslateFhir's facts through Evaluate: the very same conclusions, fact ids included.
    translated = cds.translate_fhir(bundle_text(name), AS_OF)
    facts = [
        {"id": f.id, "type": f.type, "fields": dict(json.loads(_fields_json(f)))}
        for f in translated.facts
    ]
    again = evaluated(cds, facts)
    assert [(c.code, c.fact_ids, c.detail) for c in again] == [
        (c.code, c.fact_ids, c.detail) for c in conclusions
    ]
    assert not any(c.source_references for c in again), "Evaluate carries no references"


def _fields_json(fact: pb.Fact) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(fact.fields)


@pytest.mark.parametrize("name", NAMES)
def test_every_conclusion_names_the_records_behind_it(cds: CdsClient, name: str) -> None:
    report, *conclusions, _ = events(cds, bundle_text(name))
    fed: dict[str, set[str]] = {}
    for resource in report.resources:
        for fact_id in resource.fact_ids:
            fed.setdefault(fact_id, set()).add(resource.reference)
    used = {r.reference for r in report.resources if r.status == "USED"}
    by_code = {c.code: c for c in conclusions}
    for conclusion in conclusions:
        references = set(conclusion.source_references)
        assert references and references <= used, conclusion.code
        assert list(conclusion.source_references) == sorted(references)
        for fact_id in conclusion.fact_ids:
            assert fed[fact_id] <= references, (conclusion.code, fact_id)
        for code in conclusion.derived_from:
            assert set(by_code[code].source_references) <= references, "transitive"
        direct = (
            set().union(*(fed[f] for f in conclusion.fact_ids)) if conclusion.fact_ids else set()
        )
        chained = set().union(*(set(by_code[c].source_references) for c in conclusion.derived_from))
        assert references == direct | chained, "nothing else"


def test_chained_conclusions_carry_the_records_of_what_they_chain_on(cds: CdsClient) -> None:
    """A treatment step rests on the diagnosis: it names the diagnosis's records."""
    _, *conclusions, _ = events(cds, bundle_text("diagnosis-physical-therapy"))
    by_code = {c.code: c for c in conclusions}
    step = by_code["step.physical_therapy"]
    assert "dx.cervicogenic_headache_supported" in step.derived_from
    diagnosis = by_code["dx.cervicogenic_headache_supported"]
    assert set(diagnosis.source_references) <= set(step.source_references)
    assert "Patient/p1" in step.source_references  # the age it read itself


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=fact_sets(), style=styles())
def test_any_fact_set_through_fhir_gives_its_facts_and_conclusions(
    cds: CdsClient, facts: list[dict[str, Any]], style: Style
) -> None:
    expected = validate_facts([FactIn(**fact) for fact in facts])
    document = write_bundle(facts, AS_OF, style)
    translated = cds.translate_fhir(document, AS_OF)
    read = validate_facts(
        [FactIn(f.id, f.type, json.loads(_fields_json(f))) for f in translated.facts]
    )
    assert canonical(read) == canonical(expected)
    through_fhir = [c for c in events(cds, document) if isinstance(c, Conclusion)]
    assert [shape(c) for c in through_fhir] == [shape(c) for c in evaluated(cds, facts)]


def test_as_of_decides_what_counts(cds: CdsClient) -> None:
    bundle = bundle_text("pots-mimic")
    then = [c.code for c in events(cds, bundle, AS_OF) if isinstance(c, Conclusion)]
    assert "mimic.pots" in then
    later = events(cds, bundle, AS_OF + timedelta(days=45))  # the vitals are past the window
    assert "mimic.pots" not in [c.code for c in later if isinstance(c, Conclusion)]
    assert "STALE" in {r.reason for r in later[0].resources}
    now = events(cds, bundle, None)  # unset: now, years after the example
    assert "STALE" in {r.reason for r in now[0].resources}
    before = events(cds, bundle, AS_OF - timedelta(days=400))  # before everything was recorded
    assert "AFTER_AS_OF" in {r.reason for r in before[0].resources}


def test_a_naive_as_of_is_refused_by_the_client(cds: CdsClient) -> None:
    with pytest.raises(ValueError, match="timezone"):
        next(cds.evaluate_fhir(bundle_text("pots-mimic"), datetime(2025, 6, 1)))


def _refused(cds: CdsClient, bundle: Any) -> CdsError:
    with pytest.raises(CdsError) as error:
        next(cds.evaluate_fhir(bundle, AS_OF))  # nothing, not even the report
    with pytest.raises(CdsError) as again:
        cds.translate_fhir(bundle, AS_OF)
    assert (again.value.code, again.value.reason) == (error.value.code, error.value.reason)
    return error.value


def test_broken_fhir_is_invalid_argument_with_paths(cds: CdsClient) -> None:
    document = json.loads(bundle_text("pots-mimic"))
    document["entry"][1]["resource"]["valueQuantity"]["value"] = "fast"
    error = _refused(cds, document)
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "FHIR_INVALID")
    assert any(
        field.startswith("entry[1].resource.valueQuantity.value") for field, _ in error.violations
    )
    error = _refused(cds, "{not json")
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "FHIR_INVALID")


def test_an_answer_outside_the_fact_contract_is_fact_invalid(cds: CdsClient) -> None:
    document = json.loads(bundle_text("pots-mimic"))
    for entry in document["entry"]:
        resource = entry["resource"]
        if resource.get("id") == "assessment":
            headache = next(i for i in resource["item"] if i["linkId"] == "headache")
            for item in headache["item"]:
                if item["linkId"] == "headache.improvement_lying_down_pct":
                    item["answer"] = [{"valueDecimal": 150}]
    error = _refused(cds, document)
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "FACT_INVALID")
    assert any("answer" in field for field, _ in error.violations)


def test_a_bundle_past_the_entry_limit_is_refused_before_it_is_read(cds: CdsClient) -> None:
    from server.limits import MAX_BUNDLE_ENTRIES

    document = json.loads(bundle_text("pots-mimic"))
    filler = {"resource": {"resourceType": "Basic", "id": "x"}}
    document["entry"] += [filler] * (MAX_BUNDLE_ENTRIES + 1 - len(document["entry"]))
    error = _refused(cds, document)
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
    assert [field for field, _ in error.violations] == ["entry"]
    document["entry"] = document["entry"][:MAX_BUNDLE_ENTRIES]  # at the limit: read
    assert isinstance(events(cds, document)[-1], Summary)


def test_the_knowledge_base_publishes_the_questionnaire_and_code_tables(cds: CdsClient) -> None:
    answer = cds.knowledge_base()
    form = json.loads(answer.questionnaire_json)
    assert form["resourceType"] == "Questionnaire" and form["url"] == questionnaire_url()
    assert form["version"] == answer.version
    tables = json.loads(answer.fhir_code_tables_json)
    assert tables and isinstance(tables, dict)


def _cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", "--target", target, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_evaluate_translate_and_questionnaire(running_server: RunningServer) -> None:
    target = f"127.0.0.1:{running_server.port}"
    path = str(EXAMPLES / "fhir" / "pots-mimic.bundle.json")
    done = _cli(target, "evaluate-fhir", path, "--as-of", "2025-06-01T12:00:00Z", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["event"] == "report" and lines[-1]["event"] == "summary"
    assert "mimic.pots" in {line.get("code") for line in lines}
    assert all(line["source_references"] for line in lines if line["event"] == "conclusion")
    text = _cli(target, "evaluate-fhir", path, "--as-of", "2025-06-01T12:00:00Z")
    assert text.returncode == 0 and "FHIR records read:" in text.stdout
    assert "records: " in text.stdout and "ignored (STATUS)" in text.stdout
    translated = _cli(target, "translate-fhir", path, "--as-of", "2025-06-01T12:00:00+00:00")
    assert translated.returncode == 0
    assert {f["type"] for f in json.loads(translated.stdout)["facts"]} >= {"patient", "headache"}
    form = _cli(target, "questionnaire")
    assert form.returncode == 0 and json.loads(form.stdout)["resourceType"] == "Questionnaire"
    naive = _cli(target, "evaluate-fhir", path, "--as-of", "2025-06-01T12:00:00")
    assert naive.returncode == 1 and "zone" in naive.stderr


@pytest.mark.parametrize("code", ["mimic.pots", "step.physical_therapy"])
def test_explain_reads_a_bundle_as_evaluate_fhir_does(cds: CdsClient, code: str) -> None:
    """ "Why (not) this code for my patient?" from the EHR's records: the same
    answer as for the patient's facts."""
    from_fhir = cds.explain_fhir(bundle_text("pots-mimic"), code, AS_OF)
    from_facts = cds.explain(facts_file("pots-mimic"), code)
    assert from_fhir.derived == from_facts.derived
    assert [(r.rule_id, r.fired) for r in from_fhir.rules] == [
        (r.rule_id, r.fired) for r in from_facts.rules
    ]
    assert from_fhir.derived is (code == "mimic.pots")


def test_explain_takes_facts_or_a_bundle_not_both(cds: CdsClient) -> None:
    request = pb.ExplainRequest(
        code="mimic.pots",
        bundle_json=bundle_text("pots-mimic"),
        facts=[pb.Fact(id="p", type="patient")],
    )
    with pytest.raises(grpc.RpcError) as error:
        cds._stub.Explain(request, timeout=10)
    refused = error_from_rpc(error.value)
    assert (refused.code, refused.reason) == ("INVALID_ARGUMENT", "FACT_INVALID")
    assert [field for field, _ in refused.violations] == ["bundle_json"]
    with pytest.raises(CdsError) as broken:
        cds.explain_fhir("{not json", "mimic.pots", AS_OF)
    assert (broken.value.code, broken.value.reason) == ("INVALID_ARGUMENT", "FHIR_INVALID")
