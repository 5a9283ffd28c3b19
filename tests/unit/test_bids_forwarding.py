"""Forwarding of a vNIC registered in several VNs (BIDs), on fake switches.

One VM vNIC is registered with three BIDs in three VNs, and each binding's
traffic must enter its own VN and stay there:

* L3 service (draft Figure 3): an untagged vNIC with one IP per VN; table 0
  picks the VN by source IP, whatever VN the port's own binding names.
* L2 service (draft Figure 4): a vNIC on a trunk port with one VLAN per VN;
  the VLAN picks the VN (the operator bound the VLANs of the trunk).

Registered entries are reachable before the vNIC sends anything, so every
scenario starts with the peers talking to it.  De-registering one BID must
remove exactly that VN.  ``lab.sync`` checks incremental == recompute ==
what the fake switches hold after every step.
"""

import pytest

from fakeof import Lab, arp_request, broadcast, ethernet, ipv4, vid
from nvo3_ryu_app.authority import bids
from nvo3_ryu_app.authority import pipeline as P

VM = '02:00:00:00:01:01'          # the VM's one vNIC
VM2 = '02:00:00:00:01:02'         # a second vNIC of the same VM
L3_VNS = (10, 20, 30)
L2_VNS = (40, 50, 60)


def net_ip(vnid, host):
    return '192.168.%d.%d' % (vnid // 10, host)


def nve(dpid):
    return '%016x' % dpid


# Peers of the L3 case: VN -> (mac, location); VN 10's is learned from its
# frames on a bound port, the others are registered.
L3_PEERS = {10: ('02:00:00:00:10:20', (2, 'p1')),
            20: ('02:00:00:00:20:20', (2, 'p2')),
            30: ('02:00:00:00:30:20', (3, 'p1'))}


@pytest.fixture(params=['port-bound-to-an-l2-vn', 'port-bound-to-vn-10'])
def l3lab(request):
    lab = Lab(nves=(1, 2, 3))
    for vnid in L3_VNS:
        lab.db.create_vn(vnid, 'l3-%d' % vnid, 'l3',
                         gateway_mac='02:fe:00:00:00:%02x' % vnid,
                         gateway_ips=['%s/24' % net_ip(vnid, 1)])
    # The operator's bindings (a registration binds no port).
    if request.param == 'port-bound-to-vn-10':
        lab.db.bind_port(1, 'p1', vnid=10)
    else:
        lab.db.create_vn(99, 'l2-99', 'l2')
        lab.db.bind_port(1, 'p1', vnid=99)
    lab.db.bind_port(2, 'p1', vnid=10)
    lab.db.bind_port(2, 'p2', vnid=20)
    lab.db.bind_port(3, 'p1', vnid=30)
    lab.db.bind_port(3, 'p3', vnid=10)
    lab.sync()
    mac, (dpid, port) = L3_PEERS[10]
    lab.learn(dpid, port, mac, net_ip(10, 20))
    for vnid in (20, 30):
        mac, (dpid, port) = L3_PEERS[vnid]
        bids.associate(lab.db, nve(dpid), port, mac, vnid,
                       ip=net_ip(vnid, 20), now=lab.tick())
    for bid, vnid in enumerate(L3_VNS, 1):
        bids.associate(lab.db, nve(1), 'p1', VM, vnid, ip=net_ip(vnid, 10),
                       bid=bid, now=lab.tick())
    lab.sync()
    yield lab
    lab.sync()


def test_l3_peers_reach_the_vnic_in_each_vn_before_it_sends(l3lab):
    for vnid, (mac, (dpid, port)) in L3_PEERS.items():
        res = l3lab.send(dpid, port, ipv4(mac, VM, net_ip(vnid, 20),
                                          net_ip(vnid, 10)))
        assert res.points() == {(1, 'p1')}, res
        assert [vni for _, _, vni, _ in res.underlay] == [vnid]
        assert not res.packet_ins, res


def test_l3_each_source_ip_enters_its_own_vn(l3lab):
    for vnid, (mac, where) in L3_PEERS.items():
        res = l3lab.send(1, 'p1', ipv4(VM, mac, net_ip(vnid, 10),
                                       net_ip(vnid, 20)))
        assert res.points() == {where}, res
        assert [vni for _, _, vni, _ in res.underlay] == [vnid]
        assert not res.packet_ins


@pytest.mark.parametrize('src_vn', L3_VNS)
@pytest.mark.parametrize('dst_vn', L3_VNS)
def test_l3_no_peer_of_another_vn_is_reached(l3lab, src_vn, dst_vn):
    if src_vn == dst_vn:
        return
    mac, where = L3_PEERS[dst_vn]
    res = l3lab.send(1, 'p1', ipv4(VM, mac, net_ip(src_vn, 10),
                                   net_ip(dst_vn, 20)))
    assert where not in res.points(), res
    assert {vni for _, _, vni, _ in res.underlay} <= {src_vn}, res
    # Its ARP from one VN's address is not answered with another VN's peer.
    res = l3lab.send(1, 'p1', arp_request(VM, net_ip(src_vn, 10),
                                          net_ip(dst_vn, 20)))
    assert not any(pkt.get('arp_sha') == mac for _, _, pkt in
                   res.deliveries), res
    assert where not in res.points(), res


def test_l3_arp_is_answered_at_the_ingress_nve_in_the_right_vn(l3lab):
    for vnid, (mac, (dpid, port)) in L3_PEERS.items():
        res = l3lab.send(1, 'p1', arp_request(VM, net_ip(vnid, 10),
                                              net_ip(vnid, 20)))
        (d, p, pkt), = res.deliveries
        assert (d, p) == (1, 1) and res.underlay == []
        assert (pkt['arp_op'], pkt['arp_sha'], pkt['arp_spa']) == (
            2, mac, net_ip(vnid, 20))
        # And the peers' ARP for the vNIC's address in their VN.
        res = l3lab.send(dpid, port, arp_request(mac, net_ip(vnid, 20),
                                                 net_ip(vnid, 10)))
        (_, _, pkt), = res.deliveries
        assert (pkt['arp_sha'], pkt['arp_spa']) == (VM, net_ip(vnid, 10))


def test_l3_gateway_routes_within_the_vn_of_the_source_ip(l3lab):
    gw = '02:fe:00:00:00:14'                  # VN 20's gateway MAC
    pkt = ipv4(VM, gw, net_ip(20, 10), net_ip(20, 20))
    res = l3lab.send(1, 'p1', pkt)
    assert res.points() == {(2, 'p2')}, res


def test_l3_deregistering_one_bid_removes_exactly_that_vn(l3lab):
    bids.dissociate(l3lab.db, nve(1), VM, bid=2, now=l3lab.tick())
    l3lab.sync()
    assert l3lab.holds_vn(1, 20) == []
    mac, (dpid, port) = L3_PEERS[20]
    res = l3lab.send(dpid, port, ipv4(mac, VM, net_ip(20, 20),
                                      net_ip(20, 10)))
    assert (1, 'p1') not in res.points(), res
    res = l3lab.send(1, 'p1', ipv4(VM, mac, net_ip(20, 10), net_ip(20, 20)))
    assert (dpid, port) not in res.points(), res
    for vnid in (10, 30):
        mac, (dpid, port) = L3_PEERS[vnid]
        res = l3lab.send(dpid, port, ipv4(mac, VM, net_ip(vnid, 20),
                                          net_ip(vnid, 10)))
        assert res.points() == {(1, 'p1')}, res
        res = l3lab.send(1, 'p1', ipv4(VM, mac, net_ip(vnid, 10),
                                       net_ip(vnid, 20)))
        assert res.points() == {(dpid, port)}, res


def test_l3_reregistration_at_another_nve_moves_every_vn(l3lab):
    bids.associate(l3lab.db, nve(3), 'p3', VM, 10, bid=1, now=l3lab.tick())
    l3lab.sync()
    for vnid, (mac, (dpid, port)) in L3_PEERS.items():
        res = l3lab.send(dpid, port, ipv4(mac, VM, net_ip(vnid, 20),
                                          net_ip(vnid, 10)))
        assert res.points() == {(3, 'p3')}, res
        res = l3lab.send(3, 'p3', ipv4(VM, mac, net_ip(vnid, 10),
                                       net_ip(vnid, 20)))
        assert res.points() == {(dpid, port)}, res


def test_bid_classification_flows_are_declared_tier(l3lab):
    flows = [f for f in l3lab.net.switch(1).flows()
             if f.table == P.CLASSIFY and f.priority == P.PRIO_ACCESS_BID]
    assert len(flows) == 6        # IPv4 and ARP for each of three IPs
    assert {dict(f.actions)['metadata'] for f in flows} == set(L3_VNS)
    assert all(f.match_dict['eth_src'] == VM for f in flows)


# --- L2 service: VLANs -------------------------------------------------------

# VN -> (peer mac, location, VLAN the peer uses or None); the VM's VLANs.
L2_PEERS = {40: ('02:00:00:00:40:20', (2, 'p3'), None),
            50: ('02:00:00:00:50:20', (3, 'p2'), None),
            60: ('02:00:00:00:60:20', (3, 'p3'), 7)}
VM_VLANS = {40: 10, 50: 20, 60: 30}


@pytest.fixture
def l2lab():
    lab = Lab(nves=(1, 2, 3))
    for vnid in L2_VNS:
        lab.db.create_vn(vnid, 'l2-%d' % vnid, 'l2')
    lab.db.bind_port(2, 'p3', vnid=40)
    # The operator's bindings (a registration binds no port): the peers'
    # ports and the VM's trunk.
    lab.db.bind_port(3, 'p2', vnid=50)
    lab.db.bind_port(3, 'p3', vlans={7: 60})
    lab.db.bind_port(1, 'p2', vlans={v: n for n, v in VM_VLANS.items()})
    lab.sync()
    lab.learn(2, 'p3', L2_PEERS[40][0])
    for vnid in (50, 60):
        mac, (dpid, port), vlan = L2_PEERS[vnid]
        bids.associate(lab.db, nve(dpid), port, mac, vnid, vlan=vlan,
                       now=lab.tick())
    for bid, vnid in enumerate(L2_VNS, 1):
        bids.associate(lab.db, nve(1), 'p2', VM, vnid, vlan=VM_VLANS[vnid],
                       bid=bid, now=lab.tick())
    lab.sync()
    yield lab
    lab.sync()


def test_l2_peers_reach_the_vnic_on_its_vlan_in_each_vn(l2lab):
    for vnid, (mac, (dpid, port), vlan) in L2_PEERS.items():
        res = l2lab.send(dpid, port, ethernet(mac, VM, vlan=vlan))
        (d, p, pkt), = res.deliveries
        assert (d, p) == (1, 2) and vid(pkt) == VM_VLANS[vnid], res
        assert not res.packet_ins


def test_l2_each_vlan_enters_its_own_vn(l2lab):
    for vnid, (mac, where, vlan) in L2_PEERS.items():
        res = l2lab.send(1, 'p2', ethernet(VM, mac, vlan=VM_VLANS[vnid]))
        assert res.points() == {where}, res
        (_, _, pkt), = res.deliveries
        assert vid(pkt) == vlan
        res = l2lab.send(1, 'p2', broadcast(VM, vlan=VM_VLANS[vnid]))
        assert res.points() == {where}, res


@pytest.mark.parametrize('src_vn', L2_VNS)
@pytest.mark.parametrize('dst_vn', L2_VNS)
def test_l2_no_peer_of_another_vn_is_reached(l2lab, src_vn, dst_vn):
    if src_vn == dst_vn:
        return
    mac, where, _ = L2_PEERS[dst_vn]
    res = l2lab.send(1, 'p2', ethernet(VM, mac, vlan=VM_VLANS[src_vn]))
    assert where not in res.points(), res
    assert {vni for _, _, vni, _ in res.underlay} <= {src_vn}


def test_l2_deregistering_one_bid_removes_exactly_that_vn(l2lab):
    bids.dissociate(l2lab.db, nve(1), VM, bid=2, now=l2lab.tick())
    # The trunk's VLANs are the operator's: it takes VLAN 20 off too.
    l2lab.db.bind_port(1, 'p2', vlans={10: 40, 30: 60}, now=l2lab.tick())
    l2lab.sync()
    assert l2lab.holds_vn(1, 50) == []
    assert l2lab.db.nves[1].bindings['p2'].vlans == {10: 40, 30: 60}
    mac, where, vlan = L2_PEERS[50]
    res = l2lab.send(where[0], where[1], ethernet(mac, VM, vlan=vlan))
    assert (1, 'p2') not in res.points(), res
    res = l2lab.send(1, 'p2', ethernet(VM, mac, vlan=20))
    assert res.points() == set() and res.underlay == [], res
    for vnid in (40, 60):
        mac, (dpid, port), vlan = L2_PEERS[vnid]
        res = l2lab.send(dpid, port, ethernet(mac, VM, vlan=vlan))
        assert res.points() == {(1, 'p2')}, res


# --- several vNICs of one VM through one NVE ---------------------------------

def test_two_vnics_of_one_vm_reach_different_vns_through_one_nve(l3lab):
    l3lab.db.bind_port(1, 'p3', vnid=20, now=l3lab.tick())
    bids.associate(l3lab.db, nve(1), 'p3', VM2, 20, ip=net_ip(20, 11),
                   now=l3lab.tick())
    l3lab.sync()
    mac, where = L3_PEERS[20]
    res = l3lab.send(1, 'p3', ipv4(VM2, mac, net_ip(20, 11),
                                   net_ip(20, 20)))
    assert res.points() == {where}, res
    res = l3lab.send(where[0], where[1], ipv4(mac, VM2, net_ip(20, 20),
                                              net_ip(20, 11)))
    assert res.points() == {(1, 'p3')}, res
    mac10, where10 = L3_PEERS[10]
    res = l3lab.send(1, 'p3', ipv4(VM2, mac10, net_ip(20, 11),
                                   net_ip(10, 20)))
    assert where10 not in res.points(), res
