"""Who may change the network, on real OVS: every hijack attempt fails while
the victim's traffic keeps flowing.

One lab: four namespaced Open vSwitch NVEs speaking OpenFlow over TLS to
the app (a per-run CA; each NVE's certificate names its datapath id; the
app requires them), the app with a generated auth file (admin token
``ops``, reader token ``viewer``, one hypervisor login per NVE) and
``accept_unknown_nves = false``.  The victim ``vic`` (nve1) is probed on a
fixed 10 ms schedule from ``pr`` (nve3) through every attack
(nvo3_ryu_app/testbed/prober.py): no probe may be lost.  The attacker is
the hypervisor of nve2 (its VM ``sp``) and a fourth switch ``rogue``, an
NVE of its own (VM ``rg``) that re-badges itself as others.

The attacks are those of the issue: REST without a token or with a
reader's; RPC calls before a login, on another hypervisor's NVE, a
registration that would take the victim's MAC or its address away while it
answers, one on a port nobody bound; a second OpenFlow session presenting
nve1's datapath id with nve1's certificate, a certificate that names
another switch, a forged one, an unknown switch, a TLS connection that
never says hello; then the operator deletes the rogue's NVE record.  Waits
are on acknowledged state, metrics and the event log; the only sleeps are
probing windows.
"""

import contextlib
import json
import os
import re
import socket
import time
import urllib.request

import pytest

from nvo3_ryu_app.cli.register import Refused, RegistrationClient
from nvo3_ryu_app.testbed import prober
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

pytestmark = pytest.mark.integration

VNID = 5001
DPID = {'nve1': '0000000000000001', 'nve2': '0000000000000002',
        'nve3': '0000000000000003', 'rogue': '0000000000000004'}
UNKNOWN = '0000000000000099'
VM = {'vic': ('02:00:00:00:71:11', '192.168.71.11'),
      'fl': ('02:00:00:00:71:12', '192.168.71.12'),
      'sp': ('02:00:00:00:71:21', '192.168.71.21'),
      'pr': ('02:00:00:00:71:31', '192.168.71.31'),
      'rg': ('02:00:00:00:71:41', '192.168.71.41')}
HOME = {'vic': 'nve1', 'fl': 'nve1', 'sp': 'nve2', 'pr': 'nve3',
        'rg': 'rogue'}
TOPOLOGY = """
name: who_may
underlay: {subnet: 10.99.0.0/24}
vns:
  - {vnid: %d, name: blue, service: l2, encap: vxlan}
nves:
%s
tenant_systems:
%s
""" % (VNID, ''.join(
    '  - {name: %s, dpid: "%s", vtep_ip: 10.99.0.%d}\n' % (n, d, i)
    for i, (n, d) in enumerate(DPID.items(), 1)), ''.join(
    '  - {name: ts_%s, nve: %s, vms: [{name: %s, vnics: [{mac: "%s", '
    'ip: %s/24, vn: blue}]}]}\n' % (vm, HOME[vm], vm, mac, ip)
    for vm, (mac, ip) in VM.items()))
INI = '''
accept_unknown_nves = false
of_handshake_timeout = 2
'''
APP_COOKIE = re.compile(r'cookie=0x4e56[0-9a-f]{12}\b')


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    _require_root_and_tools()
    path = tmp_path_factory.mktemp('who-may') / 'who-may.yaml'
    path.write_text(TOPOLOGY)
    lab = Lab(str(path), extra_ini=INI, auth=True, tls=True).start()
    try:
        lab.wait_sync()
        got = lab.reach('pr', [ip for vm, (_, ip) in VM.items()
                               if vm != 'pr'])
        assert all(got.values()), got
        lab.wait_sync()
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


# -- helpers --------------------------------------------------------------

@contextlib.contextmanager
def victim_probed(lab, what):
    """``pr`` probes ``vic`` every 10 ms meanwhile: nothing may be lost."""
    out = os.path.join(lab.tb.rundir, 'probe-%d.json' % int(
        time.time() * 1000))
    probe = prober.start(lab.tb.vms['pr'].pid, VM['vic'][1], out,
                         interval=0.01, duration=60, linger=0.3)
    try:
        time.sleep(0.3)
        yield
        time.sleep(0.3)
    finally:
        results = probe.stop()
    summary = prober.summary(results)
    print('\n%s: %d of %d probes of vic lost' % (what, summary['lost'],
                                                  summary['sent']))
    assert summary['sent'] > 50 and summary['lost'] == 0, \
        prober.outages(results)


def mapping(lab, vm):
    """Where ``vm``'s vNIC is (its mapping entries, one per address, share
    it), and its addresses but IPv6 link-local ones (the guest's kernel
    may announce one any time: learned, not an attack)."""
    entries = lab.get('/v1/mappings?mac=%s' % VM[vm][0])
    where = {(e['nve'], e['port'], e['seq']) for e in entries}
    assert len(where) == 1, entries
    return where.pop() + (sorted(e['ip'] for e in entries
                                 if not (e['ip'] or '').startswith('fe80:')),)


def events(lab, kind):
    return lab.get('/v1/events?type=%s&limit=1000' % kind)['events']


def metric(lab, name):
    return lab.metrics().get(name, 0.0)


def refused(lab, reason):
    return metric(lab, 'nvo3_openflow_sessions_refused_total{reason=%s}'
                  % reason)


def rpc(lab, hypervisor=None):
    """An RPC client, logged in as ``hypervisor`` (a name of the lab's)."""
    client = RegistrationClient('127.0.0.1', lab.ctl.rpc_port)
    if hypervisor is not None:
        client.login(hypervisor, lab.hypervisors[hypervisor]['secret'])
    return client


def rpc_refusal(call, *args, **kwargs):
    with pytest.raises(Refused) as info:
        call(*args, **kwargs)
    return info.value


def flows(lab, nve, needle):
    return [line for line in lab.dump_flows(nve)
            if APP_COOKIE.search(line) and needle in line]


def flow_set(lab, nve):
    """What the NVE holds (of ours), without counters and ages."""
    return {(f.cookie, f.table, f.priority, tuple(sorted(f.match.items())),
             f.actions) for f in lab.tb.nve(nve).dump_flows()
            if f.cookie >> 48 == 0x4e56}


def rebadge(lab, dpid, cn, signed=True):
    """The rogue switch presents datapath id ``dpid`` and a certificate
    naming ``cn`` from its next session on (the last one is dropped)."""
    rogue = lab.tb.nve('rogue')
    lab.tb.tls_identity('rogue', cn, signed=signed)
    rogue.vsctl('set', 'bridge', 'br-int',
                'other-config:datapath-id=%s' % dpid)
    rogue.reconnect_controller()


def nve1_downs(lab):
    """The times nve1 went down."""
    return [e for e in events(lab, 'nve-down') if e['nve'] == DPID['nve1']]


def nve1_undisturbed(lab, downs_before):
    """nve1 stayed connected, in sync, and never went down."""
    nve = lab.get('/v1/nves/%s' % DPID['nve1'])
    assert nve['connected'] and nve['in_sync'], nve
    downs = nve1_downs(lab)
    assert len(downs) == downs_before, downs


# -- REST ---------------------------------------------------------------------

def test_rest_needs_a_token_and_a_reader_cannot_write(lab):
    before = mapping(lab, 'vic')
    port = '/v1/nves/%s/ports/vic-0' % DPID['nve1']
    with victim_probed(lab, 'REST writes without a token, with a bad one '
                            'and with a reader\'s'):
        status, body = lab.request('DELETE', port, token=None)
        assert status == 401 and body['error']['code'] == 'unauthorized'
        status, body = lab.request('DELETE', port, token='x' * 32)
        assert status == 401 and body['error']['code'] == 'unauthorized'
        status, body = lab.request('DELETE', port,
                                   token=lab.tokens['viewer'])
        assert status == 403 and body['error']['code'] == 'forbidden'
        status, body = lab.request('PUT', '/v1/nves/%s' % DPID['nve1'],
                                   {'vtep_ip': '10.99.0.77'},
                                   token=lab.tokens['viewer'])
        assert status == 403
    assert mapping(lab, 'vic') == before
    assert lab.get('/v1/nves/%s' % DPID['nve1'])['vtep_ip'] == '10.99.0.1'
    # The challenge, as RFC 6750 says.
    req = urllib.request.Request(lab.url('/v1/vns'))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.headers['WWW-Authenticate'].startswith('Bearer')
    # A reader reads; metrics and the web page need no token.
    status, vns = lab.request('GET', '/v1/vns', token=lab.tokens['viewer'])
    assert status == 200 and vns[0]['vnid'] == VNID
    assert lab.request('GET', '/metrics', token=None)[0] == 200
    assert lab.request('GET', '/', token=None)[0] == 200
    assert metric(lab, 'nvo3_rest_unauthorized_total{}') >= 3
    assert metric(lab, 'nvo3_rest_forbidden_total{}') == 2
    # An admin's write names the token in its events.
    status, _ = lab.request('POST', '/v1/vns', {'vnid': 5099,
                                                'name': 'audit'})
    assert status == 201
    created, = [e for e in events(lab, 'vn-created') if e['vnid'] == 5099]
    assert created['actor'] == 'ops'
    assert lab.request('DELETE', '/v1/vns/5099')[0] == 204
    assert events(lab, 'vn-deleted')[-1]['actor'] == 'ops'


# -- the registration RPC -----------------------------------------------------

def test_rpc_needs_a_login_and_keeps_a_hypervisor_on_its_nves(lab):
    mac, ip = VM['vic']
    before = mapping(lab, 'vic')
    with victim_probed(lab, 'RPC calls before a login and on another '
                            'hypervisor\'s NVE'):
        with rpc(lab) as client:
            err = rpc_refusal(client.associate, DPID['nve2'], 'sp-0', mac,
                              VNID, ip=ip)
            assert err.code == 'unauthorized'
            err = rpc_refusal(client.dissociate, DPID['nve1'], mac)
            assert err.code == 'unauthorized'
            err = rpc_refusal(client.login, 'hv-nve1', 'not-the-secret')
            assert err.code == 'unauthorized'
        with rpc(lab, 'hv-nve2') as client:
            # nve1 is not its NVE: neither registering there nor removing
            # what it found with a query.
            err = rpc_refusal(client.associate, DPID['nve1'], 'vic-0', mac,
                              VNID, ip=ip)
            assert (err.code, err.field) == ('forbidden', 'nve')
            found = client.query(VNID, mac)
            assert found['tesid']['nve'] == DPID['nve1']
            err = rpc_refusal(client.dissociate, DPID['nve1'], mac)
            assert (err.code, err.field) == ('forbidden', 'nve')
    assert mapping(lab, 'vic') == before
    assert metric(lab, 'nvo3_rpc_logins_failed_total{}') >= 1


def test_a_registration_cannot_take_a_live_vnic_or_its_address(lab):
    mac, ip = VM['vic']
    before = mapping(lab, 'vic')
    conflicts = len(events(lab, 'conflict'))
    with victim_probed(lab, 'hv-nve2 registers vic\'s MAC at its NVE, then '
                            'vic\'s address for its own VM'):
        with rpc(lab, 'hv-nve2') as client:
            err = rpc_refusal(client.associate, DPID['nve2'], 'sp-0', mac,
                              VNID, ip=ip)
            assert (err.code, err.field) == ('conflict', 'mac'), err
            assert 'answered' in err.message
            err = rpc_refusal(client.associate, DPID['nve2'], 'sp-0',
                              VM['sp'][0], VNID, ip=ip)
            assert (err.code, err.field) == ('conflict', 'mac'), err
            # And no port nobody bound.
            err = rpc_refusal(client.associate, DPID['nve2'], 'sp-9',
                              '02:00:00:00:71:99', VNID)
            assert (err.code, err.field) == ('not-found', 'port'), err
    assert mapping(lab, 'vic') == before
    new = events(lab, 'conflict')[conflicts:]
    assert [(e['reason'], e['actor'], e['how'], e['mac'], e['nve'],
             e['port'], e['claimant_nve']) for e in new] == [
        ('old-location-live', 'hv-nve2', 'registered', mac, DPID['nve1'],
         'vic-0', DPID['nve2']),
        ('ip-owner-live', 'hv-nve2', 'registered', mac, DPID['nve1'],
         'vic-0', DPID['nve2'])]
    assert not [e for e in events(lab, 'move') if e['mac'] == mac]
    assert lab.get('/v1/mappings?ip=%s' % ip)[0]['mac'] == mac
    assert 'nve-deleted' not in {e['type'] for e in new}


def test_a_registration_takes_over_a_location_that_stays_silent(lab):
    mac, ip = VM['fl']
    # fl stops answering ARP: its location is up, but nobody is there.
    lab.tb.vm_run('fl', 'ip', 'link', 'set', 'dev', 'eth0', 'arp', 'off')
    with rpc(lab, 'hv-nve2') as client:
        done = client.associate(DPID['nve2'], 'sp-0', mac, VNID, ip=ip)
        assert done['action'] == 'registered', done
        assert (done['binding']['nve'], done['binding']['port']) == (
            DPID['nve2'], 'sp-0')
        move, = [e for e in events(lab, 'move') if e['mac'] == mac]
        assert (move['old_nve'], move['nve'], move['actor'], move['how']) \
            == (DPID['nve1'], DPID['nve2'], 'hv-nve2', 'registered')
        assert mapping(lab, 'fl')[:2] == (DPID['nve2'], 'sp-0')
        client.dissociate(DPID['nve2'], mac)
    lab.wait_sync()


# -- switch identity ----------------------------------------------------------

def test_a_tls_connection_that_never_says_hello_is_closed(lab):
    before = metric(lab, 'nvo3_openflow_tls_failed_total{}')
    with socket.create_connection(('127.0.0.1', lab.ctl.of_port),
                                  timeout=10) as sock:
        t0 = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(100) == b''
        waited = time.monotonic() - t0
    print('\nidle TLS connection closed after %.1f s (timeout 2 s)' % waited)
    assert waited < 5
    lab.wait_for(lambda: metric(lab, 'nvo3_openflow_tls_failed_total{}')
                 > before, what='the failed handshake counted')


def test_a_second_session_for_a_connected_nve_is_refused(lab):
    downs = len(nve1_downs(lab))
    before = refused(lab, 'duplicate')
    nve1_flows = flow_set(lab, 'nve1')
    with victim_probed(lab, 'a switch with nve1\'s key and certificate '
                            'presents its datapath id'):
        rebadge(lab, DPID['nve1'], DPID['nve1'])
        lab.wait_for(lambda: refused(lab, 'duplicate') > before, timeout=15,
                     what='the second session refused')
    nve1_undisturbed(lab, downs)
    assert flow_set(lab, 'nve1') == nve1_flows
    assert lab.ping('pr', VM['vic'][1])


def test_a_certificate_that_does_not_name_the_dpid_is_refused(lab):
    downs = len(nve1_downs(lab))
    before = refused(lab, 'certificate')
    forged = metric(lab, 'nvo3_openflow_tls_failed_total{}')
    with victim_probed(lab, 'the rogue presents nve1\'s datapath id with '
                            'its own certificate, then a forged one'):
        rebadge(lab, DPID['nve1'], DPID['rogue'])
        lab.wait_for(lambda: refused(lab, 'certificate') > before,
                     timeout=15, what='the mismatching certificate refused')
        rebadge(lab, DPID['nve1'], DPID['nve1'], signed=False)
        lab.wait_for(lambda: metric(lab, 'nvo3_openflow_tls_failed_total{}')
                     > forged, timeout=15,
                     what='the forged certificate refused in the handshake')
    nve1_undisturbed(lab, downs)


def test_an_unknown_switch_is_refused_and_leaves_no_record(lab):
    before = refused(lab, 'unknown')
    rebadge(lab, UNKNOWN, UNKNOWN)
    lab.wait_for(lambda: refused(lab, 'unknown') > before, timeout=15,
                 what='the unknown switch refused')
    status, _ = lab.request('GET', '/v1/nves/%s' % UNKNOWN)
    assert status == 404
    assert UNKNOWN not in {n['dpid'] for n in lab.get('/v1/nves')}
    assert metric(lab, 'nvo3_accept_unknown_nves{}') == 0


# -- the operator deletes an NVE record -----------------------------------------

def test_deleting_an_nve_withdraws_it_everywhere(lab):
    rogue, rg_mac = DPID['rogue'], VM['rg'][0]
    rebadge(lab, rogue, rogue)           # itself again
    lab.wait_for(lambda: lab.get('/v1/nves/%s' % rogue)['connected'],
                 timeout=15, what='the rogue NVE back as itself')
    assert lab.ping('rg', VM['pr'][1])
    lab.wait_sync()
    for peer in ('nve1', 'nve3'):
        assert flows(lab, peer, rg_mac), peer
        assert flows(lab, peer, '10.99.0.4'), peer
    path = '/v1/nves/%s' % rogue
    assert lab.request('DELETE', path, token=lab.tokens['viewer'])[0] == 403
    before = refused(lab, 'unknown')
    with victim_probed(lab, 'the operator deletes the rogue NVE'):
        status, _ = lab.request('DELETE', path)
        assert status == 204
        lab.wait_sync(nves=[DPID['nve1'], DPID['nve2'], DPID['nve3']])
    assert lab.request('GET', path)[0] == 404
    deleted, = events(lab, 'nve-deleted')
    assert (deleted['nve'], deleted['actor'], deleted['connected']) == (
        rogue, 'ops', True)
    detach, = [e for e in events(lab, 'detach') if e['mac'] == rg_mac]
    assert (detach['reason'], detach['actor']) == ('nve-deleted', 'ops')
    for peer in ('nve1', 'nve2', 'nve3'):
        assert flows(lab, peer, rg_mac) == [], peer
        assert flows(lab, peer, '10.99.0.4') == [], peer
    # Its session was closed; it may not come back (not a known NVE).
    lab.wait_for(lambda: refused(lab, 'unknown') > before, timeout=15,
                 what='the deleted NVE refused when it reconnects')
    assert lab.request('GET', path)[0] == 404
    assert not [e for e in events(lab, 'nve-down') if e['nve'] == rogue
                and e['time'] > deleted['time']]
    for nve in ('nve1', 'nve2', 'nve3'):
        audit = lab.get('/v1/nves/%s/audit' % DPID[nve])
        assert audit['desired_equals_recompute'], (nve, audit)
        assert audit['missing'] == audit['stale'] == audit['different'] \
            == [], (nve, json.dumps(audit)[:500])
