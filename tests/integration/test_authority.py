"""The mapping authority on real OVS NVEs, real osken-manager, real packets.

Figure 1 of the draft (six NVEs, three VNs, TS4/edge4 in VN2 and VN3), the
two-NVE topology and an L3 VN.  Every wait is on acknowledged state
(``/v1/sync``), never a bare sleep.
"""

import time

import pytest

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import topology_path

pytestmark = pytest.mark.integration

VNID = {'VN1': 1001, 'VN2': 1002, 'VN3': 1003}
PACKET_INS = 'nvo3_packet_ins_received_total'


def _lab(name):
    _require_root_and_tools()
    return Lab(topology_path(name)).start()


@pytest.fixture(scope='module')
def figure1():
    lab = _lab('figure1.yaml')
    try:
        lab.wait_sync()
        for vm in lab.tb.topo.vms:
            # On-link route for every tenant subnet: a frame towards another
            # VN's address is tried (ARP) rather than refused by routing, so
            # isolation is really tested.
            lab.tb.vm_run(vm.name, 'ip', 'route', 'add', '192.168.0.0/16',
                          'dev', vm.vnics[0].vm_ifname)
        yield lab
    finally:
        problems = lab.stop()
    assert problems == [], problems


def _vnics(lab):
    return [(vm.name, v) for vm in lab.tb.topo.vms for v in vm.vnics]


def test_figure1_reachability_matrix(figure1):
    """Every VM reaches every VM of its VN and none of another VN."""
    lab = figure1
    vnics = _vnics(lab)
    wrong = []
    for src, mine in vnics:
        targets = {str(v.ip.ip): v for name, v in vnics if name != src}
        got = lab.reach(src, sorted(targets))
        for ip, replied in got.items():
            expected = targets[ip].vnid == mine.vnid
            if replied != expected:
                wrong.append((src, mine.vn, ip, targets[ip].vn, replied))
    assert len(got) == len(vnics) - 1
    assert wrong == []
    # TS4's two VNs are both served by edge4.
    edge4 = lab.get('/v1/nves/0000000000000004')
    assert sorted(edge4['vns']) == [VNID['VN2'], VNID['VN3']]
    members = {vn: sorted(m['nve'][-1] for m in lab.get(
        '/v1/vns/%d/members' % vnid)) for vn, vnid in VNID.items()}
    assert members == {'VN1': ['1', '2', '5'], 'VN2': ['3', '4'],
                       'VN3': ['4', '6']}


def _tunnel_frames(packets):
    return [p for p in packets if p.tunnel_key is not None]


def _quiet(lab, seconds=1.0):
    """Wait until no packet-in arrived for ``seconds`` (leftover retries of
    earlier tests settle), then return the packet-in count."""
    last = [lab.metric_sum(PACKET_INS), time.monotonic()]

    def settled():
        now = lab.metric_sum(PACKET_INS)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= seconds
    lab.wait_for(settled, timeout=30, what='no packet-ins', interval=0.2)
    return last[0]


def _arp_between(frames, a, b):
    out = []
    for pkt in frames:
        arp = pkt.first('arp', inner=True)
        if arp is not None and {arp.src_ip, arp.dst_ip} == {a, b}:
            out.append(pkt)
    return out


def test_known_arp_is_answered_by_the_ingress_nve(figure1):
    """No packet-in, nothing on any underlay link, and an answer."""
    lab = figure1
    assert lab.reach('vm1', ['192.168.1.4']) == {'192.168.1.4': True}
    lab.wait_sync()
    before = _quiet(lab)
    caps = {n.name: lab.tb.start_capture(n.name) for n in lab.tb.topo.nves}
    out = lab.tb.vm_run('vm1', 'arping', '-c', '3', '-w', '3', '-I', 'eth0',
                        '192.168.1.4', check=False)
    frames = {name: _tunnel_frames(cap.stop()) for name, cap in caps.items()}
    assert out.lower().count('02:00:00:00:01:04') >= 3, out
    assert {n: len(_arp_between(f, '192.168.1.1', '192.168.1.4'))
            for n, f in frames.items()} == {n: 0 for n in frames}
    assert lab.metric_sum(PACKET_INS) == before


def test_vn3_broadcast_reaches_member_nves_only(figure1):
    lab = figure1
    caps = {n.name: lab.tb.start_capture(n.name) for n in lab.tb.topo.nves}
    # ARP for an address nobody has: a broadcast the NVE must replicate.
    lab.tb.vm_run('vmh', 'arping', '-c', '1', '-w', '1', '-I', 'eth0',
                  '192.168.3.200', check=False)
    frames = {name: _tunnel_frames(cap.stop()) for name, cap in caps.items()}
    bcast = {name: [p for p in f if p.first('arp', inner=True) is not None
                    and p.first('arp', inner=True).dst_ip == '192.168.3.200']
             for name, f in frames.items()}
    assert len(bcast['edge6']) >= 1 and len(bcast['edge4']) >= 1
    assert all(p.tunnel_key == VNID['VN3'] for p in bcast['edge4'])
    assert {n: len(b) for n, b in bcast.items()
            if n not in ('edge4', 'edge6')} == {
                'edge1': 0, 'edge2': 0, 'edge3': 0, 'edge5': 0}


def test_nve_outside_a_vn_holds_none_of_its_flows(figure1):
    lab = figure1
    lab.wait_sync()

    def vn_flows(nve, vnid):
        tag = 'metadata=%#x' % vnid
        key = 'tun_id=%#x' % vnid
        return [f for f in lab.dump_flows(nve) if tag in f or key in f]

    assert vn_flows('edge3', VNID['VN1']) == []
    assert vn_flows('edge3', VNID['VN3']) == []
    assert vn_flows('edge1', VNID['VN2']) == []
    assert vn_flows('edge6', VNID['VN1']) == []
    assert vn_flows('edge1', VNID['VN1'])          # members do hold them
    assert vn_flows('edge4', VNID['VN3'])


def test_installed_flows_equal_what_the_database_implies(figure1):
    """Law 5's second half, checked on every NVE after the scenarios."""
    lab = figure1
    lab.wait_sync()
    for nve in lab.tb.topo.nves:
        audit = lab.get('/v1/nves/%s/audit' % nve.dpid)
        assert audit['desired_equals_recompute'], (nve.name, audit)
        assert audit['missing'] == [] and audit['stale'] == [] \
            and audit['different'] == [], (nve.name, audit)


def test_two_nves_tunnel_with_the_vn_vnid_on_the_underlay():
    lab = _lab('two-nve.yaml')
    try:
        lab.wait_sync()
        cap = lab.tb.start_capture('nve1')
        assert lab.ping('h1', '192.168.50.3', count=3)
        assert lab.ping('h2', '192.168.50.4', count=3)
        frames = _tunnel_frames(cap.stop())
        icmp = [p for p in frames if p.first('icmp', inner=True) is not None]
        assert icmp, [str(p) for p in frames]
        assert {p.first('udp').dst_port for p in icmp} == {4789}
        assert {p.vni for p in icmp} == {5001}
        inner = {(p.first('ipv4', inner=True).src,
                  p.first('ipv4', inner=True).dst) for p in icmp}
        assert ('192.168.50.1', '192.168.50.3') in inner
        assert ('192.168.50.3', '192.168.50.1') in inner
        # Local traffic stays local.
        cap = lab.tb.start_capture('nve1')
        assert lab.ping('h1', '192.168.50.2', count=2)
        assert [p for p in _tunnel_frames(cap.stop())
                if p.first('icmp', inner=True) is not None] == []
    finally:
        problems = lab.stop()
    assert problems == []


def test_l3_vn_routes_between_subnets_and_decrements_ttl():
    lab = _lab('l3.yaml')
    try:
        lab.wait_sync()
        for src, dst in (('r1', '192.168.20.12'), ('r3', '192.168.20.11'),
                         ('r2', '192.168.10.12'), ('r1', '192.168.10.12')):
            assert lab.ping(src, dst, count=2), (src, dst)
        out = lab.tb.vm_run('r1', 'ping', '-n', '-c', '1', '-W', '2',
                            '192.168.20.12')
        assert 'ttl=63' in out, out       # routed once, across NVEs
        out = lab.tb.vm_run('r1', 'ping', '-n', '-c', '1', '-W', '2',
                            '192.168.10.12')
        assert 'ttl=64' in out, out       # same subnet: switched
    finally:
        problems = lab.stop()
    assert problems == []


# A frame sender for inside a VM namespace (Debian's python3, no project
# imports): N frames from fresh source MACs, or one given frame, on eth0.
SENDER = r'''
import socket, sys, time
count, first, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
raw = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else None
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
t0 = time.monotonic()
for i in range(count):
    n = first + i
    src = bytes([0x02, 0x77, (n >> 16) & 255, (n >> 8) & 255, n & 255, 1])
    frame = raw if raw else b'\xff' * 6 + src + b'\x88\xb5' + b'storm' * 10
    s.send(frame)
    delay = t0 + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
'''


def _send(lab, vm, count, first=0, rate=2000.0, raw=None):
    args = ['python3', '-c', SENDER, str(count), str(first), str(rate)]
    if raw is not None:
        args.append(raw.hex())
    lab.tb.vm_run(vm, *args, timeout=60)


def test_packet_in_storm_is_metered_per_port_and_others_still_attach():
    lab = _lab('two-nve.yaml')
    try:
        lab.wait_sync()
        assert lab.ping('h1', '192.168.50.3')
        before = _quiet(lab, 0.5)
        t0 = time.monotonic()
        _send(lab, 'h1', 3000, rate=2000.0)        # 3000 new MACs in 1.5 s
        _send(lab, 'h2', 1, first=900000)           # one newcomer, h2's port
        took = time.monotonic() - t0
        lab.wait_sync()
        punts = lab.metric_sum(PACKET_INS) - before
        # Meter of h1's port: 100 packet-ins/s plus a burst of 50.
        assert punts <= 100 * took + 50 + 20, (punts, took)
        assert punts >= 50, punts                   # the meter lets some by
        newcomer = lab.get('/v1/mappings?mac=02:77:0d:bb:a0:01')
        assert [(m['nve'], m['port']) for m in newcomer] == [
            ('0000000000000001', 'h2-0')]
        # A truncated ARP frame from a fresh MAC is dropped and counted.
        malformed = lab.metric_sum('nvo3_packet_ins_dropped_total')
        frame = (b'\xff' * 6 + bytes.fromhex('027700000099') + b'\x08\x06'
                 + b'\x00\x01\x08\x00')
        _send(lab, 'h3', 1, raw=frame)
        lab.wait_for(lambda: lab.metric_sum('nvo3_packet_ins_dropped_total')
                     > malformed, what='the malformed frame counted')
        assert lab.get('/v1/mappings?mac=02:77:00:00:00:99') == []
        assert lab.ping('h1', '192.168.50.3')        # nothing broke
    finally:
        problems = lab.stop()
    assert problems == []
