"""The probe of ``READY = "tcp:PORT"``: a worker is ready once that port accepts connections
on loopback. Thread workers and program workers alike: it looks at the port, not the worker.

The host loop calls it, so it never waits: a connection to loopback is refused or accepted at
once, and one that is neither (a full listen backlog) counts as not yet.
"""
from __future__ import annotations

import socket

__all__ = ["LOOPBACK", "accepts"]

LOOPBACK = (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6))


def accepts(port: int) -> bool:
    """True if something accepts TCP connections on ``port`` of the IPv4 or IPv6 loopback."""
    return any(_connects(address, family, port) for address, family in LOOPBACK)


def _connects(address: str, family: socket.AddressFamily, port: int) -> bool:
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError:  # no IPv6 here
        return False
    with probe:
        probe.setblocking(False)
        try:
            if probe.connect_ex((address, port)) == 0:
                return True
            probe.getpeername()  # a connect still in progress may have completed meanwhile
        except OSError:  # refused, or not connected yet
            return False
        return True
