"""The client and CLI against the real server, over the example patients."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest

from client import CdsClient, CdsError
from client.cli import main
from server.app import RunningServer

ROOT = Path(__file__).resolve().parents[1]

# What each example is there to show (examples/*.json).
EXAMPLES = {
    "diagnosis-physical-therapy.json": {
        "dx.cervicogenic_headache_supported",
        "step.physical_therapy",
        "step.adjunct_exercise",
    },
    "pots-mimic.json": {"dx.cervicogenic_headache_supported", "mimic.pots"},
    "dissection-red-flag.json": {
        "mimic.cervical_artery_dissection",
        "mimic.thunderclap_headache",
        "mimic.secondary_headache",
        "caution.manipulation_contraindicated",
    },
    "refractory-after-nerve-block.json": {
        "dx.cervicogenic_headache_supported",
        "caution.imaging_not_diagnostic",
        "step.specialist_referral",
    },
    "teen-cough-occipital.json": {
        "mimic.chiari_malformation",
        "caution.pediatric_occipital_pain",
    },
}


def test_every_example_is_listed() -> None:
    assert {path.name for path in (ROOT / "examples").glob("*.json")} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_cli_json_output_over_a_real_server(running_server: RunningServer, name: str) -> None:
    out = io.StringIO()
    target = f"127.0.0.1:{running_server.port}"
    status = main(
        ["--target", target, "evaluate", str(ROOT / "examples" / name), "--json"], stdout=out
    )
    assert status == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    codes = {line["code"] for line in lines if "code" in line}
    assert codes == EXAMPLES[name]
    assert lines[-1]["conclusion_count"] == len(codes)


def test_client_raises_readable_errors(running_server: RunningServer) -> None:
    with (
        CdsClient(f"127.0.0.1:{running_server.port}", timeout=5) as cds,
        pytest.raises(CdsError) as raised,
    ):
        list(cds.evaluate([{"id": "p", "type": "patient", "fields": {"age_years": 400}}]))
    assert raised.value.reason == "FACT_INVALID"
    assert [field for field, _ in raised.value.violations] == ["facts[0].fields.age_years"]
    assert "facts[0].fields.age_years" in str(raised.value)


def test_knowledge_base_never_imports_grpc() -> None:
    for path in (ROOT / "kb").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("grpc", "cds", "server", "client")), (path, name)
