"""The readiness probe of READY = "tcp:PORT": does that port accept connections on loopback?"""
import socket

import pytest

from hotreload import readiness


def test_a_port_that_listens_on_loopback_accepts():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert readiness.accepts(server.getsockname()[1])


def test_a_port_nobody_listens_on_does_not_accept():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))  # bound, so no one else takes it, but not listening
        assert not readiness.accepts(server.getsockname()[1])


def test_a_port_that_listens_on_ipv6_loopback_only_accepts():
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with server:
        server.listen()
        assert readiness.accepts(server.getsockname()[1])
