"""`python -m cds_hooks`: a real uvicorn process in front of a real gRPC server.

Hook calls are built the way an EHR builds them (prefetch from the patient's
FHIR records, written by the tests' FHIR writer) and answered with exactly
the cards of the conclusions `EvaluateFhir` derives for the same records, or
none (the noise rule). Every bad token is 401; feedback persists across a
restart; the gRPC service down is 503, at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_hooks.cards import INDICATORS, ORDER_SELECT, PATIENT_VIEW, prefetch_from_bundle
from client.api import CdsClient, Conclusion
from server.app import RunningServer
from tests.fhir_writer import Style, write_bundle
from tests.make_hooks_fixtures import DIAGNOSED, TRAUMA, physio, vitals
from tests.patients import NEGATIVE_SCREEN, patient

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://ehr.example.org"
EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER = ec.generate_private_key(ec.SECP384R1())
CPT = "http://www.ama-assn.org/go/cpt"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.ECAlgorithm
        if isinstance(key, ec.EllipticCurvePublicKey)
        else (jwt.algorithms.RSAAlgorithm)
    )
    return {**json.loads(algorithm.to_jwk(key)), "kid": kid}


class Hooks:
    """A `python -m cds_hooks` process; `url` is its base URL."""

    def __init__(self, tmp: Path, target: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.log = tmp / f"hooks-{self.port}.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cds_hooks",
                    "--port",
                    str(self.port),
                    "--target",
                    target,
                    "--feedback-db",
                    str(tmp / "feedback.db"),
                    *extra,
                ],
                cwd=ROOT,
                stdout=sink,
                stderr=sink,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/cds-services", timeout=1)
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(self.log.read_text()) from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture(scope="module")
def issuers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("issuers") / "issuers.json"
    keys = [_jwk(EC_KEY.public_key(), "ec1"), _jwk(RSA_KEY.public_key(), "rsa1")]
    path.write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": {"keys": keys}}]}))
    return path


@pytest.fixture(scope="module")
def hooks(
    running_server: RunningServer, issuers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hooks]:
    service = Hooks(
        tmp_path_factory.mktemp("hooks"),
        f"127.0.0.1:{running_server.port}",
        "--trusted-issuers",
        str(issuers),
    )
    yield service
    service.stop()


def token(
    hooks: Hooks,
    service: str = PATIENT_VIEW,
    *,
    key: Any = EC_KEY,
    algorithm: str = "ES384",
    kid: str = "ec1",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": f"{hooks.url}/cds-services/{service}",
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})


def prefetch(facts: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The patient's id and the four prefetch values an EHR would send."""
    return prefetch_from_bundle(write_bundle(facts, datetime.now(UTC), Style()))


def hook_body(
    facts: list[dict[str, Any]], hook: str = "patient-view", **context: Any
) -> dict[str, Any]:
    patient_id, values = prefetch(facts)
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": patient_id, **context},
        "prefetch": values,
    }


def call(
    hooks: Hooks, body: Any, service: str = PATIENT_VIEW, bearer: str | None = ""
) -> httpx.Response:
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer or token(hooks, service)}"
    return httpx.post(f"{hooks.url}/cds-services/{service}", json=body, headers=headers, timeout=10)


def expected(running_server: RunningServer, body: dict[str, Any]) -> list[Conclusion]:
    """What EvaluateFhir derives now from the same records (the oracle)."""
    entries = []
    for key in ("patient", "vitals", "conditions", "assessment"):
        value = body["prefetch"][key]
        if value is None:
            continue
        if value["resourceType"] == "Bundle":
            entries += value["entry"]
        else:
            entries.append({"resource": value})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    with CdsClient(f"127.0.0.1:{running_server.port}", timeout=10) as cds:
        return [
            e for e in cds.evaluate_fhir(bundle, datetime.now(UTC)) if isinstance(e, Conclusion)
        ]


CASES = {
    "diagnosed": DIAGNOSED,
    "heart-rate rise 29": [*DIAGNOSED, vitals(29)],
    "heart-rate rise 30": [*DIAGNOSED, vitals(30)],
    "physical therapy 5.9 weeks": [*DIAGNOSED, physio(5.9)],
    "physical therapy 6 weeks": [*DIAGNOSED, physio(6)],
    "neck trauma": TRAUMA,
}


@pytest.mark.parametrize("case", list(CASES))
def test_patient_view_cards_are_the_conclusions(
    hooks: Hooks, running_server: RunningServer, case: str
) -> None:
    body = hook_body(CASES[case])
    answer = call(hooks, body)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    conclusions = expected(running_server, body)
    assert cards and [c["source"]["topic"]["code"] for c in cards] == [c.code for c in conclusions]
    for card, conclusion in zip(cards, conclusions, strict=True):
        assert card["indicator"] == INDICATORS[conclusion.urgency]
        assert card["summary"] == conclusion.title and len(card["summary"]) < 140
        assert conclusion.detail in card["detail"] and conclusion.evidence_note in card["detail"]
        assert card["source"]["topic"]["display"] == conclusion.title
        uuid.UUID(card["uuid"])
    assert len({card["uuid"] for card in cards}) == len(cards)


def test_thresholds_reach_the_cards(hooks: Hooks) -> None:
    def codes(case: str) -> set[str]:
        return {
            c["source"]["topic"]["code"]
            for c in call(hooks, hook_body(CASES[case])).json()["cards"]
        }

    assert "mimic.pots" not in codes("heart-rate rise 29")
    assert "mimic.pots" in codes("heart-rate rise 30")
    assert codes("physical therapy 5.9 weeks") != codes("physical therapy 6 weeks")


def test_no_headache_and_no_neck_findings_means_no_cards(hooks: Hooks) -> None:
    """A chart opened for another reason: nothing, even with coded red flags."""
    flags = {
        **NEGATIVE_SCREEN,
        "fields": {**NEGATIVE_SCREEN["fields"], "pregnancy_or_postpartum": True},
    }
    answer = call(hooks, hook_body([patient(30), flags]))
    assert answer.status_code == 200 and answer.json() == {"cards": []}


def _draft(code: str, order_id: str = "sr1") -> dict[str, Any]:
    order = {
        "resourceType": "ServiceRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": CPT, "code": code}]},
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}


def test_order_select_suggests_deleting_a_contraindicated_manipulation(hooks: Hooks) -> None:
    body = hook_body(
        TRAUMA, "order-select", selections=["ServiceRequest/sr1"], draftOrders=_draft("98940")
    )
    answer = call(hooks, body, ORDER_SELECT, token(hooks, ORDER_SELECT))
    assert answer.status_code == 200, answer.text
    (card,) = answer.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["source"]["topic"]["code"] == "caution.manipulation_contraindicated"
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "delete" and action["resource"] == "ServiceRequest/sr1"
    assert card["overrideReasons"]
    # Another order, or no contraindication: nothing.
    other = hook_body(TRAUMA, "order-select", draftOrders=_draft("97110"))
    assert call(hooks, other, ORDER_SELECT, token(hooks, ORDER_SELECT)).json() == {"cards": []}
    safe = hook_body(DIAGNOSED, "order-select", draftOrders=_draft("98941"))
    assert call(hooks, safe, ORDER_SELECT, token(hooks, ORDER_SELECT)).json() == {"cards": []}


def test_null_prefetch_is_nothing_found_and_absent_is_412(hooks: Hooks) -> None:
    body = hook_body(DIAGNOSED)
    body["prefetch"]["conditions"] = None
    assert call(hooks, body).status_code == 200
    del body["prefetch"]["vitals"]
    answer = call(hooks, body)
    assert answer.status_code == 412
    assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "change",
    ["not json", "wrong hook", "no patientId", "other patient", "prefetch not fhir"],
)
def test_bad_bodies_are_400_with_an_operation_outcome(hooks: Hooks, change: str) -> None:
    body: Any = hook_body(DIAGNOSED)
    if change == "wrong hook":
        body["hook"] = "order-select"
    elif change == "no patientId":
        del body["context"]["patientId"]
    elif change == "other patient":
        body["context"]["patientId"] = "someone-else"
    elif change == "prefetch not fhir":
        body["prefetch"]["patient"] = {"name": "x"}
    headers = {"Authorization": f"Bearer {token(hooks)}"}
    if change == "not json":
        answer = httpx.post(
            f"{hooks.url}/cds-services/{PATIENT_VIEW}", content=b"{", headers=headers, timeout=10
        )
    else:
        answer = httpx.post(
            f"{hooks.url}/cds-services/{PATIENT_VIEW}", json=body, headers=headers, timeout=10
        )
    assert answer.status_code == 400
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]


def test_unknown_service_is_404(hooks: Hooks) -> None:
    assert call(hooks, hook_body(DIAGNOSED), "cgh-nope").status_code == 404


def _hs256_with_the_public_key(hooks: Hooks) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": f"{hooks.url}/cds-services/{PATIENT_VIEW}",
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    signing = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'ec1'})}.{part(claims)}"
    pem = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = hmac.new(pem, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _tampered(hooks: Hooks) -> str:
    header, payload, signature = token(hooks).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


BAD_TOKENS = {
    "missing": lambda h: None,
    "not a jwt": lambda h: "not-a-token",
    "wrong audience": lambda h: token(h, aud=f"{h.url}/cds-services/{ORDER_SELECT}"),
    "expired": lambda h: token(h, exp=int(time.time()) - 120),
    "issued in the future": lambda h: token(h, iat=int(time.time()) + 600),
    "unknown issuer": lambda h: token(h, iss="https://other.example"),
    "alg none": lambda h: jwt.encode(
        {
            "iss": ISSUER,
            "aud": f"{h.url}/cds-services/{PATIENT_VIEW}",
            "exp": int(time.time()) + 60,
        },
        None,
        algorithm="none",
    ),
    "hs256 with the public key": _hs256_with_the_public_key,
    "bad signature": _tampered,
    "jku elsewhere": lambda h: token(
        h, key=ATTACKER, kid="evil", headers={"jku": "https://evil.example/jwks.json"}
    ),
    "no jti": lambda h: jwt.encode(
        {
            "iss": ISSUER,
            "aud": f"{h.url}/cds-services/{PATIENT_VIEW}",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        EC_KEY,
        algorithm="ES384",
        headers={"kid": "ec1"},
    ),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_every_bad_token_is_401_with_no_detail(hooks: Hooks, kind: str) -> None:
    bad = BAD_TOKENS[kind](hooks)
    headers = {} if bad is None else {"Authorization": f"Bearer {bad}"}
    answer = httpx.post(
        f"{hooks.url}/cds-services/{PATIENT_VIEW}",
        json=hook_body(DIAGNOSED),
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 401 and answer.content == b""
    assert bad is None or bad not in hooks.log.read_text(), "tokens are never logged"


@pytest.mark.parametrize(
    "algorithm, key, kid", [("ES384", EC_KEY, "ec1"), ("RS384", RSA_KEY, "rsa1")]
)
def test_valid_tokens_pass_once(hooks: Hooks, algorithm: str, key: Any, kid: str) -> None:
    valid = token(hooks, key=key, algorithm=algorithm, kid=kid)
    assert call(hooks, hook_body(DIAGNOSED), bearer=valid).status_code == 200
    assert call(hooks, hook_body(DIAGNOSED), bearer=valid).status_code == 401, "jti replayed"


def _feedback(hooks: Hooks, card: str, outcome: str = "accepted") -> httpx.Response:
    body = {
        "feedback": [
            {
                "card": card,
                "outcome": outcome,
                "acceptedSuggestions": [{"id": "x"}] if outcome == "accepted" else [],
                "overrideReason": {"reason": {"code": "contraindication-assessed"}},
                "outcomeTimestamp": "2026-12-02T00:00:00Z",
            }
        ]
    }
    return httpx.post(
        f"{hooks.url}/cds-services/{PATIENT_VIEW}/feedback",
        json=body,
        headers={"Authorization": f"Bearer {token(hooks)}"},
        timeout=10,
    )


def test_feedback_is_kept_and_survives_a_restart(
    running_server: RunningServer, issuers: Path, tmp_path: Path
) -> None:
    target = f"127.0.0.1:{running_server.port}"
    first = Hooks(tmp_path, target, "--trusted-issuers", str(issuers))
    try:
        cards = call(first, hook_body(DIAGNOSED)).json()["cards"]
        assert cards
        assert _feedback(first, cards[0]["uuid"]).status_code == 200
        assert _feedback(first, str(uuid.uuid4())).status_code == 404
        assert 'cds_hooks_feedback_total{code="' in httpx.get(f"{first.url}/metrics").text
    finally:
        first.stop()
    again = Hooks(tmp_path, target, "--trusted-issuers", str(issuers))
    try:
        assert _feedback(again, cards[1]["uuid"], "overridden").status_code == 200
    finally:
        again.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "feedback.db") as db:
        rows = db.execute("SELECT card, outcome FROM feedback ORDER BY id").fetchall()
        stored = " ".join(str(row) for row in db.execute("SELECT * FROM cards").fetchall())
    assert rows == [(cards[0]["uuid"], "accepted"), (cards[1]["uuid"], "overridden")]
    assert "p1" not in stored, "no patient data with the cards"
    assert oct((tmp_path / "feedback.db").stat().st_mode & 0o777) == "0o600"


def test_grpc_down_is_503_at_once_and_health_says_so(issuers: Path, tmp_path: Path) -> None:
    dead = Hooks(tmp_path, f"127.0.0.1:{free_port()}", "--trusted-issuers", str(issuers))
    try:
        started = time.monotonic()
        answer = call(dead, hook_body(DIAGNOSED))
        assert answer.status_code == 503 and time.monotonic() - started < 3
        assert httpx.get(f"{dead.url}/healthz", timeout=5).status_code == 503
    finally:
        dead.stop()


def test_health_discovery_and_cors(hooks: Hooks) -> None:
    assert httpx.get(f"{hooks.url}/healthz", timeout=5).status_code == 200
    services = httpx.get(f"{hooks.url}/cds-services", timeout=5).json()["services"]
    assert {(s["id"], s["hook"]) for s in services} == {
        (PATIENT_VIEW, "patient-view"),
        (ORDER_SELECT, "order-select"),
    }
    for service in services:
        assert set(service["prefetch"]) == {"patient", "vitals", "conditions", "assessment"}
    preflight = httpx.options(
        f"{hooks.url}/cds-services/{PATIENT_VIEW}",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in (
        "*",
        "https://sandbox.cds-hooks.org",
    )


def test_refuses_to_start_without_issuers_unless_told(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cds_hooks", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert done.returncode == 2 and "--trusted-issuers" in done.stderr


def test_feedback_on_postgresql_is_shared_and_survives_a_restart(
    running_server: RunningServer, issuers: Path, tmp_path: Path, pg_url: str
) -> None:
    """--feedback-db postgresql://…: two hook services share it, as replicas would."""
    from tests import postgres

    target = f"127.0.0.1:{running_server.port}"
    options = ("--trusted-issuers", str(issuers), "--feedback-db", pg_url)
    first = Hooks(tmp_path, target, *options)
    second = Hooks(tmp_path, target, *options)
    try:
        cards = call(first, hook_body(DIAGNOSED)).json()["cards"]
        assert _feedback(second, cards[0]["uuid"]).status_code == 200, "a card of the other"
        assert _feedback(second, str(uuid.uuid4())).status_code == 404
    finally:
        first.stop()
    again = Hooks(tmp_path, target, *options)
    try:
        assert _feedback(again, cards[1]["uuid"], "overridden").status_code == 200
    finally:
        again.stop()
        second.stop()
    rows = postgres.query(pg_url, "SELECT card, outcome, override_reason FROM feedback ORDER BY id")
    assert rows == [
        (cards[0]["uuid"], "accepted", "contraindication-assessed"),
        (cards[1]["uuid"], "overridden", "contraindication-assessed"),
    ]


FIXTURES = sorted((Path(__file__).resolve().parent / "hooks_fixtures").glob("*.json"))


@pytest.fixture(scope="module")
def fixture_hooks(
    running_server: RunningServer, issuers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hooks]:
    """The hook service as the fixtures need it: their records never age out."""
    service = Hooks(
        tmp_path_factory.mktemp("fixture-hooks"),
        f"127.0.0.1:{running_server.port}",
        "--trusted-issuers",
        str(issuers),
        "--vitals-window",
        "36500d",
    )
    yield service
    service.stop()


def test_the_fixtures_are_current() -> None:
    import make_hooks_fixtures

    assert len(FIXTURES) == len(make_hooks_fixtures.CASES) >= 7
    assert make_hooks_fixtures.main(["--check"]) == 0, "run tests/make_hooks_fixtures.py"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.stem)
def test_each_fixture_gets_exactly_its_cards(fixture_hooks: Hooks, path: Path) -> None:
    case = json.loads(path.read_text())
    service = case["service"]
    answer = call(fixture_hooks, case["request"], service, token(fixture_hooks, service))
    assert answer.status_code == 200, answer.text
    got = [
        {"code": card["source"]["topic"]["code"], "indicator": card["indicator"]}
        for card in answer.json()["cards"]
    ]
    assert got == case["expectedCards"], case["description"]
