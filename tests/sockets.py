"""Who listens where: read from /proc, for tests of real server processes."""

from __future__ import annotations

import os
from pathlib import Path


def _listening(port: int) -> dict[str, str]:
    """{socket inode: bound IPv4 address} of the TCP sockets listening on `port`."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            octets = bytes.fromhex(address)[::-1]  # little-endian on x86
            found[fields[9]] = ".".join(str(octet) for octet in octets)
    return found


def listening_address(port: int) -> str | None:
    """The IPv4 address a socket listening on `port` is bound to, if any."""
    return next(iter(_listening(port).values()), None)


def listener_pid(port: int, candidates: list[int]) -> int | None:
    """Which of `candidates` holds the socket listening on `port`."""
    inodes = set(_listening(port))
    for pid in candidates:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return pid
    return None
