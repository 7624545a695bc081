"""A session client that sends but never reads cannot make the server buffer without bound.

The server sends each batch's changes before it reads the next batch; once the
client's HTTP/2 flow-control window is full, sending blocks, so the server
stops applying batches: what it holds for a stalled client is bounded by that
window, not by how much the client sends. Everyone else is served meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import CdsClient
from server.app import RunningServer
from tests.conftest import to_proto_facts

BATCHES = 3000
VITALS = {
    "supine_hr_bpm": 60,
    "standing_hr_bpm": 110,
    "supine_sbp_mmhg": 120,
    "standing_sbp_mmhg": 118,
    "supine_dbp_mmhg": 80,
    "standing_dbp_mmhg": 79,
}


def _version(target: str, session_id: str) -> int:
    with CdsClient(target, timeout=10) as cds, cds.session(session_id) as session:
        return session.version


def test_a_client_that_never_reads_is_throttled(running_server: RunningServer) -> None:
    target = f"127.0.0.1:{running_server.port}"
    with CdsClient(target, timeout=10) as cds, cds.session() as session:
        session_id = session.session_id

    def requests() -> Iterator[pb.StreamSessionRequest]:
        yield pb.StreamSessionRequest(open=pb.OpenSession(session_id=session_id))
        vitals = to_proto_facts([{"id": "v", "type": "orthostatic_vitals", "fields": VITALS}])
        for n in range(BATCHES):  # every batch adds or withdraws conclusions
            if n % 2 == 0:
                yield pb.StreamSessionRequest(assert_facts=pb.AssertFacts(facts=vitals))
            else:
                yield pb.StreamSessionRequest(retract_facts=pb.RetractFacts(fact_ids=["v"]))

    # A fixed 64 KiB receive window (no BDP auto-tuning) keeps the test fast.
    channel = grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
    call = pb_grpc.DecisionSupportServiceStub(channel).StreamSession(requests())  # never read
    try:
        deadline = time.monotonic() + 30
        previous, version = -1, _version(target, session_id)
        while version != previous:  # until the server stops applying batches
            assert time.monotonic() < deadline
            time.sleep(0.5)
            previous, version = version, _version(target, session_id)
        assert 0 < version < BATCHES, version
        request = pb.EvaluateRequest(
            facts=to_proto_facts([{"id": "p", "type": "patient", "fields": {"age_years": 30}}])
        )
        with grpc.insecure_channel(target) as other:
            answer = list(pb_grpc.DecisionSupportServiceStub(other).Evaluate(request, timeout=5))
        assert answer[-1].WhichOneof("event") == "summary"  # everyone else is served
    finally:
        call.cancel()
        channel.close()
