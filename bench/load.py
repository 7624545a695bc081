"""One load-generating client process for `make bench` (imports only grpc and the stubs).

    python -m bench.load --target HOST:PORT --requests FILE --mode MODE --callers N [--offset K]

Modes:

- `channel`: N threads of the synchronous client sharing ONE channel (one
  HTTP/2 connection), as one application with a thread pool would call.
- `connections`: N synchronous threads, each on its own channel and connection
  (a local subchannel pool each), so connections spread across the server's
  worker processes as separate clients' would.
- `asyncio`: N asyncio callers, each on its own connection (the cheapest
  client grpcio offers, the load `make bench` has always used).

Every caller makes one call at a time, cycling through the requests in FILE
(a pickled list of serialized `EvaluateRequest`s) from its own offset.

The parent measures windows: once every connection has answered one call
the process prints `ready`, then for each line `START STOP` it reads
(time.monotonic() seconds, which all processes of the machine share) it calls
from START minus a short warm-up until STOP, and prints one JSON line: the
latency of every call that completed inside the window, errors, and the
messages received per completed call. It exits at the end of its input.
Between windows it is idle, so the parent can take turns between servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc

MODES = ("channel", "connections", "asyncio")
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
TIMEOUT = 30.0
WARM_UP_SECONDS = 0.2  # calls before each window opens, not counted


def _windows() -> Iterator[tuple[float, float]]:
    print("ready", flush=True)
    for line in sys.stdin:
        start_at, stop_at = (float(part) for part in line.split())
        _sleep_until(start_at - WARM_UP_SECONDS)
        yield start_at, stop_at


def _sleep_until(moment: float) -> None:
    while (left := moment - time.monotonic()) > 0:
        time.sleep(left)


class _Tally:
    """What the callers of one window saw."""

    def __init__(self, start_at: float, stop_at: float) -> None:
        self.start_at, self.stop_at = start_at, stop_at
        self.times: list[float] = []
        self.messages = 0
        self.errors = 0
        self.lock = threading.Lock()

    def report(self) -> None:
        result = {"times": self.times, "messages": self.messages, "errors": self.errors}
        print(json.dumps(result), flush=True)


class _Requests:
    """Each caller's own walk through the requests, continued across windows."""

    def __init__(self, requests: list[pb.EvaluateRequest], callers: int, offset: int) -> None:
        self.requests = requests
        self.next = [offset + number * 7919 for number in range(callers)]

    def take(self, number: int) -> pb.EvaluateRequest:
        index = self.next[number]
        self.next[number] += 1
        return self.requests[index % len(self.requests)]


def _thread_caller(stub: Any, walk: _Requests, number: int, tally: _Tally) -> None:
    times, messages, errors = [], 0, 0
    while time.monotonic() < tally.stop_at:
        request = walk.take(number)
        started = time.perf_counter()
        try:
            received = sum(1 for _ in stub.Evaluate(request, timeout=TIMEOUT))
        except grpc.RpcError:
            errors += 1
            continue
        elapsed = time.perf_counter() - started
        if tally.start_at <= time.monotonic() < tally.stop_at:
            times.append(elapsed)
            messages += received
    with tally.lock:
        tally.times += times
        tally.messages += messages
        tally.errors += errors


def _threads(
    target: str, requests: list[pb.EvaluateRequest], mode: str, callers: int, offset: int
) -> None:
    if mode == "channel":
        channels = [grpc.insecure_channel(target)]
        stubs = [pb_grpc.DecisionSupportServiceStub(channels[0])] * callers
    else:
        channels = [grpc.insecure_channel(target, options=OWN_CONNECTION) for _ in range(callers)]
        stubs = [pb_grpc.DecisionSupportServiceStub(channel) for channel in channels]
    for stub in stubs:  # every connection up before the first window
        list(stub.Evaluate(requests[0], timeout=TIMEOUT))
    walk = _Requests(requests, callers, offset)
    for start_at, stop_at in _windows():
        tally = _Tally(start_at, stop_at)
        threads = [
            threading.Thread(target=_thread_caller, args=(stubs[n], walk, n, tally))
            for n in range(callers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tally.report()
    for channel in channels:
        channel.close()


async def _async_caller(stub: Any, walk: _Requests, number: int, tally: _Tally) -> None:
    while time.monotonic() < tally.stop_at:
        request = walk.take(number)
        started = time.perf_counter()
        received = 0
        try:
            async for _ in stub.Evaluate(request, timeout=TIMEOUT):
                received += 1
        except grpc.RpcError:
            tally.errors += 1
            continue
        elapsed = time.perf_counter() - started
        if tally.start_at <= time.monotonic() < tally.stop_at:
            tally.times.append(elapsed)
            tally.messages += received


async def _asyncio(
    target: str, requests: list[pb.EvaluateRequest], callers: int, offset: int
) -> None:
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(callers)]
    stubs = [pb_grpc.DecisionSupportServiceStub(channel) for channel in channels]
    for stub in stubs:
        async for _ in stub.Evaluate(requests[0], timeout=TIMEOUT):
            pass
    walk = _Requests(requests, callers, offset)
    windows = _windows()
    loop = asyncio.get_running_loop()
    while window := await loop.run_in_executor(None, next, windows, None):
        tally = _Tally(*window)
        await asyncio.gather(*(_async_caller(stubs[n], walk, n, tally) for n in range(callers)))
        tally.report()
    for channel in channels:
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--requests", required=True, help="pickled list of serialized requests")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--callers", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args()
    with open(args.requests, "rb") as file:
        requests = [pb.EvaluateRequest.FromString(data) for data in pickle.load(file)]
    if args.mode == "asyncio":
        asyncio.run(_asyncio(args.target, requests, args.callers, args.offset))
    else:
        _threads(args.target, requests, args.mode, args.callers, args.offset)


if __name__ == "__main__":
    main()
