"""BGP EVPN against the real thing: FRR (zebra + bgpd, advertise-all-vni)
as a VTEP in its own namespace, with a kernel VXLAN device, a Linux bridge
and hosts behind it, beside two OVS NVEs driven by the app.

One shared lab (topologies/evpn.yaml + testbed/frr.py); the tests run in
file order and use hosts of their own: vm1, vm2 and FRR's f1 (routes,
pings, ARP), pd (withdraw), mv / FRR's fmv (a move across the boundary
both ways), vm1 <-> vm2 under a prober while the session flaps.
Waits are on acknowledged state: FRR's tables, the app's /v1/sync,
/v1/mappings and /v1/bgp.
"""

import socket
import time

import pytest

from nvo3_ryu_app.testbed import prober
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.controller import free_port
from nvo3_ryu_app.testbed.frr import FrrHost, FrrVtep, pick_alias
from nvo3_ryu_app.testbed.lab import Lab

from conftest import assert_nothing_left, topology_path

pytestmark = pytest.mark.integration

VNID = 5001
APP_AS = 65001
ROUTER_ID = '10.99.0.254'          # also the relay's address on the underlay
FRR_VTEP = '10.99.0.20'
VTEP = {'nve1': '10.99.0.1', 'nve2': '10.99.0.2'}
DPID = {'nve1': '0000000000000001', 'nve2': '0000000000000002'}
MAC = {'vm1': '02:00:00:00:50:01', 'vm2': '02:00:00:00:50:02',
       'mv': '02:00:00:00:50:05', 'pd': '02:00:00:00:50:06',
       'f1': '02:00:00:00:50:21'}
IP = {'vm1': '192.168.50.1', 'vm2': '192.168.50.2', 'mv': '192.168.50.5',
      'pd': '192.168.50.6', 'f1': '192.168.50.21'}
GRACE = 1.0


# iBGP (one AS, as most EVPN fabrics) and eBGP.  Over eBGP FRR sends the
# app its own routes back; os-ken drops them (AS-path loop).  No outbound
# route-map on FRR against that: FRR 8.4 then held back its own route for a
# MAC that had been ours until we withdrew (README, BGP EVPN in the
# testbed).
@pytest.fixture(scope='module', params=[65001, 65002], ids=['ibgp', 'ebgp'])
def lab(request):
    _require_root_and_tools()
    frr_as = request.param
    alias, port = pick_alias(), free_port()
    extra = ('bgp_as = %d\nbgp_router_id = %s\nbgp_listen_host = 127.0.0.1\n'
             'bgp_listen_port = %d\nbgp_neighbors = %s:%d\n'
             'port_down_grace = %s\ntick_interval = 0.1\n'
             % (APP_AS, ROUTER_ID, port, alias, frr_as, GRACE))
    lab = Lab(topology_path('evpn.yaml'), extra_ini=extra).start()
    vtep = None
    try:
        status, body = lab.request('PATCH', '/v1/vns/%d' % VNID,
                                   {'evpn': True})
        assert status == 200 and body['evpn'] is True, body
        vtep = FrrVtep(
            lab.tb, 'frr1', FRR_VTEP, ROUTER_ID, frr_as, APP_AS, port, alias,
            VNID, hosts=[FrrHost('f1', MAC['f1'], IP['f1'] + '/24'),
                         FrrHost('fmv', MAC['mv'], IP['mv'] + '/24')])
        vtep.start()
        # fmv is mv's MAC and IP on the FRR side: away until the move.
        vtep.set_host_port('fmv', False)
        lab.vtep, lab.frr_as = vtep, frr_as
        lab.wait_sync()
        lab.wait_for(lambda: vtep.session_up() and _bgp_up(lab), timeout=30,
                     what='the BGP session with FRR')
        got = lab.reach('vm2', [IP['vm1'], IP['mv'], IP['pd']])
        assert all(got.values()), got
        vtep.garp('f1')
        lab.wait_for(lambda: _entry(lab, MAC['f1']), timeout=10,
                     what='f1 imported from FRR')
        lab.wait_sync()
        yield lab
    finally:
        if vtep is not None:
            vtep.stop()
        problems = lab.stop()
    assert problems == [], problems
    # FRR's daemons and directories, the relays, the namespaces: all gone.
    assert_nothing_left(lab.tb.prefix)


# -- helpers --------------------------------------------------------------

def _bgp_up(lab):
    return [n['state'] for n in lab.get('/v1/bgp')['neighbors']] == \
        ['Established']


def _entry(lab, mac):
    entries = lab.get('/v1/mappings?mac=%s' % mac)
    return entries[0] if entries else None


def _app_route(vtep, kind, *parts):
    """FRR's paths from the app for the NLRI of ``kind`` 2 or 3 ending in
    ``parts`` (MAC, IP / originating VTEP), in the app's RD for the VN."""
    found = vtep.routes_from_app()
    for key, paths in found.items():
        rd, nlri = key.split(' ', 1)
        if rd != '%s:%d' % (ROUTER_ID, VNID):
            continue
        if nlri.startswith('[%d]' % kind) and all(
                '[%s]' % p in nlri for p in parts):
            return paths
    return None


def _fdb_has(vtep, mac, dst):
    return any(line.startswith(mac) and 'dst %s' % dst in line
               for line in vtep.fdb())


def _frr_mac(vtep, mac):
    return vtep.evpn_macs().get(mac)


# -- export: FRR sees the app's routes ------------------------------------

def test_frr_has_the_app_type2_and_type3_routes(lab):
    vtep = lab.vtep
    paths = lab.wait_for(lambda: _app_route(vtep, 2, MAC['vm1'], IP['vm1']),
                         what='type-2 of vm1 at FRR')
    path = paths[0]
    assert path['nexthops'][0]['ip'] == VTEP['nve1']
    assert path['vni'] == str(VNID)
    assert 'RT:%d:%d' % (APP_AS, VNID) in path['extendedCommunity']['string']
    assert 'ET:8' in path['extendedCommunity']['string']      # VXLAN
    for nve in ('nve1', 'nve2'):
        imet = lab.wait_for(lambda: _app_route(vtep, 3, VTEP[nve]),
                            what='type-3 of %s at FRR' % nve)[0]
        assert imet['nexthops'][0]['ip'] == VTEP[nve]
        assert imet['pmsi']['tunnelType'] == 'Ingress Replication'
        assert imet['pmsi']['label'] == VNID
    status = lab.get('/v1/bgp')
    assert status['as'] == APP_AS and status['router_id'] == ROUTER_ID
    # IMET of 2 NVEs; MAC/IP of vm1, vm2, mv, pd
    assert status['routes']['exported'] >= 6, status


def test_frr_kernel_fdb_points_at_the_ovs_vteps(lab):
    vtep = lab.vtep
    for nve in ('nve1', 'nve2'):
        lab.wait_for(lambda: _fdb_has(vtep, '00:00:00:00:00:00', VTEP[nve]),
                     what='flood entry to %s' % nve)
    lab.wait_for(lambda: _fdb_has(vtep, MAC['vm1'], VTEP['nve1']),
                 what='FDB entry of vm1')
    lab.wait_for(lambda: _fdb_has(vtep, MAC['vm2'], VTEP['nve2']),
                 what='FDB entry of vm2')


# -- import: FRR's host is a mapping entry of origin evpn ------------------

def test_frr_host_is_an_evpn_mapping_entry(lab):
    entry = _entry(lab, MAC['f1'])
    assert entry['origin'] == entry['source'] == 'evpn', entry
    assert entry['nve_ip'] == FRR_VTEP and entry['port'] is None, entry
    assert entry['nve'] is None and entry['vnid'] == VNID
    lab.wait_for(lambda: (_entry(lab, MAC['f1']) or {}).get('ip') ==
                 IP['f1'], what="f1's IP from its MAC/IP route")
    members = lab.get('/v1/vns/%d/members' % VNID)
    assert {(m['nve'], m['vtep_ip']) for m in members} >= {
        (DPID['nve1'], VTEP['nve1']), (DPID['nve2'], VTEP['nve2']),
        (None, FRR_VTEP)}
    status = lab.get('/v1/bgp')
    assert status['routes']['imported'] >= 2 and \
        status['routes']['imported_entries'] >= 1, status
    metrics = lab.metrics()
    assert metrics['nvo3_bgp_sessions_established{neighbor=%s}'
                   % status['neighbors'][0]['address']] == 1
    assert metrics['nvo3_bgp_routes{direction=in}'] >= 2
    ups = lab.get('/v1/events?type=bgp-up')['events']
    assert ups and ups[-1]['remote_as'] == lab.frr_as, ups
    attached = [e for e in lab.get('/v1/events?type=attach&limit=1000')[
        'events'] if e.get('mac') == MAC['f1']]
    assert attached and attached[-1]['origin'] == 'evpn' and \
        attached[-1]['vtep'] == FRR_VTEP, attached


def test_pings_both_ways_between_ovs_vms_and_the_frr_host(lab):
    assert lab.ping('vm1', IP['f1'], count=3)
    assert lab.ping('vm2', IP['f1'], count=3)
    assert lab.vtep.ping('f1', IP['vm1'], count=3)
    assert lab.vtep.ping('f1', IP['vm2'], count=3)
    # 1500-byte frames, DF: the underlay carries them whole both ways.
    assert lab.tb.vm_run('vm1', 'ping', '-n', '-q', '-c', '2', '-i', '0.2',
                         '-W', '1', '-M', 'do', '-s', '1472', IP['f1'],
                         check=False) is not None
    assert lab.ping('vm1', IP['f1'])


def test_arp_for_the_frr_host_is_answered_at_the_ingress_nve(lab):
    lab.tb.vm_run('vm1', 'ip', 'neigh', 'flush', 'dev', 'eth0')
    cap = lab.tb.start_capture('nve1', 'udp port 4789')
    try:
        out = lab.tb.vm_run('vm1', 'arping', '-c', '1', '-w', '2', '-i',
                            'eth0', IP['f1'], check=False)
    finally:
        packets = cap.stop()
    assert MAC['f1'] in out.lower(), out
    # Other VMs' traffic may cross; nothing of this ARP (f1's address).
    about_f1 = [p for p in packets if socket.inet_aton(IP['f1']) in p.data]
    assert about_f1 == [], about_f1


# -- withdraw --------------------------------------------------------------

def test_a_detached_tenant_system_is_withdrawn_at_frr(lab):
    vtep = lab.vtep
    lab.wait_for(lambda: _fdb_has(vtep, MAC['pd'], VTEP['nve2']),
                 what='FDB entry of pd')
    lab.tb.nve('nve2').ns_run('ip', 'link', 'set', 'pd-0', 'down')
    lab.wait_for(lambda: _entry(lab, MAC['pd']) is None, timeout=10,
                 what='pd detached')
    lab.wait_for(lambda: not _app_route(vtep, 2, MAC['pd']), timeout=10,
                 what='type-2 of pd withdrawn at FRR')
    lab.wait_for(lambda: not any(line.startswith(MAC['pd'])
                                 for line in vtep.fdb()),
                 what="pd's FDB entry gone at FRR")


# -- a move across the boundary, both ways (RFC 7432 section 15) -----------

def test_a_move_to_frr_and_back(lab):
    vtep = lab.vtep
    mac = MAC['mv']
    before = _entry(lab, mac)
    assert before['nve'] == DPID['nve1']
    lab.wait_for(lambda: _fdb_has(vtep, mac, VTEP['nve1']),
                 what='FDB entry of mv')
    # To FRR: fmv appears behind FRR with mv's MAC/IP (mv stays quiet and
    # its port up: only the sequence numbers can move it).
    vtep.set_host_port('fmv', True)
    vtep.garp('fmv')
    moved = lab.wait_for(
        lambda: (lambda e: e if e and e['nve_ip'] == FRR_VTEP else None)(
            _entry(lab, mac)), timeout=10, what='mv behind FRR')
    assert moved['source'] == 'evpn' and moved['seq'] > before['seq']
    move = [e for e in lab.get('/v1/events?type=move&limit=1000')['events']
            if e['mac'] == mac][-1]
    assert (move['how'], move['old_nve'], move['vtep']) == (
        'evpn', DPID['nve1'], FRR_VTEP), move
    local = lab.wait_for(lambda: _frr_mac(vtep, mac), what='FRR knows mv')
    assert local['type'] == 'local', local
    lab.wait_for(lambda: not _app_route(vtep, 2, mac), timeout=10,
                 what="the app's own route for mv withdrawn")
    lab.wait_sync()
    assert lab.ping('vm2', IP['mv'], count=3)
    # And back: fmv goes, mv announces itself on nve1 again.
    vtep.set_host_port('fmv', False)
    lab.tb.gratuitous_arp('mv', count=3, interval=0.2)
    back = lab.wait_for(
        lambda: (lambda e: e if e and e['nve'] == DPID['nve1'] else None)(
            _entry(lab, mac)), timeout=10, what='mv back on nve1')
    assert back['source'] == 'learned'
    lab.wait_for(lambda: (_frr_mac(vtep, mac) or {}).get('type') == 'remote'
                 and _frr_mac(vtep, mac).get('remoteVtep') == VTEP['nve1'],
                 timeout=10, what='FRR follows mv back to nve1')
    lab.wait_sync()
    assert vtep.ping('f1', IP['mv'], count=3)


# -- a session flap, an app restart: OVS-to-OVS traffic never waits on BGP --

def _no_loss_vm2_to_vm1(lab, what, disturb):
    """``disturb()`` while vm2 probes vm1 every 10 ms: not one probe lost."""
    out = '%s/probe-%d.json' % (lab.tb.rundir, int(time.time() * 1000))
    probe = prober.start(lab.tb.vms['vm2'].pid, IP['vm1'], out,
                         interval=0.01, duration=60)
    try:
        time.sleep(0.5)
        disturb()
        time.sleep(0.5)
        results = probe.stop()
    finally:
        probe.kill()
    summary = prober.summary(results)
    print('\n%s: %d of %d probes vm2 -> vm1 lost'
          % (what, summary['lost'], summary['sent']))
    assert summary['sent'] > 100 and summary['lost'] == 0, \
        prober.outages(results)


def _evpn_side_back(lab, when):
    """The session, FRR's host and FRR's routes to our VMs, all back."""
    vtep = lab.vtep
    lab.wait_for(lambda: _bgp_up(lab) and vtep.session_up(), timeout=30,
                 what='the session ' + when)
    lab.wait_for(lambda: _entry(lab, MAC['f1']), timeout=15,
                 what='f1 imported ' + when)
    lab.wait_for(lambda: _fdb_has(vtep, MAC['vm1'], VTEP['nve1']),
                 timeout=15, what="FRR has vm1's route " + when)
    lab.wait_sync()
    assert vtep.ping('f1', IP['vm1'], count=2)
    assert lab.ping('vm1', IP['f1'], count=2)


def test_a_session_flap_drops_no_ovs_traffic_and_reconverges(lab):
    def flap():
        lab.vtep.vtysh('clear bgp *')
        lab.wait_for(lambda: not _bgp_up(lab), timeout=10,
                     what='the session down at the app')
        lab.wait_for(lambda: _bgp_up(lab) and lab.vtep.session_up(),
                     timeout=30, what='the session back')
    _no_loss_vm2_to_vm1(lab, 'BGP session flap', flap)
    _evpn_side_back(lab, 'after the flap')


def test_an_app_restart_drops_no_ovs_traffic_and_the_evpn_side_returns(lab):
    def restart():
        lab.ctl.kill()
        lab.ctl.start(timeout=60, wait_for=('of', 'rest', 'rpc'))
        lab.tb.reconnect_controllers()
        lab.wait_sync(timeout=30)
    _no_loss_vm2_to_vm1(lab, 'app restart (SIGKILL) with EVPN', restart)
    # The VN's evpn comes back from the store and the file, our routes
    # from the database, the imported entries from FRR.
    _evpn_side_back(lab, 'after the restart')
