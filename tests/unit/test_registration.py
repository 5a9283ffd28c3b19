"""The registration RPC server (registration.py) and nvo3-register.

A real :class:`RegistrationServer` listens on 127.0.0.1 (ephemeral port)
inside the eventlet hub of the test process; clients use green sockets, so
the test's greenlet yields to the server while it waits for a reply.  The
server works on a real :class:`Service` (memory store), as in the app.
"""

import contextlib
import dataclasses
import io
import os
import sys

import eventlet
import msgpack
import pytest
from eventlet.green import socket as green_socket
from eventlet.green import subprocess as green_subprocess
from os_ken.lib import hub, rpc
from os_ken.lib.packet import arp, ethernet, packet

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import persist
from nvo3_ryu_app.northbound import registration
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.cli import register as cli
from nvo3_ryu_app.service import Service
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.storage.store import MemoryStore

NVE1 = '0000000000000001'
MAC = '02:00:00:00:00:01'
IP10, IP20 = '192.168.1.10', '192.168.2.10'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class Ctl:
    """What RegistrationServer needs of the app (app.NVO3App)."""

    def __init__(self):
        self.service = Service(Settings(), MemoryStore())
        self.authority = self.service.authority
        self.views = self.service.views
        self.counters = self.service.counters
        self.clock = 1000.0

    def now(self):
        self.clock += 1.0
        return self.clock

    def execute(self, command):
        try:
            return self.service.execute(command, self.now())
        finally:
            self.service.sync()

    def wait_verdict(self, vid, timeout=None):
        """No switch answers the probes of a registration here: its time
        passes (the app's ticker), and the verdict is the silence's."""
        verdict = self.authority.take_verdict(vid)
        if verdict is None:
            self.clock += self.service.settings.move_probe_timeout
            self.service.tick(self.now())
            self.service.sync()
            verdict = self.authority.take_verdict(vid)
        return verdict


@pytest.fixture
def ctl():
    ctl = Ctl()
    for vnid in (10, 20):
        ctl.execute(C.CreateVN(vnid, 'red%d' % vnid, 'l3',
                               gateway_mac='02:fe:00:00:00:%02x' % vnid,
                               gateway_ips=['192.168.%d.1/24' % (vnid // 10)]))
    ctl.execute(C.CreateVN(40, 'blue', 'l2'))
    ctl.execute(C.RegisterNVE(1, '10.0.0.1'))
    ctl.execute(C.RegisterNVE(2, '10.0.0.2'))
    # The operator's bindings (a registration binds no port).
    ctl.execute(C.BindPort(1, 'p1', vnid=10))
    ctl.execute(C.BindPort(1, 'p3', vlans={10: 40}))
    ctl.authority.switch_connected(1, {'p1': 1, 'p2': 2, 'p3': 3,
                                       'vxlan0': 100}, '02:aa:00:00:00:01',
                                   ctl.now())
    return ctl


@contextlib.contextmanager
def running(srv):
    """``srv`` serving on an ephemeral port: ``(srv, (host, port))``."""
    addr = srv.listen('127.0.0.1', 0)
    thread = hub.spawn(srv.serve, *addr)
    eventlet.sleep(0)
    try:
        yield srv, addr
    finally:
        hub.kill(thread)
        srv.server.server.close()


@pytest.fixture
def server(ctl):
    with running(registration.RegistrationServer(ctl)) as served:
        yield served


def connect(addr):
    sock = green_socket.create_connection(addr)
    sock.settimeout(5.0)
    return sock


def client(addr):
    return rpc.Client(connect(addr))


def state(ctl):
    """The database and what is stored of it."""
    db = ctl.authority.db
    return (persist.all_records(db), ctl.authority.store.load(),
            {k: dataclasses.asdict(a) for k, a in db.attachments.items()},
            {d: {p: b.to_dict() for p, b in n.bindings.items()}
             for d, n in db.nves.items()})


def assoc(**fields):
    params = dict(nve=NVE1, port='p1', mac=MAC, vnid=10)
    params.update(fields)
    return [{k: v for k, v in params.items() if v is not None}]


def rpc_error(cl, method, params):
    with pytest.raises(rpc.RPCError) as info:
        cl.call(method, params)
    return info.value.get_value()


# --- requests ----------------------------------------------------------------

def test_associate_is_committed_before_the_reply(ctl, server):
    _, addr = server
    cl = client(addr)
    result = cl.call('associate', assoc(ip=IP10, bid=1))
    assert result['action'] == 'registered'
    assert result['tesid'] == {'vnid': 10, 'nve': NVE1, 'ts': MAC}
    entry, = result['entries']
    assert (entry['ip'], entry['bid'], entry['source']) == (
        IP10, 1, 'registered')
    assert result['bindings'] == [{
        'mac': MAC, 'vnid': 10, 'service': 'l3', 'ip': IP10, 'vlan': None,
        'bid': 1, 'nve': NVE1, 'port': 'p1'}]
    auth = ctl.authority
    assert ('att', (10, MAC)) in auth.store.load()          # persisted
    desired = auth.planner.tables[1].desired.values()        # and planned
    assert any(f.table == P.CLASSIFY and f.priority == P.PRIO_ACCESS_BID
               for f in desired if isinstance(f, P.Flow))
    assert auth.counters['rpc_requests_associate_ok'] == 1


def test_register_three_bids_query_and_dissociate(ctl, server):
    _, addr = server
    cl = client(addr)
    cl.call('associate', assoc(ip=IP10, bid=1))
    cl.call('associate', assoc(vnid=20, ip=IP20, bid=2))
    cl.call('associate', assoc(port='p3', vnid=40, vlan=10, bid=3,
                               ip=None))
    # A vNIC is at one place: the L2 binding moved the others to p3.
    view = cl.call('query', [{'vnid': 20, 'mac': MAC}])
    assert [(b['vnid'], b['bid'], b['port']) for b in view['bindings']] == [
        (10, 1, 'p3'), (20, 2, 'p3'), (40, 3, 'p3')]
    assert cl.call('associate', assoc(port='p3', vnid=20, bid=2,
                                      ip=None))['action'] == 're-registered'
    done = cl.call('dissociate', [{'nve': NVE1, 'mac': MAC, 'bid': 2}])
    assert [b['bid'] for b in done['removed']] == [2]
    assert [b['bid'] for b in done['bindings']] == [1, 3]
    err = rpc_error(cl, 'query', [{'vnid': 20, 'mac': MAC}])
    assert err['code'] == 'not-found' and err['field'] == 'mac'
    counters = ctl.authority.counters
    assert counters['rpc_requests_associate_ok'] == 4
    assert counters['rpc_requests_dissociate_ok'] == 1
    assert counters['rpc_requests_query_ok'] == 1
    assert counters['rpc_requests_query_not_found'] == 1


BAD_REQUESTS = [
    # (setup calls, method, params, code, field, words in the message)
    ([assoc(ip=IP10)], 'associate', assoc(vnid=20, ip=IP20, bid=2),
     'conflict', 'bid', 'BID'),
    ([assoc(ip=IP10)], 'associate', assoc(ip='192.168.1.11'),
     'conflict', 'bid', 'second binding'),
    ([assoc(ip=IP10, bid=1)], 'associate', assoc(ip='192.168.1.11', bid=1),
     'conflict', 'ip', 're-used with another IP'),
    ([], 'associate', assoc(bid=7), 'not-found', 'bid', 'never registered'),
    ([], 'associate', assoc(vnid=99, ip=IP10), 'not-found', 'vnid', '99'),
    ([], 'associate', assoc(nve='00000000000000ff', ip=IP10), 'not-found',
     'nve', '00000000000000ff'),
    ([], 'associate', assoc(port='p3', vnid=20, ip=IP20, vlan=10),
     'conflict', 'vlan', 'already bound to VN 40'),
    ([], 'associate', assoc(vnid='10', ip=IP10), 'bad-request', 'vnid',
     'integer'),
    ([], 'associate', assoc(mac=5, ip=IP10), 'bad-request', 'mac', 'string'),
    ([], 'associate', assoc(ip=IP10, bid=True), 'bad-request', 'bid',
     'integer'),
    ([], 'associate', assoc(ip=IP10, bid=1.5), 'bad-request', 'bid',
     'integer'),
    ([], 'associate', assoc(nve=1.5, ip=IP10), 'bad-request', 'nve', ''),
    ([], 'associate', assoc(ip=10), 'bad-request', 'ip', 'string'),
    ([], 'associate', assoc(ip=IP10, vlan=[1]), 'bad-request', 'vlan', ''),
    ([], 'associate', assoc(ip=IP10, mac=None), 'bad-request', 'mac',
     'missing'),
    ([], 'associate', [{'nve': NVE1}], 'bad-request', 'port', 'missing'),
    ([], 'associate', assoc(ip=IP10, colour='red'), 'bad-request', 'colour',
     'unknown field'),
    ([], 'associate', [], 'bad-request', 'params', 'one parameter'),
    ([], 'associate', [1], 'bad-request', 'params', 'map of named fields'),
    ([], 'associate', [{}, {}], 'bad-request', 'params', ''),
    ([], 'associate', 'nve', 'bad-request', 'params', ''),
    ([], 'associate', assoc(mac='02:00:00:00:00'), 'bad-request', 'mac',
     'MAC address'),
    ([], 'dissociate', [{'nve': NVE1, 'mac': MAC}], 'not-found', 'mac', ''),
    ([assoc(ip=IP10, bid=1)], 'dissociate', [{'nve': NVE1, 'mac': MAC}],
     'bad-request', 'bid', 'carries the bid'),
    ([assoc(ip=IP10, bid=1)], 'dissociate',
     [{'nve': '0000000000000002', 'mac': MAC, 'bid': 1}], 'conflict', 'nve',
     'registered at NVE'),
    ([], 'query', [{'vnid': 10}], 'bad-request', 'mac', 'missing'),
    ([], 'frobnicate', [{}], 'bad-request', 'method', 'unknown method'),
    ([], 5, [{}], 'bad-request', 'method', 'unknown method'),
]


@pytest.mark.parametrize('setup,method,params,code,field,words',
                         BAD_REQUESTS)
def test_bad_requests_get_an_rpc_error_and_change_nothing(
        ctl, server, setup, method, params, code, field, words):
    _, addr = server
    sock = connect(addr)
    cl = rpc.Client(sock)
    for params0 in setup:
        cl.call('associate', params0)
    before = state(ctl)
    if not isinstance(method, str) or not isinstance(params, list):
        # os-ken's client sends string methods and list params only.
        sock.sendall(msgpack.packb([0, 77, method, params]))
        reply = msgpack.unpackb(sock.recv(65536), strict_map_key=False)
        assert reply[:2] == [1, 77] and reply[3] is None
        err = reply[2]
    else:
        err = rpc_error(cl, method, params)
    assert (err['code'], err['field']) == (code, field), err
    assert words in err['message']
    assert state(ctl) == before
    # The connection still serves.
    err = rpc_error(cl, 'query', [{'vnid': 10, 'mac': '02:00:00:00:00:99'}])
    assert err['code'] == 'not-found'
    name = method if method in registration.FIELDS else 'unknown'
    assert ctl.authority.counters['rpc_requests_%s_%s' % (
        name, code.replace('-', '_'))] >= 1


# --- garbage on the socket ---------------------------------------------------

GARBAGE = [
    b'\xc1',                                          # never used in msgpack
    b'GET / HTTP/1.0\r\n\r\n',                        # decodes to ints
    msgpack.packb([0, 1, 'query']),                   # 3 elements
    msgpack.packb([0, 'one', 'query', [{}]]),         # msgid not an int
    msgpack.packb([0, 1 << 33, 'query', [{}]]),       # msgid too large
    msgpack.packb([1, 0, None, {}]),                  # a response
    msgpack.packb([True, 1, 'query', [{}]]),          # type is a bool
    msgpack.packb({'method': 'query'}),               # a map
    msgpack.packb([]),                                # empty
    msgpack.packb('associate'),                       # a string
    b'\xa3\xff\xfe\xfd',                              # invalid UTF-8 string
    b'\xdb\x00\x10\x00\x00' + b'x' * 70000,           # over the size limit
    b'\x91' * 2000,                                   # nested too deep
]


@pytest.mark.parametrize('garbage', GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_closes_that_connection_only(ctl, server, garbage):
    _, addr = server
    other = client(addr)
    other.call('associate', assoc(ip=IP10))
    before = state(ctl)
    bad = connect(addr)
    try:
        bad.sendall(garbage)
    except OSError:
        pass          # the server may close before it has read everything
    assert _read_until_closed(bad) == b''
    assert ctl.authority.counters['rpc_bad_messages'] == 1
    assert state(ctl) == before
    # The other client, and new ones, are served as before.
    assert other.call('query', [{'vnid': 10, 'mac': MAC}])['tesid']['ts'] \
        == MAC
    assert client(addr).call('query', [{'vnid': 10, 'mac': MAC}])
    srv, _ = server
    assert srv.connections == 2


def _read_until_closed(sock):
    data = b''
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def test_requests_before_garbage_are_answered(ctl, server):
    _, addr = server
    sock = connect(addr)
    sock.sendall(msgpack.packb([0, 5, 'query', [{'vnid': 10, 'mac': MAC}]])
                 + b'\xc1')
    data = _read_until_closed(sock)
    reply = msgpack.unpackb(data, strict_map_key=False)
    assert reply[:2] == [1, 5] and reply[2]['code'] == 'not-found'
    assert ctl.authority.counters['rpc_bad_messages'] == 1


def test_pipelined_and_concurrent_clients(ctl, server):
    _, addr = server
    sock = connect(addr)
    sock.sendall(b''.join(msgpack.packb(
        [0, n, 'query', [{'vnid': 10, 'mac': MAC}]]) for n in range(3))
        + msgpack.packb([2, 'hello', []]))          # a notification: ignored
    unpacker = msgpack.Unpacker(strict_map_key=False)
    replies = []
    while len(replies) < 3:
        unpacker.feed(sock.recv(65536))
        replies.extend(unpacker)
    assert [r[1] for r in replies] == [0, 1, 2]
    clients = [client(addr) for _ in range(5)]
    pool = eventlet.GreenPool()
    macs = ['02:00:00:00:01:%02x' % n for n in range(5)]
    results = list(pool.imap(
        lambda cm: cm[0].call('associate', assoc(
            mac=cm[1], ip='192.168.1.%d' % (20 + macs.index(cm[1])))),
        zip(clients, macs)))
    assert [r['binding']['mac'] for r in results] == macs
    assert ctl.authority.counters['rpc_notifications_ignored'] == 1


# --- registered beats learned, through the authority -------------------------

def _arp_frame(src_mac, src_ip, dst_ip):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('ff:ff:ff:ff:ff:ff', src_mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=1, src_mac=src_mac, src_ip=src_ip,
                             dst_mac='00:00:00:00:00:00', dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def test_a_packet_elsewhere_does_not_move_a_registered_entry(ctl, server):
    _, addr = server
    client(addr).call('associate', assoc(ip=IP10))
    auth = ctl.authority
    ctl.execute(C.BindPort(1, 'p2', vnid=10))
    outs = auth.packet_in(1, P.CLASSIFY, 2, 'p2', {},
                          _arp_frame(MAC, IP10, '192.168.1.1'), ctl.now())
    assert outs == []
    att = auth.db.attachments[(10, MAC)]
    assert (att.nve, att.port, att.source) == (1, 'p1', 'registered')


# --- the command-line client -------------------------------------------------

@pytest.fixture
def run_cli(server, monkeypatch):
    _, addr = server
    monkeypatch.setattr(cli, 'socket', green_socket)

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(['--server', '%s:%d' % addr] + list(argv), out, err)
        return code, out.getvalue(), err.getvalue()
    return run


def test_cli_register_query_deregister(ctl, run_cli):
    code, out, err = run_cli('register', '--nve', NVE1, '--port', 'p1',
                             '--mac', MAC, '--vnid', '10', '--ip', IP10,
                             '--bid', '1')
    assert code == 0, err
    assert out.splitlines()[0] == (
        'registered: %s IP %s, BID 1, in VN 10 at NVE %s port p1'
        % (MAC, IP10, NVE1))
    assert 'binding cache of %s:' % MAC in out
    code, out, err = run_cli('register', '--nve', NVE1, '--port', 'p1',
                             '--mac', MAC, '--vnid', '20', '--ip', IP20,
                             '--bid', '2')
    assert code == 0, err
    code, out, err = run_cli('query', '--vnid', '20', '--mac', MAC)
    assert code == 0, err
    assert out.startswith('TESID <VN 20, NVE %s, TS %s>' % (NVE1, MAC))
    assert IP20 in out and 'tunnel_if_id'.upper() in out
    code, out, err = run_cli('--json', 'query', '--vnid', '10', '--mac', MAC)
    assert code == 0 and '"bid": 1' in out
    code, out, err = run_cli('deregister', '--nve', NVE1, '--mac', MAC,
                             '--bid', '2')
    assert code == 0, err
    assert out.splitlines()[0].startswith('deregistered: %s IP %s, BID 2'
                                          % (MAC, IP20))


def test_cli_refusal_exits_1_with_the_reason(ctl, run_cli):
    run_cli('register', '--nve', NVE1, '--port', 'p1', '--mac', MAC,
            '--vnid', '10', '--ip', IP10)
    code, out, err = run_cli('register', '--nve', NVE1, '--port', 'p1',
                             '--mac', MAC, '--vnid', '20', '--ip', IP20)
    assert (code, out) == (1, '')
    assert err.startswith('nvo3-register: refused: conflict:')
    assert '(field bid)' in err


@pytest.mark.parametrize('argv', [
    ['register', '--nve', NVE1, '--mac', MAC, '--vnid', '10'],  # no --port
    ['register', '--nve', NVE1, '--port', 'p1', '--mac', MAC, '--vnid',
     'ten'],
    ['explode'],
    [],
])
def test_cli_usage_errors_exit_2(run_cli, argv, capsys):
    code, _, _ = run_cli(*argv)
    assert code == 2


def test_cli_unreachable_server_exits_2(monkeypatch):
    monkeypatch.setattr(cli, 'socket', green_socket)
    probe = green_socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()          # nothing listens there now
    err = io.StringIO()
    code = cli.main(['--server', '127.0.0.1:%d' % port, 'query', '--vnid',
                     '10', '--mac', MAC], io.StringIO(), err)
    assert code == 2 and 'cannot connect' in err.getvalue()
    code = cli.main(['--server', 'host:port', 'query', '--vnid', '10',
                     '--mac', MAC], io.StringIO(), err)
    assert code == 2


@pytest.mark.parametrize('text,expected', [
    ('127.0.0.1:7000', ('127.0.0.1', 7000)), ('hv1', ('hv1', 6699)),
    ('[::1]:7000', ('::1', 7000)), ('[::1]', ('::1', 6699)),
])
def test_parse_server(text, expected):
    assert cli.parse_server(text) == expected


def test_cli_runs_as_a_program(server):
    """``python -m nvo3_ryu_app.cli.register``, a real blocking client."""
    _, addr = server
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = green_subprocess.Popen(
        [sys.executable, '-m', 'nvo3_ryu_app.cli.register', '--server',
         '%s:%d' % addr, 'register', '--nve', NVE1, '--port', 'p1', '--mac',
         MAC, '--vnid', '10', '--ip', IP10],
        stdout=green_subprocess.PIPE, stderr=green_subprocess.PIPE, env=env,
        cwd=ROOT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().startswith('registered: %s' % MAC)
