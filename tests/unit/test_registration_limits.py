"""The registration RPC against clients that hold on, and leak nothing.

A real RegistrationServer in this process's eventlet hub, with short
timeouts: silent connections and half-sent requests are closed in time, a
full server makes room by closing the longest-idle connection, and a
closed connection leaves nothing for the cycle collector (os-ken's
rpc.EndPoint refers to itself; ~45 KB a connection stayed until the
hourly full collection)."""

import collections
import gc
import time

import eventlet
import msgpack
import pytest
from eventlet.green import socket as green_socket
from os_ken.lib import rpc

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.northbound import registration
from nvo3_ryu_app.runtime import listener
from test_registration import Ctl, connect, running


@pytest.fixture
def server():
    ctl = Ctl()
    ctl.execute(C.CreateVN(10, 'red'))
    srv = registration.RegistrationServer(
        ctl, max_connections=3, idle_timeout=0.3, request_timeout=0.3)
    with running(srv) as served:
        yield served


QUERY = msgpack.packb([0, 1, 'query', [{'vnid': 10,
                                         'mac': '02:00:00:00:00:01'}]])


def answered(sock):
    sock.sendall(QUERY)
    reply = msgpack.unpackb(sock.recv(65536), strict_map_key=False)
    return reply[0] == 1 and reply[1] == 1


def closed_within(sock, seconds):
    """The server closed ``sock`` within ``seconds`` (EOF or reset)."""
    started = time.monotonic()
    sock.settimeout(seconds + 1.0)
    try:
        data = sock.recv(100)
    except (ConnectionResetError, green_socket.timeout):
        data = None if time.monotonic() - started > seconds + 0.9 else b''
    return data == b'' and time.monotonic() - started <= seconds + 0.9


def test_a_silent_connection_is_closed(server):
    srv, addr = server
    sock = connect(addr)
    assert closed_within(sock, 1.0)
    assert srv.counters['rpc_timeouts'] == 1


@pytest.mark.parametrize('part', [QUERY[:1], QUERY[:-1]])
def test_a_half_sent_request_is_closed(server, part):
    srv, addr = server
    sock = connect(addr)
    sock.sendall(part)
    assert closed_within(sock, 1.0)
    assert srv.counters['rpc_timeouts'] == 1


def test_a_request_dribbled_a_byte_at_a_time_is_closed(server):
    srv, addr = server
    big = msgpack.packb([0, 1, 'query', [{'vnid': 10, 'mac': 'x' * 200}]])
    sock = connect(addr)
    started = time.monotonic()
    with pytest.raises(OSError):
        for byte in big:         # 200 bytes, 50 ms apart: 10 s
            sock.sendall(bytes([byte]))
            eventlet.sleep(0.05)
            assert time.monotonic() - started < 2.0
    assert srv.counters['rpc_timeouts'] == 1


def test_a_full_server_closes_the_longest_idle_connection(server):
    srv, addr = server
    first = connect(addr)
    eventlet.sleep(0.05)
    others = [connect(addr) for _ in range(2)]
    eventlet.sleep(0.05)
    newest = connect(addr)           # the fourth: over max_connections
    assert answered(newest)
    assert closed_within(first, 0.2)
    assert all(answered(sock) for sock in others)
    assert srv.counters['rpc_evicted'] == 1


def test_a_closed_connection_leaves_no_cycle(server):
    """Everything of a closed connection is freed at once (reference
    counting), nothing waits for the cycle collector."""
    _, addr = server

    def one():
        sock = connect(addr)
        assert answered(sock)
        sock.close()
        eventlet.sleep(0.01)
    one()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(50):
            one()
        gc.collect()
        left = collections.Counter(
            type(obj).__name__ for obj in gc.garbage if isinstance(
                obj, (rpc.EndPoint, rpc.MessageEncoder, listener.Conn,
                      registration._Phase, msgpack.Unpacker)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == {}
