"""Interconnection functionality (draft 4.3) on the simulated flow table.

Frames are sent through the flows the planner computes, on FakeSwitches
joined by a simulated underlay: each of the draft's three cases crosses
through the gateway named by its interconnect, arriving there in the
source VN's encapsulation and VNID and leaving in the destination VN's
(VXLAN, GRE, Geneve, and the same encapsulation on both sides); what no
interconnect or external network allows does not cross (law 1).  Every
``lab.sync()`` also checks that the incremental flows equal a full
recompute and that every switch holds exactly that.
"""

import pytest

from fakeof import Lab, arp_request, broadcast, ipv4, vid
from nvo3_ryu_app.authority import interconnect as I
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.owners import (ExtOwner, IcOwner, cookie_for)

GW = 9
MAC = '02:00:00:00:%02x:%02x'
GWMAC = {101: '02:4e:56:00:01:01', 102: '02:4e:56:00:01:02',
         103: '02:4e:56:00:01:03', 104: '02:4e:56:00:01:04'}
ROUTER = ('10.5.0.254/24', '02:4e:56:00:02:05')
# VN -> (service, encap, subnet)
VNS = {101: ('l3', 'vxlan', 1), 102: ('l3', 'gre', 2),
       103: ('l3', 'geneve', 3), 104: ('l3', 'vxlan', 4),
       201: ('l2', 'vxlan', 21), 202: ('l2', 'geneve', 22),
       205: ('l2', 'gre', 5)}
# host name -> (VN, NVE, port, host number)
HOSTS = {'a1': (101, 1, 'p1', 1), 'a2': (101, 2, 'p1', 2),
         'b2': (102, 2, 'p2', 2), 'c1': (103, 1, 'p3', 1),
         'd2': (104, 2, 'p4', 2),
         'e1': (201, 1, 'p5', 1), 'e2': (201, 1, 'p6', 2),
         'f1': (202, 2, 'p5', 1), 'f2': (202, 2, 'p6', 2),
         'r1': (205, 1, 'p4', 1)}


def mac(host):
    vnid, _, _, n = HOSTS[host]
    return MAC % (vnid % 256, n)


def ip(host):
    vnid, _, _, n = HOSTS[host]
    return '10.%d.0.%d' % (VNS[vnid][2], n)


def make(learn=True):
    lab = Lab(nves=(1, 2), access_ports=8)
    lab.add_nve(GW)
    db = lab.db
    db.register_nve(GW, role='gateway')
    for vnid, (service, encap, net) in VNS.items():
        kw = {}
        if service == 'l3':
            kw = dict(gateway_mac=GWMAC[vnid],
                      gateway_ips=['10.%d.0.254/24' % net])
        db.create_vn(vnid, 'vn%d' % vnid, service, encap, **kw)
    for vnid, dpid, port, _ in HOSTS.values():
        db.bind_port(dpid, port, vnid=vnid)
    if learn:
        for host, (vnid, dpid, port, _) in HOSTS.items():
            lab.learn(dpid, port, mac(host), ip(host))
    lab.sync()
    return lab


def ic(lab, name, vns, **kw):
    I.put_interconnect(lab.db, name, GW, vns, now=lab.tick(), **kw)
    lab.sync()


def send_ip(lab, src, dst_ip, dst_mac):
    vnid, dpid, port, _ = HOSTS[src]
    return lab.send(dpid, port, ipv4(mac(src), dst_mac, ip(src), dst_ip))


def routed(lab, src, dst):
    """``src`` sends to ``dst``'s address through its own gateway MAC."""
    src_vn = HOSTS[src][0]
    gw = GWMAC.get(src_vn) or ROUTER[1]
    return send_ip(lab, src, ip(dst), gw)


def where(host):
    return (HOSTS[host][1], HOSTS[host][2])


def encaps(res):
    """(from, to, VNID, encapsulation) of every underlay frame."""
    return [(s, d, vni, t[:-1]) for s, d, vni, t in res.encaps]


# --- (a) l3 + l3 ------------------------------------------------------------------

@pytest.mark.parametrize('src,dst,vns,encap', [
    ('a1', 'b2', (101, 102), ('vxlan', 'gre')),
    ('b2', 'a1', (101, 102), ('gre', 'vxlan')),
    ('a1', 'c1', (101, 103), ('vxlan', 'geneve')),
    ('c1', 'a2', (101, 103), ('geneve', 'vxlan')),
    ('a1', 'd2', (101, 104), ('vxlan', 'vxlan')),   # same tunnel port
])
def test_l3_l3_routes_through_the_gateway_converting_encapsulation(
        src, dst, vns, encap):
    lab = make()
    ic(lab, 'ic', list(vns))
    res = routed(lab, src, dst)
    assert res.points() == {where(dst)}, res
    _, _, pkt = res.only_delivery()
    dst_vn, src_vn = HOSTS[dst][0], HOSTS[src][0]
    assert (pkt['eth_src'], pkt['eth_dst']) == (GWMAC[dst_vn], mac(dst))
    assert pkt['ip_ttl'] == 63, 'decremented once, at the gateway'
    assert encaps(res) == [(HOSTS[src][1], GW, src_vn, encap[0]),
                           (GW, HOSTS[dst][1], dst_vn, encap[1])], res


def test_l3_l3_isolation_everything_else_stays_out():
    lab = make()
    ic(lab, 'ab', [101, 102])
    # No interconnect joins B and C, nor A and C.
    for src, dst in (('b2', 'c1'), ('c1', 'b2'), ('a1', 'c1'),
                     ('c1', 'a1')):
        res = routed(lab, src, dst)
        assert res.deliveries == [], (src, dst, res)
        assert {vni for _, _, vni, _ in res.underlay} <= {HOSTS[src][0]}
    # To the other VN's host MAC directly, not through the gateway MAC:
    # flooded in A as unknown unicast, never into B.
    res = send_ip(lab, 'a1', ip('b2'), mac('b2'))
    assert where('b2') not in res.points(), res
    assert {vni for _, _, vni, _ in res.underlay} == {101}, res
    # Frames of the interconnected VNs that are not for their gateway
    # MAC never reach table 7: the gateway is a member, it gets A's
    # broadcasts and floods, and delivers them nowhere.
    res = lab.send(1, 'p1', broadcast(mac('a1')))
    assert all(d != GW for d, _, _ in res.deliveries)
    assert not [p for d, p, _ in res.deliveries if d == 2 and p != 1]


def test_l3_unknown_host_across_is_punted_at_the_gateway_for_a_glean():
    lab = make()
    ic(lab, 'ab', [101, 102])
    res = send_ip(lab, 'a1', '10.2.0.77', GWMAC[101])
    assert res.deliveries == []
    assert [(d, t) for d, t, _ in res.packet_ins] == [(GW, P.INTERCONNECT)]


def test_l3_ttl_one_dies_at_the_gateway():
    lab = make()
    ic(lab, 'ab', [101, 102])
    vnid, dpid, port, _ = HOSTS['a1']
    res = lab.send(dpid, port, ipv4(mac('a1'), GWMAC[101], ip('a1'),
                                    ip('b2'), ttl=1))
    assert res.deliveries == []


# --- (c) l2 + l3 -------------------------------------------------------------------

def test_l2_l3_router_is_the_l2_hosts_next_hop():
    lab = make()
    ic(lab, 'ra', [205, 101], router={205: {'ip': ROUTER[0],
                                            'mac': ROUTER[1]}})
    # ARP for the router's address is answered by the ingress NVE.
    vnid, dpid, port, _ = HOSTS['r1']
    res = lab.send(dpid, port, arp_request(mac('r1'), ip('r1'),
                                           '10.5.0.254'))
    (_, _, reply), = res.deliveries
    assert res.points() == {(dpid, port)} and res.underlay == []
    assert (reply['arp_op'], reply['arp_sha']) == (2, ROUTER[1])
    # r1 (gre) -> a1 (vxlan) and back.
    res = routed(lab, 'r1', 'a1')
    assert res.points() == {where('a1')}
    _, _, pkt = res.only_delivery()
    assert (pkt['eth_src'], pkt['ip_ttl']) == (GWMAC[101], 63)
    assert encaps(res) == [(1, GW, 205, 'gre'), (GW, 1, 101, 'vxlan')]
    res = routed(lab, 'a2', 'r1')
    assert res.points() == {where('r1')}
    _, _, pkt = res.only_delivery()
    assert pkt['eth_src'] == ROUTER[1]
    # Other frames to the router's MAC go nowhere.
    res = send_ip(lab, 'r1', '10.99.0.1', ROUTER[1])
    assert res.deliveries == [] and res.underlay == []


# --- (b) l2 + l2 --------------------------------------------------------------------

def l2_lab(allowed=('e1', 'f1'), learn=True):
    lab = make(learn=learn)
    ic(lab, 'ef', [201, 202], allowed_macs=[mac(h) for h in allowed])
    return lab


def test_l2_l2_frames_cross_between_allowed_macs_only():
    lab = l2_lab()
    res = send_ip(lab, 'e1', ip('f1'), mac('f1'))
    assert res.points() == {where('f1')}
    assert encaps(res) == [(1, GW, 201, 'vxlan'), (GW, 2, 202, 'geneve')]
    _, _, pkt = res.only_delivery()
    assert pkt['ip_ttl'] == 64, 'bridged, not routed'
    res = send_ip(lab, 'f1', ip('e1'), mac('e1'))
    assert res.points() == {where('e1')}
    # Not allowed as a source, or as a destination: nothing crosses (an
    # unknown destination floods in the source's own VN only).
    for src, dst in (('e2', 'f1'), ('e1', 'f2'), ('f2', 'e1'),
                     ('f1', 'e2')):
        res = send_ip(lab, src, ip(dst), mac(dst))
        assert where(dst) not in res.points(), (src, dst, res)
        assert {vni for _, _, vni, _ in res.underlay} <= {HOSTS[src][0]}, (
            src, dst, res)


def test_l2_l2_arp_for_an_allowed_mac_is_answered_at_the_ingress():
    lab = l2_lab()
    vnid, dpid, port, _ = HOSTS['e1']
    res = lab.send(dpid, port, arp_request(mac('e1'), ip('e1'), ip('f1')))
    (d, p, reply), = res.deliveries
    assert (d, p) == (dpid, 5) and res.underlay == [] and not res.packet_ins
    assert (reply['arp_op'], reply['arp_sha'], reply['arp_spa']) == (
        2, mac('f1'), ip('f1'))
    # Not for a MAC that is not allowed: that request stays in E.
    res = lab.send(dpid, port, arp_request(mac('e1'), ip('e1'), ip('f2')))
    assert where('f2') not in res.points()
    assert not any(vni == 202 for _, _, vni, _ in res.underlay)


def test_l2_l2_broadcasts_cross_only_to_allowed_macs_not_yet_known():
    lab = make()
    # f3 is allowed, and known without an address (it has not spoken IP).
    lab.db.bind_port(2, 'p7', vnid=202)
    f3 = MAC % (202, 3)
    lab.learn(2, 'p7', f3)
    ic(lab, 'ef', [201, 202], allowed_macs=[mac('e1'), mac('f1'), f3])
    res = lab.send(1, 'p5', arp_request(mac('e1'), ip('e1'), '10.22.0.3'))
    across = [(d, p, pkt) for d, p, pkt in res.deliveries if d == 2]
    assert [(p, pkt['eth_dst']) for _, p, pkt in across] == [(7, f3)], res
    assert encaps(res)[-1] == (GW, 2, 202, 'geneve')
    # A broadcast of a source that is not allowed does not cross.
    res = lab.send(1, 'p6', arp_request(mac('e2'), ip('e2'), '10.22.0.3'))
    assert not [d for d, _, _ in res.deliveries if d == 2], res
    # Once f3's address is known, no broadcast needs to cross to it.
    lab.learn(2, 'p7', f3, '10.22.0.3')
    lab.sync()
    res = lab.send(1, 'p5', arp_request(mac('e1'), ip('e1'), '10.22.0.9'))
    assert not [d for d, _, _ in res.deliveries if d == 2], res


def test_l2_l2_allowed_mac_that_moves_is_followed():
    lab = l2_lab()
    lab.db.bind_port(1, 'p7', vnid=202)
    att = lab.db.attachments[(202, mac('f1'))]
    lab.db.move(att, 1, 'p7', None, lab.tick(), 'packet-in')
    lab.sync()
    res = send_ip(lab, 'e1', ip('f1'), mac('f1'))
    assert res.points() == {(1, 'p7')}
    assert encaps(res) == [(1, GW, 201, 'vxlan'), (GW, 1, 202, 'geneve')]


# --- external networks ------------------------------------------------------------

X1, X2 = '02:00:00:00:e1:01', '02:00:00:00:e1:02'


def ext_lab():
    lab = make()
    I.put_external(lab.db, 'lab', GW, 'p8', vlans={100: 201},
                   allowed_macs=[X1], now=lab.tick())
    lab.sync()
    lab.learn(GW, 'p8', X1, '10.21.0.101', vlan=100)
    lab.learn(GW, 'p8', X2, '10.21.0.102', vlan=100)
    lab.sync()
    return lab


def test_external_hosts_join_their_vlans_vn_and_get_unicast_if_allowed():
    lab = ext_lab()
    att = lab.db.attachments[(201, X1)]
    assert (att.nve, att.port, att.vlan) == (GW, 'p8', 100)
    entry, = lab.db.mapping_entries(att, lab.cfg.tunnel_ports)
    assert entry['external'] == 'lab'
    # In: both reach the VN.
    for x, x_ip in ((X1, '10.21.0.101'), (X2, '10.21.0.102')):
        res = lab.send(GW, 'p8', ipv4(x, mac('e1'), x_ip, ip('e1'),
                                      vlan=100))
        assert res.points() == {where('e1')}, res
    # Out: unicast only towards the allowed one, tagged with its VLAN.
    res = send_ip(lab, 'e1', '10.21.0.101', X1)
    (d, p, pkt), = res.deliveries
    assert (d, p, vid(pkt)) == (GW, 8, 100)
    res = send_ip(lab, 'e1', '10.21.0.102', X2)
    assert not [d for d, _, _ in res.deliveries if d == GW], res
    # ARP for the allowed one is answered; for the other it floods, and
    # broadcasts reach the segment (it must hear ARP requests).
    res = lab.send(1, 'p5', arp_request(mac('e1'), ip('e1'), '10.21.0.102'))
    assert (GW, 'p8') in res.points()
    assert [vid(pkt) for d, _, pkt in res.deliveries if d == GW] == [100]


def test_external_unmapped_vlan_and_other_vns_stay_out():
    lab = ext_lab()
    res = lab.send(GW, 'p8', ipv4(X1, mac('e1'), '10.21.0.101', ip('e1'),
                                  vlan=200))
    assert res.deliveries == [] and [t for _, t, _ in res.packet_ins] == [
        P.CLASSIFY]
    res = lab.send(GW, 'p8', ipv4(X1, mac('f1'), '10.21.0.101', ip('f1'),
                                  vlan=100))
    assert where('f1') not in res.points(), 'F has no external network'
    assert {vni for _, _, vni, _ in res.underlay} == {201}
    res = lab.send(2, 'p5', broadcast(mac('f1')))
    assert (GW, 'p8') not in res.points()


def test_external_and_interconnect_on_one_gateway():
    """The gateway's own external host in E reaches an allowed F host
    across the l2 + l2 interconnect, and is reached from it."""
    lab = ext_lab()
    ic(lab, 'ef', [201, 202], allowed_macs=[X1, mac('f1')])
    res = lab.send(GW, 'p8', ipv4(X1, mac('f1'), '10.21.0.101', ip('f1'),
                                  vlan=100))
    assert res.points() == {where('f1')}, res
    assert encaps(res) == [(GW, 2, 202, 'geneve')]
    res = send_ip(lab, 'f1', '10.21.0.101', X1)
    assert (GW, 'p8') not in res.points(), 'an external host is not reached ' \
        'across'
    res = lab.send(GW, 'p8', ipv4(X2, mac('f1'), '10.21.0.102', ip('f1'),
                                  vlan=100))
    assert where('f1') not in res.points(), 'X2 is not allowed'


# --- lifecycle: incremental == recompute, withdrawal, updates ------------------------

def holds(lab, cookie):
    return {d: [f for f in sw.flows() if f.cookie == cookie]
            for d, sw in lab.net.switches.items()
            if any(f.cookie == cookie for f in sw.flows())}


def test_delete_withdraws_every_flow_and_isolation_is_back():
    lab = l2_lab()
    I.put_interconnect(lab.db, 'ab', GW, [101, 102], now=lab.tick())
    I.put_external(lab.db, 'lab', GW, 'p8', vnid=201, now=lab.tick())
    lab.sync()
    cookies = [cookie_for(IcOwner('ef')), cookie_for(IcOwner('ab')),
               cookie_for(ExtOwner('lab'))]
    assert all(holds(lab, c) for c in cookies)
    assert set(holds(lab, cookies[0])) == {1, 2, GW}
    for name in ('ef', 'ab'):
        I.delete_interconnect(lab.db, name, now=lab.tick())
    I.delete_external(lab.db, 'lab', now=lab.tick())
    lab.sync()
    assert not any(holds(lab, c) for c in cookies)
    # Only the gateway's own table-7 miss (drop) is left.
    assert [(f.priority, f.actions) for f in lab.net.switch(GW).flows()
            if f.table == P.INTERCONNECT] == [(P.PRIO_MISS, ())]
    assert lab.db.vns_of(GW) == set()
    assert routed(lab, 'a1', 'b2').deliveries == []
    res = send_ip(lab, 'e1', ip('f1'), mac('f1'))
    assert where('f1') not in res.points()
    assert {vni for _, _, vni, _ in res.underlay} <= {201}


def test_update_changes_only_what_differs():
    lab = l2_lab()
    ic(lab, 'ab', [101, 102])
    before = {d: sw.items() for d, sw in lab.net.switches.items()}
    marks = {d: len(sw.applied) for d, sw in lab.net.switches.items()}
    # e2 joins the allowed list.
    ic(lab, 'ef', [201, 202], allowed_macs=[mac('e1'), mac('e2'),
                                             mac('f1')])
    for dpid, sw in lab.net.switches.items():
        after = sw.items()
        differ = {k for k in set(before[dpid]) | set(after)
                  if before[dpid].get(k) != after.get(k)}
        sent = {item.key for _, item in sw.applied[marks[dpid]:]}
        assert sent == differ, dpid
    assert marks[1] == len(lab.net.switches[1].applied), \
        'nothing of E changes on its other NVE'
    assert len(lab.net.switches[2].applied) > marks[2]
    assert send_ip(lab, 'e2', ip('f1'), mac('f1')).points() == {where('f1')}
    assert routed(lab, 'a1', 'b2').points() == {where('b2')}


def test_changes_of_vns_hosts_and_gateway_keep_incremental_equal_recompute():
    lab = l2_lab()
    ic(lab, 'ab', [101, 102])
    ic(lab, 'ra', [205, 101], router={205: {'ip': ROUTER[0],
                                            'mac': ROUTER[1]}})
    db = lab.db
    db.update_vn(102, encap='geneve', now=lab.tick())
    lab.sync()
    assert encaps(routed(lab, 'a1', 'b2'))[-1] == (GW, 2, 102, 'geneve')
    # A new host of B is routed to; one that leaves is not.
    lab.db.bind_port(1, 'p7', vnid=102)
    lab.learn(1, 'p7', MAC % (102, 9), '10.2.0.9')
    lab.sync()
    res = send_ip(lab, 'a2', '10.2.0.9', GWMAC[101])
    assert res.points() == {(1, 'p7')}
    db.detach(102, MAC % (102, 9), lab.tick())
    lab.sync()
    assert send_ip(lab, 'a2', '10.2.0.9', GWMAC[101]).deliveries == []
    # The gateway's VTEP changes: every member follows.
    db.register_nve(GW, '10.0.0.99')
    lab.sync()
    assert routed(lab, 'a1', 'b2').points() == {where('b2')}
    # The gateway loses and regains its tables.
    lab.restart_switch(GW)
    assert routed(lab, 'r1', 'a1').points() == {where('a1')}
    assert send_ip(lab, 'e1', ip('f1'), mac('f1')).points() == {where('f1')}


def test_gateway_away_then_back_drops_nothing_it_should_hold():
    lab = l2_lab()
    ic(lab, 'ab', [101, 102])
    lab.db.nve_disconnected(GW, lab.tick())
    lab.db.mark_unreachable(GW, lab.tick())
    lab.sync()
    lab.db.nve_connected(GW, lab.ports(GW), '02:aa:00:00:00:09', lab.tick())
    lab.sync()
    assert routed(lab, 'a1', 'b2').points() == {where('b2')}
