"""Interconnection functionality (draft 4.3) on real OVS, os-ken and packets.

One shared testbed (topologies/gateway.yaml): NVEs n1, n2 and the gateway
NVE gw; interconnects ab (l3 A vxlan + l3 B gre), cd (l2 C geneve + l2 D
vxlan, allowed c1 and d1), fa (l2 F vxlan + l3 A vxlan, router on F); an
external VLAN segment behind gw:ext0 (VLAN 100 -> A, only x1 allowed); VN
E in nothing.  The tests stay independent: the one that deletes an
interconnect puts it back (and waits for the NVEs to acknowledge it).
Captures on the gateway's underlay link show the encapsulation conversion:
the source VN's encapsulation and VNID arriving, the destination VN's
leaving.
"""

import os
import re
import time

import pytest

from nvo3_ryu_app.authority.owners import IcOwner, cookie_for
from nvo3_ryu_app.testbed import migration, procs
from nvo3_ryu_app.testbed import prober as prober_mod
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.capture import Capture
from nvo3_ryu_app.testbed.lab import Lab

from conftest import topology_path

pytestmark = pytest.mark.integration

GW_DPID = '00000000000000ff'
GW_VTEP = '10.99.0.254'
VNID = {'A': 2001, 'B': 2002, 'C': 2003, 'D': 2004, 'E': 2005, 'F': 2006}
MAC = {'a1': '02:00:00:00:0a:01', 'b1': '02:00:00:00:0b:01',
       'c1': '02:00:00:00:0c:01', 'd1': '02:00:00:00:0d:01',
       'f1': '02:00:00:00:0f:01', 'x1': '02:00:00:00:e1:01'}
IP = {'a1': '10.1.0.1', 'a2': '10.1.0.2', 'b1': '10.2.0.1',
      'c1': '10.3.0.1', 'c2': '10.3.0.2', 'd1': '10.3.0.11',
      'd2': '10.3.0.12', 'e1': '10.5.0.1', 'f1': '10.6.0.1',
      'x1': '10.1.0.100', 'x2': '10.1.0.101', 'x3': '10.1.0.102'}
GW_MAC = {'A': '02:00:00:00:fe:01', 'B': '02:00:00:00:fe:02'}
ROUTER_F = ('10.6.0.254', '02:00:00:00:fe:06')


def announce(lab, name):
    """``name`` (a VM or an external host) announces its address."""
    tb = lab.tb
    if name in {vm.name for vm in tb.topo.vms}:
        tb.gratuitous_arp(name)
        return
    host = next(h for h in tb.topo.ext_hosts if h.name == name)
    procs.run_in(tb.vms[name].pid,
                 ['/usr/bin/python3', '-S', '-c', migration._GARP_PY, 'eth0',
                  host.mac, str(host.ip.ip), '1', '0.02'], timeout=30)


def known(lab, ip):
    return bool(lab.get('/v1/mappings?ip=%s' % ip))


@pytest.fixture(scope='module')
def gwlab():
    _require_root_and_tools()
    lab = Lab(topology_path('gateway.yaml')).start()
    try:
        lab.wait_sync()
        # Every host announces itself, so the authority knows them all
        # (x3's VLAN maps to no VN: it is never learned).
        for name in IP:
            announce(lab, name)
        for name, ip in IP.items():
            if name != 'x3':
                lab.wait_for(lambda ip=ip: known(lab, ip), timeout=15,
                             what='%s learned' % name)
        lab.wait_sync()
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


def ping_ttl(lab, src, dst, count=2):
    """The TTLs of the echo replies ``src`` got from ``dst``."""
    out = lab.tb.vm_run(src, 'ping', '-n', '-c', str(count), '-i', '0.2',
                        '-W', '1', dst, check=False, timeout=30)
    return [int(t) for t in re.findall(r'ttl=(\d+)', out)]


def tunnelled(packets, inner_dst_ip=None):
    """Tunnel frames (of an ICMP echo to ``inner_dst_ip``), as
    (outer src, outer dst, encapsulation, VNID, inner eth src, inner eth
    dst, inner TTL)."""
    out = []
    for pkt in packets:
        if pkt.encap is None:
            continue
        outer = pkt.first('ipv4')
        inner = pkt.first('ipv4', inner=True)
        eth = pkt.first('ethernet', inner=True)
        if inner is None or (inner_dst_ip and inner.dst != inner_dst_ip):
            continue
        out.append((outer.src, outer.dst, pkt.encap, pkt.tunnel_key,
                    eth.src, eth.dst, inner.ttl))
    return out


def test_l3_l3_routed_across_with_vxlan_to_gre_conversion(gwlab):
    """Case (a): a1 (A, vxlan, on n1) reaches b1 (B, gre, on n2) through
    the gateway; the TTL is decremented once, at the gateway."""
    lab = gwlab
    cap = lab.tb.start_capture('gw')
    ttls = ping_ttl(lab, 'a1', IP['b1'], count=3)
    frames = tunnelled(cap.stop(), IP['b1'])
    assert ttls and set(ttls) == {63}, ttls
    arriving = [f for f in frames if f[1] == GW_VTEP]
    leaving = [f for f in frames if f[0] == GW_VTEP]
    assert arriving and set(arriving) == {
        ('10.99.0.1', GW_VTEP, 'vxlan', VNID['A'], MAC['a1'], GW_MAC['A'],
         64)}
    assert leaving and set(leaving) == {
        (GW_VTEP, '10.99.0.2', 'gre', VNID['B'], GW_MAC['B'], MAC['b1'],
         63)}


def test_l2_l2_bridges_only_the_allowed_macs(gwlab):
    """Case (b): c1 (C, geneve) and d1 (D, vxlan) are on the allowed list:
    they reach each other, ARP for d1 is answered at c1's NVE; c2 and d2
    reach nobody across."""
    lab = gwlab
    arp = lab.tb.vm_run('c1', 'arping', '-c', '1', '-w', '2', '-I', 'eth0',
                        IP['d1'], check=False)
    assert MAC['d1'] in arp.lower(), arp
    cap = lab.tb.start_capture('gw')
    assert lab.ping('c1', IP['d1'], count=2)
    frames = tunnelled(cap.stop(), IP['d1'])
    assert ('10.99.0.1', GW_VTEP, 'geneve', VNID['C'], MAC['c1'], MAC['d1'],
            64) in frames
    assert (GW_VTEP, '10.99.0.2', 'vxlan', VNID['D'], MAC['c1'], MAC['d1'],
            64) in frames
    assert lab.ping('d1', IP['c1'])
    assert lab.reach('c2', [IP['d1'], IP['d2']]) == {
        IP['d1']: False, IP['d2']: False}
    assert lab.reach('c1', [IP['d2']]) == {IP['d2']: False}
    assert lab.reach('d2', [IP['c1'], IP['c2']]) == {
        IP['c1']: False, IP['c2']: False}
    # d1 is an entry of C "at the gateway" (draft 7.3), not a host of C.
    entry = [e for e in lab.get('/v1/vns/%d/mappings' % VNID['C'])
             if e['mac'] == MAC['d1']]
    assert entry and {(e['nve'], e['origin'], e['interconnect'])
                      for e in entry} == {(GW_DPID, 'interconnect', 'cd')}


def test_l2_l3_router_with_the_same_encapsulation_on_both_sides(gwlab):
    """Case (c): f1 (F, l2, vxlan) uses the router 10.6.0.254 to reach a1
    (A, l3, vxlan); the gateway sends the frame back out of the tunnel port
    it came in by, in the other VNID."""
    lab = gwlab
    arp = lab.tb.vm_run('f1', 'arping', '-c', '1', '-w', '2', '-I', 'eth0',
                        ROUTER_F[0], check=False)
    assert ROUTER_F[1] in arp.lower(), arp
    cap = lab.tb.start_capture('gw')
    ttls = ping_ttl(lab, 'f1', IP['a1'])
    frames = tunnelled(cap.stop(), IP['a1'])
    assert ttls and set(ttls) == {63}, ttls
    assert ('10.99.0.2', GW_VTEP, 'vxlan', VNID['F'], MAC['f1'], ROUTER_F[1],
            64) in frames
    assert (GW_VTEP, '10.99.0.1', 'vxlan', VNID['A'], GW_MAC['A'], MAC['a1'],
            63) in frames
    assert lab.ping('a1', IP['f1'])


def test_external_vlan_segment_reaches_its_vn_for_allowed_macs_only(gwlab):
    """VLAN 100 of the segment is VN A: x1 (allowed) and a1 reach each
    other, tagged on the gateway's port; x2 (not allowed) is learned but
    gets nothing; x3 (VLAN 300, mapped to nothing) is never learned."""
    lab = gwlab
    gw = lab.tb.nve('gw')
    path = os.path.join(lab.tb.rundir, 'captures', 'ext0-%d.pcap'
                        % int(time.time() * 1000))
    cap = Capture(gw.pid, 'ext0', path).start()
    try:
        assert lab.ping('a1', IP['x1'], count=2)
        assert lab.ping('x1', IP['a1'])
        assert lab.ping('x1', IP['b1']), 'x1 is a host of A: it is routed'
    finally:
        packets = cap.stop()
    echoes = [p for p in packets if p.first('icmp') is not None]
    assert echoes
    assert all(p.first('vlan') is not None and p.first('vlan').vid == 100
               for p in echoes)
    assert lab.reach('a1', [IP['x2'], IP['x3']]) == {
        IP['x2']: False, IP['x3']: False}
    assert lab.reach('x2', [IP['a1']]) == {IP['a1']: False}
    assert lab.reach('x3', [IP['a1']]) == {IP['a1']: False}
    hosts = {h['mac']: h for h in lab.get('/v1/externals/lab')['hosts']}
    assert hosts[MAC['x1']]['allowed'] and hosts[MAC['x1']]['vlan'] == 100
    assert hosts['02:00:00:00:e1:02']['allowed'] is False
    assert '02:00:00:00:e1:03' not in hosts
    assert not known(lab, IP['x3'])
    # Learned as mapping entries of A that say where they came from.
    entries = lab.get('/v1/mappings?mac=%s' % MAC['x1'])
    assert {(e['vnid'], e['origin'], e['external'], e['nve'], e['port'],
             e['vlan']) for e in entries} == {
                 (VNID['A'], 'external', 'lab', GW_DPID, 'ext0', 100)}


def test_isolation_everything_no_interconnect_allows_is_dropped(gwlab):
    """E is in no interconnect; B and F, C and A are not joined; what
    reaches the gateway and no interconnect allows dies at its table-7
    miss, which counts it."""
    lab = gwlab

    def misses():
        return sum(f.n_packets for f in lab.tb.nve('gw').dump_flows(table=7)
                   if f.priority == 0)
    assert lab.reach('e1', [IP[n] for n in ('a1', 'b1', 'c1', 'd1', 'f1',
                                             'x1')]) == {
        IP[n]: False for n in ('a1', 'b1', 'c1', 'd1', 'f1', 'x1')}
    assert lab.reach('b1', [IP['f1'], IP['e1'], IP['c1']]) == {
        IP['f1']: False, IP['e1']: False, IP['c1']: False}
    assert lab.reach('a1', [IP['e1'], IP['c1'], IP['d1']]) == {
        IP['e1']: False, IP['c1']: False, IP['d1']: False}
    before = misses()
    # c2 -> d1: d1 is an entry of C at the gateway, but c2 is no allowed
    # source: its frames reach the gateway and stop there.
    assert lab.reach('c2', [IP['d1']]) == {IP['d1']: False}
    assert misses() > before


def test_delete_withdraws_everywhere_and_put_brings_it_back(gwlab):
    """DELETE ab: its flows leave every NVE, a1 no longer reaches b1; the
    same PUT restores it (201) and the first packet crosses again."""
    lab = gwlab
    body = lab.get('/v1/interconnects/ab')
    cookie = '0x%x' % cookie_for(IcOwner('ab'))

    def holders():
        return sorted(n for n in ('n1', 'n2', 'gw')
                      if any(('cookie=%s,' % cookie) in f
                             for f in lab.dump_flows(n)))
    assert holders() == ['gw', 'n1', 'n2']
    status, _ = lab.request('DELETE', '/v1/interconnects/ab')
    assert status == 204
    lab.wait_sync()
    try:
        assert holders() == []
        assert lab.reach('a1', [IP['b1']]) == {IP['b1']: False}
        assert lab.reach('f1', [IP['a1']]) == {IP['a1']: True}, \
            'fa is untouched'
    finally:
        status, _ = lab.request('PUT', '/v1/interconnects/ab', {
            'gateway': body['gateway'], 'vns': body['vns']})
        assert status == 201
        lab.wait_sync()
    assert lab.ping('a1', IP['b1'])
    events = [(e['type'], e.get('name')) for e in lab.get(
        '/v1/events?type=interconnect-deleted&type=interconnect-created'
        '&limit=1000')['events']]
    assert events[-2:] == [('interconnect-deleted', 'ab'),
                           ('interconnect-created', 'ab')], events


def test_bad_requests_are_refused_and_change_nothing(gwlab):
    lab = gwlab
    before = (lab.get('/v1/interconnects'), lab.get('/v1/externals'))
    for body, status in (
            ({'gateway': GW_DPID, 'vns': [2001, 4242]}, 404),
            ({'gateway': '0000000000000abc', 'vns': [2001, 2005]}, 404),
            ({'gateway': '0000000000000001', 'vns': [2001, 2005]}, 409),
            ({'gateway': GW_DPID, 'vns': [2001]}, 400),
            ({'gateway': GW_DPID, 'vns': [2005, 2005]}, 400),
            ({'gateway': GW_DPID, 'vns': [2003, 2005],
              'allowed_macs': ['nope']}, 400)):
        got, _ = lab.request('PUT', '/v1/interconnects/bad', body)
        assert got == status, body
    for body, status in (
            ({'gateway': GW_DPID, 'port': 'ext9', 'vlans': {'4095': 2001}},
             400),
            ({'gateway': '0000000000000002', 'port': 'e1-0', 'vnid': 2005},
             409),
            ({'gateway': GW_DPID, 'port': 'ext9', 'vnid': 4242}, 404)):
        got, _ = lab.request('PUT', '/v1/externals/bad', body)
        assert got == status, body
    assert (lab.get('/v1/interconnects'), lab.get('/v1/externals')) == before


def test_traffic_per_interconnect_from_the_gateways_counters(gwlab):
    """What crossed ab shows in REST and Prometheus once the gateway's
    flows are dumped (audit)."""
    lab = gwlab
    assert lab.ping('a1', IP['b1'], count=3)

    def frames():
        lab.get('/v1/nves/%s/audit' % GW_DPID)
        return lab.get('/v1/interconnects/ab')['traffic']['frames']
    lab.wait_for(lambda: frames() >= 6, timeout=15, what='ab traffic')
    sample = 'nvo3_interconnect_frames_total{gateway=%s,interconnect=ab,' \
        'kind=l3+l3}' % GW_DPID
    assert lab.metrics()[sample] >= 6


def test_sigkill_restart_keeps_interconnects_and_loses_no_probe(gwlab):
    """An interconnect and an external network made through REST survive
    a SIGKILL of the app (the journal), and a VM pinging across the
    gateway every 10 ms loses nothing while the app restarts: the gateway
    keeps its flows (reconcile, never wipe)."""
    lab = gwlab
    status, _ = lab.request('PUT', '/v1/interconnects/be', {
        'gateway': GW_DPID, 'vns': [VNID['B'], VNID['E']]})
    assert status == 201
    status, _ = lab.request('PUT', '/v1/externals/spare', {
        'gateway': GW_DPID, 'port': 'ext9', 'vnid': VNID['E'],
        'allowed_macs': ['02:00:00:00:e9:01']})
    assert status == 201
    lab.wait_sync()
    try:
        assert lab.ping('e1', IP['b1'])

        # The configuration file is applied again at start: what it names
        # is its own again (origin), as for VNs; the rest is as it was.
        from_file = {ic['name'] for ic in lab.tb.topo.interconnects} | {
            ext.name for ext in lab.tb.topo.externals}

        def state():
            skip = lambda r: ('traffic', 'origin') if r['name'] in from_file \
                else ('traffic',)
            return [[{k: v for k, v in r.items() if k not in skip(r)}
                     for r in lab.get(path)]
                    for path in ('/v1/interconnects', '/v1/externals')]
        before = state()
        out = os.path.join(lab.tb.rundir, 'probe-gw-restart.json')
        prober = prober_mod.start(lab.tb.vm('a1').pid, IP['b1'], out,
                                  interval=0.01, duration=60)
        try:
            time.sleep(1.0)                   # probes cross before the kill
            lab.ctl.kill()
            lab.ctl.start(timeout=60, wait_for=('of', 'rest', 'rpc'))
            lab.tb.reconnect_controllers()
            lab.wait_sync(timeout=30)
            time.sleep(1.0)                   # and after it
            results = prober.stop()
        finally:
            prober.kill()
        summary = results['summary']
        assert summary['sent'] >= 200, summary
        assert summary['lost'] == 0, (summary, prober_mod.outages(results))
        assert state() == before
        assert [r['origin'] for r in lab.get('/v1/interconnects')
                if r['name'] == 'be'] == ['rest']
        assert lab.ping('e1', IP['b1'])
        audit = lab.get('/v1/nves/%s/audit' % GW_DPID)
        assert (audit['missing'], audit['stale'], audit['different']) == \
            ([], [], []), audit
    finally:
        for path in ('/v1/interconnects/be', '/v1/externals/spare'):
            lab.request('DELETE', path)
        lab.wait_sync()
