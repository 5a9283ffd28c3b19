"""Hostile input to the running app end to end, then the app serving
normally.

One lab: the two-NVE topology (real namespaced Open vSwitch NVEs, VMs,
VXLAN), the app under osken-manager with short limits so that timeouts
take seconds.  Raw sockets on loopback send what a hostile peer would:
OpenFlow nonsense, switches that never answer, RPC and HTTP clients
that hold connections, fill descriptors, or send what the API must refuse;
and a damaged state directory.  After each, :func:`assert_serving` shows
the app serving as before:

* REST answers;
* the NVEs get the flows of a change made *after* the attack (a vNIC
  registered over the RPC lands in both NVEs' tables, /v1/sync in sync)
  and the VMs still reach each other;
* the process's memory stayed within bounds, and its log holds no
  traceback.

The pure parts are unit-tested (test_ofguard, test_listener, test_ratelog,
test_registration_limits, test_rest_hostile, test_store, test_persist).
"""

import collections
import json
import os
import resource
import shutil
import socket
import struct
import sys
import time
import urllib.request

import msgpack
import pytest

from nvo3_ryu_app.storage import store as store_mod
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.controller import ControllerError, ControllerProcess
from nvo3_ryu_app.testbed.lab import Lab

from conftest import ROOT, topology_path

sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import ofswitch_sim as S  # noqa: E402  (OpenFlow bytes, by struct)

pytestmark = pytest.mark.integration

NVE1, NVE2 = '0000000000000001', '0000000000000002'
VNID = 5001
# Short enough that a timeout is seconds, long enough for real NVEs.
LIMITS = '''
rest_max_connections = 32
rest_idle_timeout = 2
rest_request_timeout = 2
rpc_max_connections = 32
rpc_idle_timeout = 2
rpc_request_timeout = 2
of_max_connections = 64
of_handshake_timeout = 2
nve_echo_interval = 0.5
nve_reply_timeout = 3
nve_max_queued_packets = 64
'''
RSS_MARGIN_MB = 80          # growth allowed over the whole module


@pytest.fixture(scope='module')
def lab():
    _require_root_and_tools()
    lab = Lab(topology_path('two-nve.yaml'), extra_ini=LIMITS).start()
    try:
        lab.wait_sync()
        lab.baseline_rss = rss_mb(lab)
        lab.macs = iter(range(1, 250))
        yield lab
    finally:
        problems = lab.stop(report=False)
    # The one OpenFlow error expected: the refusing switch's, below.
    unexpected = [p for p in problems if 'NVE 00000000000000f7' not in p]
    if not unexpected:
        # Kept only for that one: the run leaves nothing behind.
        for kept in lab.kept:
            shutil.rmtree(kept, ignore_errors=True)
    assert unexpected == []


def rss_mb(lab):
    with open('/proc/%d/status' % lab.ctl.pid) as handle:
        for line in handle:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    raise AssertionError('no VmRSS')


def metric(lab, name):
    return lab.metric_sum(name)


# --- the app still serves ------------------------------------------------------

def rpc(lab, method, fields, sock=None):
    """One msgpack-RPC call; returns (error, result)."""
    own = sock is None
    sock = sock or socket.create_connection(('127.0.0.1', lab.ctl.rpc_port),
                                            timeout=10)
    try:
        sock.sendall(msgpack.packb([0, 7, method, [fields]]))
        unpacker = msgpack.Unpacker(strict_map_key=False)
        while True:
            data = sock.recv(65536)
            assert data, 'RPC connection closed before the reply'
            unpacker.feed(data)
            for reply in unpacker:
                return reply[2], reply[3]
    finally:
        if own:
            sock.close()


def wait_flows(lab, mac, present, timeout=15.0):
    def done():
        if not lab.get('/v1/sync')['in_sync']:
            return False
        return all((('dl_dst=' + mac) in ' '.join(lab.dump_flows(n)))
                   == present for n in ('nve1', 'nve2'))
    lab.wait_for(done, timeout=timeout, what='flows of %s %s' % (
        mac, 'installed' if present else 'removed'))


def assert_serving(lab):
    """REST answers, both NVEs get the flows of a new registration, the
    VMs reach each other, memory and log are bounded."""
    assert lab.ctl.running, lab.ctl.log_tail()
    assert lab.get('/v1/vns')[0]['vnid'] == VNID
    mac = '02:00:00:00:7e:%02x' % next(lab.macs)
    error, _ = rpc(lab, 'associate', {'nve': NVE1, 'port': 'h1-0',
                                      'mac': mac, 'vnid': VNID})
    assert error is None, error
    wait_flows(lab, mac, True)
    error, _ = rpc(lab, 'dissociate', {'nve': NVE1, 'mac': mac})
    assert error is None, error
    wait_flows(lab, mac, False)
    lab.wait_sync(nves=[NVE1, NVE2])
    assert lab.ping('h1', '192.168.50.3', count=2), 'no data plane'
    assert rss_mb(lab) < lab.baseline_rss + RSS_MARGIN_MB
    assert 'Traceback' not in lab.ctl.log_text()


def closed_within(sock, seconds):
    """Everything the peer sends is read until it closes; True if that
    happened within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True


def http(lab, raw):
    """Send raw bytes to REST; the status of the answer (None if none)."""
    with socket.create_connection(('127.0.0.1', lab.ctl.rest_port),
                                  timeout=10) as sock:
        sock.sendall(raw)
        data = b''
        while b'\r\n' not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
        return int(data.split(b' ', 2)[1])


def request(lab, method, path, body=b'', headers=()):
    head = ['%s %s HTTP/1.1' % (method, path), 'Host: 127.0.0.1',
            'Connection: close', 'Content-Length: %d' % len(body)]
    head += list(headers)
    return http(lab, ('\r\n'.join(head) + '\r\n\r\n').encode() + body)


def send_json(lab, method, path, value):
    return request(lab, method, path, json.dumps(value).encode(),
                   ['Content-Type: application/json'])


# --- a switch on a raw socket, as (mis)behaving as told ---------------------------

class RawSwitch:
    """An OpenFlow 1.3 switch: HELLO, features, port list, and then as
    told: ``mute`` lists what it never answers ('dump', 'barrier',
    'echo'), ``refuse`` makes it answer flow-mods with an error."""

    def __init__(self, lab, dpid, mute=(), refuse=False):
        self.sock = socket.create_connection(('127.0.0.1', lab.ctl.of_port),
                                             timeout=10)
        self.dpid, self.mute, self.refuse = dpid, set(mute), refuse
        self.buf = b''
        self.seen = collections.Counter()
        self.closed = False
        self.sock.sendall(S.msg(S.HELLO, 1))

    def ports(self):
        return b''.join(S._PORT.pack(no, b'\x0a\x00\x00\x00\x00' + bytes(
            [no & 0xFF]), name.encode(), 0, S.PORT_STATE_LIVE, 0, 0, 0, 0,
            10, 10) for no, name in ((S.PORT_LOCAL, 'br-x'), (1, 'p1')))

    def _answer(self, mtype, xid, data):
        self.seen[mtype] += 1
        if mtype == S.FEATURES_REQUEST:
            return S.msg(S.FEATURES_REPLY, xid, S._FEATURES.pack(
                self.dpid, 0, 254, 0, 0x4F, 0))
        if mtype == S.MULTIPART_REQUEST:
            mp_type = S._MP.unpack_from(data, 8)[0]
            if mp_type == S.MP_PORT_DESC:
                body = self.ports()
            elif 'dump' in self.mute:
                return b''
            else:
                body = b''
            return S.msg(S.MULTIPART_REPLY, xid, S._MP.pack(mp_type, 0) +
                         body)
        if mtype == S.BARRIER_REQUEST and 'barrier' not in self.mute:
            return S.msg(S.BARRIER_REPLY, xid)
        if mtype == S.ECHO_REQUEST and 'echo' not in self.mute:
            return S.msg(S.ECHO_REPLY, xid, data[8:])
        if mtype == S.FLOW_MOD and self.refuse and \
                self.seen[S.FLOW_MOD] == 1:
            return S.msg(S.ERROR, xid, struct.pack('!HH', 5, 0) + data[:64])
        return b''

    def run(self, until, timeout=10.0, quiet=False):
        """Answer the app until ``until(self)`` or it closes us (or, with
        ``quiet``, until ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not until(self):
            left = deadline - time.monotonic()
            if left <= 0:
                if quiet:
                    return
                raise AssertionError('switch %x: not reached in %.0fs (%s)'
                                     % (self.dpid, timeout, self.seen))
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                data = b''
            if not data:
                self.closed = True
                return
            self.buf += data
            out = []
            while len(self.buf) >= 8:
                _, mtype, length, xid = S._HDR.unpack_from(self.buf)
                if len(self.buf) < length:
                    break
                out.append(self._answer(mtype, xid, self.buf[:length]))
                self.buf = self.buf[length:]
            if any(out):
                self.sock.sendall(b''.join(out))

    def close(self):
        self.sock.close()


def dumped(switch):
    # Its ports, then what it holds: first its stamp (a flow request of
    # table 8, southbound/stamp.py), the whole flow and meter dump when the
    # stamp does not say it is in sync.
    return switch.seen[S.MULTIPART_REQUEST] >= 2


# --- 1. one OpenFlow message must not hang the controller ---------------------

ZERO_ENTRY = {
    'flow stats': struct.pack('!BBHI', 4, 19, 72, 1) +
    struct.pack('!HH4x', 1, 0) + bytes(56),
    'meter config': struct.pack('!BBHI', 4, 19, 72, 1) +
    struct.pack('!HH4x', 10, 0) + bytes(56),
}


def test_zero_length_multipart_entries_are_rejected(lab):
    before = metric(lab, 'nvo3_openflow_bad_messages_total')
    for payload in ZERO_ENTRY.values():
        # Without even a HELLO, as in the report ...
        with socket.create_connection(('127.0.0.1', lab.ctl.of_port),
                                      timeout=10) as sock:
            sock.sendall(payload)
            assert closed_within(sock, 5)
        # ... and from a switch that finished its handshake.
        switch = RawSwitch(lab, 0xf1)
        switch.run(dumped)
        switch.sock.sendall(payload)
        switch.run(lambda s: False)
        assert switch.closed
        switch.close()
    assert metric(lab, 'nvo3_openflow_bad_messages_total') == before + 4
    assert_serving(lab)


# --- 2. an address with a zone index ------------------------------------------

def test_an_address_with_a_zone_index_is_refused_everywhere(lab, tmp_path):
    scoped = 'fe80::1%eth0'
    error, result = rpc(lab, 'associate', {
        'nve': NVE1, 'port': 'h2-0', 'mac': '02:00:00:00:7f:01',
        'vnid': VNID, 'ip': scoped})
    assert result is None and error['code'] == 'bad-request'
    assert error['field'] == 'ip' and 'zone' in error['message']
    assert send_json(lab, 'PUT', '/v1/nves/' + NVE1,
                     {'vtep_ip': scoped}) == 400
    assert send_json(lab, 'POST', '/v1/vns', {
        'vnid': 5077, 'name': 'zoned', 'service': 'l3',
        'gateway': {'mac': '02:00:00:00:fe:77',
                    'ips': [scoped + '/64']}}) == 400
    assert request(lab, 'GET', '/v1/mappings?ip=fe80::1%25eth0') == 400
    assert lab.get('/v1/nves/' + NVE1)['vtep_ip'] == '10.99.0.1'
    assert_serving(lab)
    # Nothing of it was stored: a restart serves as before.
    lab.ctl.restart(wait_for=('of', 'rest', 'rpc'))
    lab.wait_sync()
    assert_serving(lab)
    # The declarative file is an entry too: the app refuses to start.
    bad = tmp_path / 'zoned.yaml'
    bad.write_text('nves:\n  - {dpid: "00000000000000aa", vtep_ip: "%s"}\n'
                   % scoped)
    other = ControllerProcess(config_file=str(bad))
    try:
        with pytest.raises(ControllerError):
            other.start(timeout=30, wait_for=('rest',))
        assert 'nves[0]: vtep_ip must be an IPv4 or IPv6 address (no ' \
            'zone index)' in other.log_text()
    finally:
        other.close()


def test_in_sync_means_the_switch_took_every_flow(lab):
    """A flow the switch refuses keeps it out of sync, visibly; the
    well-behaved NVEs are not held up by it."""
    assert send_json(lab, 'POST', '/v1/vns',
                     {'vnid': 5097, 'name': 'refused'}) == 201
    assert send_json(lab, 'PUT', '/v1/nves/00000000000000f7',
                     {'name': 'refusing'}) == 201
    assert send_json(lab, 'PUT', '/v1/nves/00000000000000f7/ports/p1',
                     {'vnid': 5097}) == 201
    switch = RawSwitch(lab, 0xf7, refuse=True)
    try:
        switch.run(lambda s: s.seen[S.BARRIER_REQUEST] >= 1)

        def refused():
            switch.run(lambda s: False, timeout=0.3, quiet=True)
            status = lab.get('/v1/sync')['nves']['00000000000000f7']
            return status['applied_seq'] == status['requested_seq'] and \
                status['failed'] >= 1 and not status['in_sync']
        lab.wait_for(refused, timeout=10, what='the refused flow counted')
        view = lab.get('/v1/nves/00000000000000f7')
        assert view['flows_failed'] >= 1 and view['in_sync'] is False
        assert lab.metrics()[
            'nvo3_flows_failed{nve=00000000000000f7}'] >= 1
        assert_serving(lab)
    finally:
        switch.close()


# --- 3. out of file descriptors --------------------------------------------------

def test_running_out_of_descriptors_kills_no_server(lab):
    pid = lab.ctl.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir('/proc/%d/fd' % pid))
    flood = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 20, hard))
        for port in (lab.ctl.rest_port, lab.ctl.rpc_port, lab.ctl.of_port):
            for _ in range(40):
                flood.append(socket.create_connection(('127.0.0.1', port),
                                                      timeout=5))
        time.sleep(2.0)
        assert lab.ctl.running, lab.ctl.log_tail()
    finally:
        for sock in flood:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    log = lab.ctl.log_text()
    assert 'cannot accept' in log
    errors = sum(v for k, v in lab.metrics().items()
                 if k.startswith(('nvo3_rest_accept_errors_total',
                                  'nvo3_rpc_accept_errors_total',
                                  'nvo3_openflow_accept_errors_total')))
    assert errors > 0
    # Logged once per episode and listener, not per failed accept.
    assert log.count('cannot accept') <= 6
    assert_serving(lab)
    switch = RawSwitch(lab, 0xf3)          # OpenFlow accepts new switches
    try:
        switch.run(dumped)
    finally:
        switch.close()


# --- 5. RPC connections do not leak ------------------------------------------------

def test_rpc_connections_leave_nothing_behind(lab):
    for _ in range(200):                    # warm up allocator and caches
        rpc(lab, 'query', {'vnid': VNID, 'mac': '02:00:00:00:50:01'})
    before = rss_mb(lab)
    for _ in range(3000):
        error, result = rpc(lab, 'query', {'vnid': VNID,
                                           'mac': '02:00:00:00:50:01'})
        assert error is None and result['tesid']['nve'] == NVE1
    # 45 KB a connection before (136 MB for these): now none.
    assert rss_mb(lab) - before < 15
    assert_serving(lab)


# --- 6. an HTTP method is not a metric label ---------------------------------------

def test_method_strings_do_not_grow_the_metrics(lab):
    def size():
        return len(urllib.request.urlopen(
            lab.url('/metrics'), timeout=10).read())
    for i in range(20):
        request(lab, 'M%03d' % i + 'X' * 1000, '/v1/vns')
    before = size()
    for i in range(20, 2000):
        assert request(lab, 'M%04d' % i + 'X' * 1000, '/v1/vns') == 405
    assert size() - before < 2000          # 62 KB -> 34.5 MB before
    assert_serving(lab)


# --- 7. connections that hold on -------------------------------------------------

def test_idle_and_half_sent_connections_are_bounded(lab):
    evicted = metric(lab, 'nvo3_rest_evicted_total')
    idle = [socket.create_connection(('127.0.0.1', lab.ctl.rest_port),
                                     timeout=10) for _ in range(200)]
    rpc_idle = [socket.create_connection(('127.0.0.1', lab.ctl.rpc_port),
                                         timeout=10) for _ in range(100)]
    try:
        # REST and RPC answer although 300 connections wait (before, the
        # full pool made REST wait for ever).
        assert lab.get('/v1/sync')['in_sync'] in (True, False)
        error, _ = rpc(lab, 'query', {'vnid': VNID,
                                      'mac': '02:00:00:00:50:01'})
        assert error is None
        assert metric(lab, 'nvo3_rest_evicted_total') - evicted >= 150
        # Half-sent: a request line, headers, a body, an RPC message.
        halves = []
        for raw in (b'GET /v1/v', b'GET /v1/vns HTTP/1.1\r\nHost: x',
                    b'POST /v1/vns HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                    b'Content-Type: application/json\r\n'
                    b'Content-Length: 100\r\n\r\n{"vnid'):
            sock = socket.create_connection(
                ('127.0.0.1', lab.ctl.rest_port), timeout=10)
            sock.sendall(raw)
            halves.append(sock)
        sock = socket.create_connection(('127.0.0.1', lab.ctl.rpc_port),
                                        timeout=10)
        sock.sendall(msgpack.packb([0, 1, 'query', [{'vnid': VNID}]])[:5])
        halves.append(sock)
        # Closed (after a 408 for the body) within the 2 s limits.
        for sock in halves:
            assert closed_within(sock, 6), sock
            sock.close()
        # The idle ones the limit left open were closed after 2 s too.
        for sock in idle[-20:] + rpc_idle[-20:]:
            assert closed_within(sock, 6)
    finally:
        for sock in idle + rpc_idle:
            sock.close()
    assert_serving(lab)


# --- 8. switches that never answer ---------------------------------------------------

def test_a_switch_that_never_answers_its_dump_queues_nothing(lab):
    assert send_json(lab, 'POST', '/v1/vns',
                     {'vnid': 5098, 'name': 'silent'}) == 201
    assert send_json(lab, 'PUT', '/v1/nves/00000000000000f8',
                     {'name': 'silent'}) == 201
    assert send_json(lab, 'PUT', '/v1/nves/00000000000000f8/ports/p1',
                     {'vnid': 5098}) == 201
    dropped = metric(lab, 'nvo3_packet_outs_dropped_total')
    timeouts = metric(lab, 'nvo3_nve_reply_timeouts_total')
    before = rss_mb(lab)
    switch = RawSwitch(lab, 0xf8, mute={'dump', 'barrier', 'echo'})
    try:
        switch.run(dumped)
        frame = S.arp_request('02:00:00:00:f8:01', '10.98.0.1',
                              '10.98.0.2') + bytes(1400)
        burst = b''.join(S.packet_in(i, 1, 5098, frame)
                         for i in range(3000))
        switch.sock.sendall(burst)
        switch.run(lambda s: False, timeout=15)
        assert switch.closed                    # dropped, not kept
    finally:
        switch.close()
    # At most 64 waited; most of the 3,000 were dropped (the switch went
    # at 3 s, maybe before all of them were read).
    assert metric(lab, 'nvo3_packet_outs_dropped_total') - dropped > 1000
    assert metric(lab, 'nvo3_nve_reply_timeouts_total') == timeouts + 1
    assert rss_mb(lab) - before < 30         # +145 MB in 10 s before
    assert lab.get('/v1/sync')['nves']['00000000000000f8'][
        'connected'] is False
    assert_serving(lab)


@pytest.mark.parametrize('mute', ['barrier', 'echo'])
def test_a_switch_that_stops_answering_is_dropped(lab, mute):
    timeouts = metric(lab, 'nvo3_nve_reply_timeouts_total')
    said = 'NVE 00000000000000f9 did not answer its %s' % mute
    logged = lab.ctl.log_text().count(said)
    switch = RawSwitch(lab, 0xf9, mute={mute})
    try:
        switch.run(lambda s: False, timeout=15)
        assert switch.closed
    finally:
        switch.close()
    assert metric(lab, 'nvo3_nve_reply_timeouts_total') == timeouts + 1
    assert lab.ctl.log_text().count(said) == logged + 1
    assert_serving(lab)


# --- 9. what a peer can make the app log ----------------------------------------------

def test_what_peers_make_the_app_log_is_bounded(lab):
    size = len(lab.ctl.log_text())
    nonsense = [S.msg(200, 1, bytes(65000)),                  # unknown type
                S.msg(S.HELLO, 1, struct.pack('!HH4x', 1, 0)),  # element 0
                struct.pack('!BBHI', 0, 0, 8, 1),                # version 0
                S.msg(S.ERROR, 1, struct.pack('!HH', 0, 0) + b'\xff' * 40)]
    for _ in range(25):
        for payload in nonsense:
            with socket.create_connection(('127.0.0.1', lab.ctl.of_port),
                                          timeout=10) as sock:
                sock.sendall(payload)
                assert closed_within(sock, 5)
    grown = lab.ctl.log_text()[size:]
    assert len(grown) < 20000, lab.ctl.log_tail()   # ~325 KB per 64 KB
    assert grown.count('rejected:') <= 20           # per minute, per kind
    assert 'Traceback' not in lab.ctl.log_text()
    assert_serving(lab)


# --- 10. REST ---------------------------------------------------------------------------

def test_rest_refuses_what_a_browser_or_a_broken_client_sends(lab):
    # A client gone mid-body: no 500, no traceback.
    with socket.create_connection(('127.0.0.1', lab.ctl.rest_port),
                                  timeout=10) as sock:
        sock.sendall(b'POST /v1/vns HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                     b'Content-Type: application/json\r\n'
                     b'Content-Length: 1000\r\n\r\n{"vnid": 5')
    time.sleep(0.5)
    assert not [k for k in lab.metrics() if 'status=500' in k]
    vn = json.dumps({'vnid': 5099, 'name': 'forged'}).encode()
    # Cross-site: a form or a text body.
    for ctype in ('text/plain', 'application/x-www-form-urlencoded'):
        assert request(lab, 'POST', '/v1/vns', vn,
                       ['Content-Type: ' + ctype]) == 415
    assert request(lab, 'POST', '/v1/vns', vn) == 415
    # DNS rebinding: another site's name.
    raw = (b'GET /v1/vns HTTP/1.1\r\nHost: rebind.example:%d\r\n'
           b'Connection: close\r\n\r\n' % lab.ctl.rest_port)
    assert http(lab, raw) == 400
    assert all(vn['vnid'] != 5099 for vn in lab.get('/v1/vns'))
    # Port names OVS cannot have, and the all-zero dpid.
    for name in ('.', '..', ':'):
        assert send_json(lab, 'PUT', '/v1/nves/%s/ports/%s' % (NVE1, name),
                         {'vnid': VNID}) == 400
    assert request(lab, 'GET', '/v1/nves/0000000000000000') == 400
    assert_serving(lab)


# --- 4. a damaged journal (last: it restarts the app) ------------------------------------

def _frames(path):
    data = open(path, 'rb').read()
    frames, end, problem = store_mod._scan(data, path)
    assert problem is None
    return frames


def test_a_shortened_or_lost_journal_stops_the_start(lab):
    ctl = lab.ctl
    journal = os.path.join(ctl.state_dir, store_mod.JOURNAL)
    pristine = os.path.join(ctl.rundir, 'pristine')
    ctl.stop()
    shutil.copytree(ctl.state_dir, pristine)
    frames = _frames(journal)
    assert len(frames) > 20, 'the earlier tests committed'
    half = os.path.getsize(journal) // 2
    cut_at = max(offset for offset, _ in frames if offset <= half)

    def damaged(damage, where):
        shutil.rmtree(ctl.state_dir)
        shutil.copytree(pristine, ctl.state_dir)
        damage()
        with pytest.raises(ControllerError):
            ctl.start(timeout=30, wait_for=('of', 'rest'))
        assert ctl.returncode not in (None, 0)
        assert '%s is corrupt at byte %d' % (journal, where) in \
            ctl.log_text(), ctl.log_tail()
        assert 'recover_from_snapshot' in ctl.log_text()

    damaged(lambda: os.truncate(journal, half), cut_at)
    damaged(lambda: os.truncate(journal, 5), 0)
    damaged(lambda: os.unlink(journal), 0)
    # A record with a good CRC and a scoped address (as an older version
    # stored it), as the commit after the last one.
    last_seq = msgpack.unpackb(frames[-1][1], strict_map_key=False)[0]
    record = msgpack.packb([last_seq + 1, [[
        'nve', 7, {'name': None, 'vtep_ip': 'fe80::1%eth0',
                   'origin': 'rest', 'bindings': {}}]]])
    size = os.path.getsize(os.path.join(pristine, store_mod.JOURNAL))

    def append_bad():
        with open(journal, 'ab') as handle:
            handle.write(store_mod._frame(record))
    damaged(append_bad, size)
    # With the option the app starts from what is left, and serves.
    shutil.rmtree(ctl.state_dir)
    shutil.copytree(pristine, ctl.state_dir)
    os.truncate(journal, half)
    ctl.extra_ini = LIMITS + 'recover_from_snapshot = true\n'
    ctl.start(timeout=60, wait_for=('of', 'rest', 'rpc'))
    assert 'acknowledged commits are missing' in ctl.log_text()
    ctl.extra_ini = LIMITS
    lab.wait_sync()
    assert_serving(lab)
