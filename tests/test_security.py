"""TLS, mutual TLS and bearer tokens, with certificates made at test time by `openssl`.

(`cryptography` is not a dependency; the `openssl` binary is. Without it the
TLS tests are skipped with that reason, shown in the summary; the token tests
still run.)
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import CdsClient, CdsError, CdsUnavailable, Conclusion, Summary
from client.cli import main as cli_main
from server import security
from server.app import RunningServer, ServerConfig, create_server
from tests.conftest import to_proto_facts

ROOT = Path(__file__).resolve().parents[1]
PATIENT = [{"id": "p", "type": "patient", "fields": {"age_years": 35}}]
TOKENS = ("tok-alpha-2f9c41d07b", "tok-beta-88e1aa6c5d")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(
    OPENSSL is None, reason="the openssl binary is needed to make test certificates"
)


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA the server does not trust
    rogue_key: Path

    def read(self, name: str) -> bytes:
        return Path(getattr(self, name)).read_bytes()


def _openssl(folder: Path, *args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=folder, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        folder,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(folder: Path, ca: str, name: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        folder,
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        folder,
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL is None:
        pytest.skip("the openssl binary is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")
    _ca(folder, "ca")
    _ca(folder, "rogue-ca")
    server_extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    _leaf(folder, "ca", "server", server_extensions)
    _leaf(folder, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _leaf(folder, "rogue-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        rogue_cert=folder / "rogue.pem",
        rogue_key=folder / "rogue.key",
    )


@contextlib.contextmanager
def _serve(config: ServerConfig) -> Iterator[RunningServer]:
    running = create_server(config)
    try:
        yield running
    finally:
        running.stop(grace=0.5)


def _evaluates(client: CdsClient) -> bool:
    events = list(client.evaluate(PATIENT))
    return isinstance(events[-1], Summary) and all(isinstance(e, Conclusion) for e in events[:-1])


def _info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[RunningServer]:
    config = ServerConfig(port=0, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    with _serve(config) as running:
        yield running


@needs_openssl
def test_tls_client_trusting_the_ca_is_served(tls_server: RunningServer, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    with CdsClient(target, timeout=10, root_certificates=pki.read("ca")) as cds:
        assert _evaluates(cds)
        with cds.session() as session:
            assert session.apply(PATIENT).applied


@needs_openssl
def test_tls_server_refuses_plaintext_and_untrusted_clients(
    tls_server: RunningServer, pki: Pki
) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    with CdsClient(target, timeout=3) as plaintext, pytest.raises(CdsUnavailable):
        list(plaintext.evaluate(PATIENT))
    # TLS, but trusting another CA: the server's certificate does not verify.
    wrong = CdsClient(target, timeout=3, root_certificates=pki.read("rogue_cert"))
    with wrong, pytest.raises(CdsUnavailable):
        list(wrong.evaluate(PATIENT))


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[RunningServer]:
    config = ServerConfig(
        port=0,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
    )
    with _serve(config) as running:
        yield running


@needs_openssl
def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
    mtls_server: RunningServer, pki: Pki
) -> None:
    target = f"127.0.0.1:{mtls_server.port}"
    ca = pki.read("ca")
    with CdsClient(
        target,
        timeout=10,
        root_certificates=ca,
        certificate_chain=pki.read("client_cert"),
        private_key=pki.read("client_key"),
    ) as cds:
        assert _evaluates(cds)
    anonymous = CdsClient(target, timeout=3, root_certificates=ca)
    with anonymous, pytest.raises(CdsUnavailable):
        list(anonymous.evaluate(PATIENT))
    with (
        CdsClient(
            target,
            timeout=3,
            root_certificates=ca,
            certificate_chain=pki.read("rogue_cert"),
            private_key=pki.read("rogue_key"),
        ) as rogue,
        pytest.raises(CdsUnavailable),
    ):
        list(rogue.evaluate(PATIENT))


# ---------------------------------------------------------------- bearer tokens


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"# service tokens, one per line\n\n{TOKENS[0]}\n  {TOKENS[1]}  \n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def token_server(token_file: Path) -> Iterator[RunningServer]:
    with _serve(ServerConfig(port=0, auth_token_file=str(token_file))) as running:
        yield running


@pytest.fixture(scope="module")
def token_channel(token_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        yield channel


def _calls(channel: grpc.Channel) -> dict[str, Any]:
    """One call of every method but health, each taking metadata."""
    stub = pb_grpc.DecisionSupportServiceStub(channel)
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    facts = to_proto_facts(PATIENT)
    opening = pb.StreamSessionRequest(open=pb.OpenSession())
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    return {
        "Evaluate": lambda md: list(
            stub.Evaluate(pb.EvaluateRequest(facts=facts), timeout=5, metadata=md)
        ),
        "Explain": lambda md: stub.Explain(
            pb.ExplainRequest(facts=facts, code="mimic.pots"), timeout=5, metadata=md
        ),
        "GetKnowledgeBase": lambda md: stub.GetKnowledgeBase(
            pb.GetKnowledgeBaseRequest(), timeout=5, metadata=md
        ),
        "StreamSession": lambda md: next(
            stub.StreamSession(iter([opening]), timeout=5, metadata=md)
        ),
        "DeleteSession": lambda md: stub.DeleteSession(
            pb.DeleteSessionRequest(session_id="x" * 32), timeout=5, metadata=md
        ),
        "Reflection": lambda md: next(
            reflect.ServerReflectionInfo(iter([listing]), timeout=5, metadata=md)
        ),
    }


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer wrong-token"),),
        (("authorization", f"Basic {TOKENS[0]}"),),
        (("authorization", TOKENS[0]),),
        (("authorization", f"Bearer {TOKENS[0][:-1]}"),),  # a prefix of a real token
        (("authorization", f"Bearer {TOKENS[0]}x"),),
        (("authorization", "Bearer "),),
        (("x-token", TOKENS[0]),),
    ],
    ids=["none", "wrong", "basic", "no-scheme", "prefix", "longer", "empty", "other-header"],
)
def test_every_rpc_but_health_needs_a_known_token(
    token_channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    for name, call in _calls(token_channel).items():
        with pytest.raises(grpc.RpcError) as raised:
            call(metadata)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert _info(raised.value).reason == "UNAUTHENTICATED", name
        assert TOKENS[0] not in (raised.value.details() or "")


def test_health_needs_no_token(token_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(token_channel)
    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("token", TOKENS)
def test_each_listed_token_is_accepted(token_channel: grpc.Channel, token: str) -> None:
    for scheme in ("Bearer", "bearer"):
        metadata = (("authorization", f"{scheme} {token}"),)
        for name, call in _calls(token_channel).items():
            if name == "DeleteSession":
                with pytest.raises(grpc.RpcError) as raised:
                    call(metadata)
                assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # past the gate
            else:
                call(metadata)


def test_unknown_methods_are_unauthenticated_too(token_channel: grpc.Channel) -> None:
    """An anonymous caller cannot even tell which methods exist."""
    probe = token_channel.unary_unary("/cds.v1.DecisionSupportService/Nope")
    with pytest.raises(grpc.RpcError) as raised:
        probe(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as raised:
        probe(b"", timeout=5, metadata=(("authorization", f"Bearer {TOKENS[1]}"),))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_refusals_are_counted_by_method_like_every_call(token_channel: grpc.Channel) -> None:
    """A refusal has the call context every handler has (server.handlers): it is
    counted, by method, an unknown method as `unknown`."""
    from server.metrics import RPCS

    evaluate = RPCS.labels("Evaluate", "UNAUTHENTICATED")
    unknown = RPCS.labels("unknown", "UNAUTHENTICATED")
    before = (evaluate._value.get(), unknown._value.get())
    with pytest.raises(grpc.RpcError):
        _calls(token_channel)["Evaluate"](())
    with pytest.raises(grpc.RpcError):
        token_channel.unary_unary("/cds.v1.DecisionSupportService/Nope")(b"", timeout=5)
    expected = (before[0] + 1, before[1] + 1)
    deadline = time.monotonic() + 5  # counted as the call ends, maybe just after the status
    while (evaluate._value.get(), unknown._value.get()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (evaluate._value.get(), unknown._value.get()) == expected


def test_client_sends_its_token_on_every_call(token_server: RunningServer) -> None:
    target = f"127.0.0.1:{token_server.port}"
    with CdsClient(target, timeout=10, token=TOKENS[1]) as cds:
        assert _evaluates(cds)
        assert cds.knowledge_base().version
        with cds.session() as session:
            assert session.apply(PATIENT).applied
            session_id = session.session_id
        cds.delete_session(session_id)
    with CdsClient(target, timeout=10) as anonymous, pytest.raises(CdsError) as raised:
        list(anonymous.evaluate(PATIENT))
    assert (raised.value.code, raised.value.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")


def test_client_refuses_a_token_that_cannot_be_sent() -> None:
    for token in ("two words", "line\nbreak", "", "naïve"):
        with pytest.raises(ValueError):
            CdsClient("127.0.0.1:1", token=token)


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured token is compared, with hmac.compare_digest, whatever matches."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    gate = security.BearerTokenInterceptor(["a" * 40, "b" * 7, "c"])
    for token, expected in (("a" * 40, True), ("c", True), ("a" * 39, False), (None, False)):
        compared.clear()
        metadata = [] if token is None else [("authorization", f"Bearer {token}")]
        assert gate.authorized(metadata) is expected
        assert len(compared) == 3, "no early exit"
        assert {len(a) for a, _ in compared} == {32}, "digests, so lengths leak nothing"


def test_token_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# only a comment\n\n")
    with pytest.raises(security.ConfigurationError, match="no tokens"):
        security.load_tokens(str(path))
    path.write_text("has a space\n")
    with pytest.raises(security.ConfigurationError, match="spaces"):
        security.load_tokens(str(path))
    with pytest.raises(security.ConfigurationError, match="cannot read"):
        security.load_tokens(str(tmp_path / "missing"))
    path.write_text("t1\n#t2\n t3 \n")
    assert security.load_tokens(str(path)) == ("t1", "t3")


def test_cli_sends_tls_and_token(
    token_file: Path, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ServerConfig(
        port=0,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        auth_token_file=str(token_file),
    )
    with _serve(config) as running:
        target = ["--target", f"127.0.0.1:{running.port}", "--tls-ca", str(pki.ca)]
        mine = tmp_path / "mine"
        mine.write_text(f"{TOKENS[0]}\n")
        assert cli_main([*target, "--token-file", str(mine), "kb"]) == 0
        assert "Knowledge base" in capsys.readouterr().out
        assert cli_main([*target, "kb"]) == 2
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert cli_main([*target, "--token-file", str(tmp_path / "none"), "kb"]) == 1
        assert "cannot read" in capsys.readouterr().err


# ---------------------------------------------------------------- configuration


def test_unusable_security_settings_fail_before_serving(tmp_path: Path, pki: Pki) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases: list[tuple[dict[str, str], str]] = [
        ({"tls_cert": str(pki.server_cert)}, "go together"),
        ({"tls_key": str(pki.server_key)}, "go together"),
        ({"tls_client_ca": str(pki.ca)}, "needs --tls-cert"),
        ({"tls_cert": str(tmp_path / "nope.pem"), "tls_key": str(pki.server_key)}, "cannot read"),
        ({"tls_cert": str(not_pem), "tls_key": str(pki.server_key)}, "not a PEM"),
        ({"auth_token_file": str(tmp_path / "nope")}, "cannot read"),
    ]
    for settings, message in cases:
        with pytest.raises(security.ConfigurationError, match=message):
            create_server(ServerConfig(port=0, **settings))  # type: ignore[arg-type]


def test_command_line_refuses_unusable_settings_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", "--workers", "1",
         "--auth-token-file", str(tmp_path / "missing")],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "auth token file" in done.stderr and "cannot read" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert security.is_loopback(host) is loopback


def test_plaintext_off_loopback_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="server.security"):
        with _serve(ServerConfig(port=0)):
            pass
        assert not caplog.records
        with _serve(ServerConfig(host="0.0.0.0", port=0)):
            pass
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "PLAINTEXT" in record.getMessage()
