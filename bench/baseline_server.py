"""The no-engine baseline: a minimal grpcio server on the same proto.

    python -m bench.baseline_server --port N --canned FILE

`Evaluate` answers each patient of the benchmark mix with the very responses
the real service gives it (same number and size of conclusions, recorded in
FILE beforehand), looked up by the patient's index in its first fact id. No
validation, no rules: what is left is the cost of gRPC itself, in one process.
"""

from __future__ import annotations

import argparse
import pickle
import signal
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc


class CannedService(pb_grpc.DecisionSupportServiceServicer):
    def __init__(self, canned: list[list[bytes]]) -> None:
        self._canned = [[pb.EvaluateResponse.FromString(r) for r in answer] for answer in canned]

    def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.EvaluateResponse]:
        index = int(request.facts[0].id.split(".", 1)[0][1:])
        yield from self._canned[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--canned", required=True)
    args = parser.parse_args()
    with open(args.canned, "rb") as file:
        canned = pickle.load(file)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_DecisionSupportServiceServicer_to_server(CannedService(canned), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
