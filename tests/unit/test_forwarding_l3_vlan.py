"""Forwarding behaviour of the L3 VN service and of VLAN bindings.

Same approach as test_forwarding.py: MappingDB -> Planner -> fake switches,
then packets; incremental == recompute is checked after each scenario.
"""

import pytest

from fakeof import Lab, arp_request, broadcast, ipv4, ipv6, ipv6_ns, vid
from nvo3_ryu_app.authority.errors import BadRequest, Conflict, MappingError

RED, BLUE, GREEN = 7001, 5001, 5002
GW = '02:fe:00:00:00:01'
A, B, C, D = ('02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:00:0c',
              '02:00:00:00:00:0d')
IP_A, IP_A2, IP_B, IP_C = ('192.168.10.5', '192.168.10.6', '192.168.20.5',
                           '192.168.20.6')


# --- L3 VN -------------------------------------------------------------------

def make_red():
    """L3 VN red: A 10.5 at nve1 p1, D 10.6 at nve1 p3, B 20.5 at nve2 p1,
    C 20.6 at nve1 p2."""
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(RED, 'red', service='l3', gateway_mac=GW,
                     gateway_ips=['192.168.10.1/24', '192.168.20.1/24'])
    for dpid, port in ((1, 'p1'), (1, 'p2'), (1, 'p3'), (2, 'p1')):
        lab.db.bind_port(dpid, port, vnid=RED)
    lab.learn(1, 'p1', A, IP_A)
    lab.learn(1, 'p3', D, IP_A2)
    lab.learn(2, 'p1', B, IP_B)
    lab.learn(1, 'p2', C, IP_C)
    lab.sync()
    return lab


@pytest.fixture
def red():
    lab = make_red()
    yield lab
    lab.check_consistent()


@pytest.mark.parametrize('dpid, mac, ip, gw_ip', [
    (1, A, IP_A, '192.168.10.1'), (2, B, IP_B, '192.168.20.1')])
def test_arp_for_the_gateway_is_answered_locally(red, dpid, mac, ip, gw_ip):
    res = red.send(dpid, 'p1', arp_request(mac, ip, gw_ip))
    assert res.points() == {(dpid, 'p1')}, res
    assert res.underlay == [] and res.packet_ins == [], res
    _, _, reply = res.only_delivery()
    assert (reply['arp_op'], reply['arp_sha'], reply['arp_spa'],
            reply['eth_src'], reply['eth_dst'], reply['arp_tpa']) == (
                2, GW, gw_ip, GW, mac, ip)


def test_routed_packet_crosses_subnets_and_nves(red):
    res = red.send(1, 'p1', ipv4(A, GW, IP_A, IP_B, ttl=64))
    assert res.points() == {(2, 'p1')}, res
    assert [(s, d, vni) for s, d, vni, _ in res.underlay] == [(1, 2, RED)]
    _, _, pkt = res.only_delivery()
    assert (pkt['ip_ttl'], pkt['eth_src'], pkt['eth_dst']) == (63, GW, B)
    assert (pkt['ipv4_src'], pkt['ipv4_dst']) == (IP_A, IP_B)
    # And the reply, routed by nve2.
    back = red.send(2, 'p1', ipv4(B, GW, IP_B, IP_A, ttl=10))
    _, _, pkt = back.only_delivery()
    assert back.points() == {(1, 'p1')} and pkt['ip_ttl'] == 9, back
    assert (pkt['eth_src'], pkt['eth_dst']) == (GW, A)


def test_routed_packet_to_a_local_vm_stays_local(red):
    res = red.send(1, 'p1', ipv4(A, GW, IP_A, IP_C))
    assert res.points() == {(1, 'p2')} and res.underlay == [], res
    assert res.only_delivery()[2]['ip_ttl'] == 63


def test_same_subnet_traffic_is_bridged_not_routed(red):
    res = red.send(1, 'p1', ipv4(A, D, IP_A, IP_A2))
    _, _, pkt = res.only_delivery()
    assert res.points() == {(1, 'p3')} and pkt['ip_ttl'] == 64, res


def test_ttl_expiring_in_the_router_drops(red):
    res = red.send(1, 'p1', ipv4(A, GW, IP_A, IP_B, ttl=1))
    assert res.deliveries == [] and res.underlay == [], res


def test_unknown_destination_behind_the_gateway_is_gleaned_not_flooded(red):
    """Never flooded: punted once, so the authority asks for the address
    from the gateway (authority._glean), as a router would."""
    res = red.send(1, 'p1', ipv4(A, GW, IP_A, '192.168.20.99'))
    assert res.deliveries == [] and res.underlay == [], res
    assert [(dpid, table) for dpid, table, _ in res.packet_ins] == [
        (1, 3)], res


def test_a_tenant_cannot_claim_a_gateway_address(red):
    with pytest.raises(Conflict):
        red.learn(2, 'p1', '02:00:00:00:00:66', '192.168.20.1')
    red.sync()
    res = red.send(2, 'p1', arp_request(B, IP_B, '192.168.20.1'))
    assert res.only_delivery()[2]['arp_sha'] == GW


def test_a_gateway_cannot_take_a_tenant_address():
    red = make_red()
    try:
        red.db.update_vn(RED, gateway_ips=['192.168.10.1/24',
                                           '192.168.20.5/24'])  # B's
    except MappingError:
        return  # refusing the update is a fine answer
    red.sync()
    res = red.send(1, 'p1', arp_request(A, IP_A, IP_B))
    assert res.only_delivery()[2]['arp_sha'] in (B, GW)


@pytest.fixture
def red6():
    """red with IPv6 subnets too: A fd00:10::5 at nve1, B fd00:20::5 at
    nve2."""
    lab = make_red()
    lab.db.update_vn(RED, gateway_ips=['192.168.10.1/24', '192.168.20.1/24',
                                       'fd00:10::1/64', 'fd00:20::1/64'])
    lab.learn(1, 'p1', A, 'fd00:10::5')
    lab.learn(2, 'p1', B, 'fd00:20::5')
    lab.sync()
    yield lab
    lab.check_consistent()


def test_routed_ipv6_decrements_the_hop_limit(red6):
    res = red6.send(1, 'p1', ipv6(A, GW, 'fd00:10::5', 'fd00:20::5'))
    _, _, pkt = res.only_delivery()
    assert res.points() == {(2, 'p1')}, res
    assert (pkt['ip_ttl'], pkt['eth_src'], pkt['eth_dst']) == (63, GW, B)


def test_ipv6_ns_for_the_gateway_is_not_flooded(red6):
    res = red6.send(1, 'p1', ipv6_ns(A, 'fd00:10::5', 'fd00:10::1'))
    assert res.underlay == [] and res.points() <= {(1, 'p1')}, res
    assert res.packet_ins or res.deliveries, res


# --- VLAN bindings -----------------------------------------------------------

@pytest.fixture
def trunk():
    """nve1 p1 is a trunk: VLAN 10 -> blue, VLAN 20 -> green; nve1 p2 is
    untagged blue; nve2 p1 untagged blue, nve2 p2 trunk VLAN 30 -> green.

    A (blue, vlan 10) and G (green, vlan 20) sit behind nve1 p1, C (blue)
    on nve1 p2, B (blue) on nve2 p1, H (green, vlan 30) on nve2 p2."""
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(BLUE, 'blue')
    lab.db.create_vn(GREEN, 'green')
    lab.db.bind_port(1, 'p1', vlans={10: BLUE, 20: GREEN})
    lab.db.bind_port(1, 'p2', vnid=BLUE)
    lab.db.bind_port(2, 'p1', vnid=BLUE)
    lab.db.bind_port(2, 'p2', vlans={30: GREEN})
    lab.learn(1, 'p1', A, '10.1.0.1', vlan=10)
    lab.learn(1, 'p1', G, '10.2.0.1', vlan=20)
    lab.learn(1, 'p2', C, '10.1.0.3')
    lab.learn(2, 'p1', B, '10.1.0.2')
    lab.learn(2, 'p2', H, '10.2.0.2', vlan=30)
    lab.sync()
    yield lab
    lab.check_consistent()


G, H = '02:00:00:00:00:1a', '02:00:00:00:00:1b'
OWN = {A: '10.1.0.1', G: '10.2.0.1', C: '10.1.0.3', B: '10.1.0.2',
       H: '10.2.0.2'}  # the address each one owns (others are punted)


def test_tagged_frames_enter_the_vn_of_their_vlan(trunk):
    res = trunk.send(1, 'p1', ipv4(A, B, '10.1.0.1', '10.1.0.2', vlan=10))
    assert res.points() == {(2, 'p1')}, res
    assert [vni for _, _, vni, _ in res.underlay] == [BLUE]
    assert 'vlan_vid' not in res.underlay[0][3]  # the tag is access-local
    assert vid(res.only_delivery()[2]) is None

    res = trunk.send(1, 'p1', ipv4(G, H, '10.2.0.1', '10.2.0.2', vlan=20))
    assert res.points() == {(2, 'p2')}, res
    assert [vni for _, _, vni, _ in res.underlay] == [GREEN]
    assert vid(res.only_delivery()[2]) == 30  # the receiver's own VLAN


def test_deliveries_to_tagged_bindings_carry_the_tag(trunk):
    for src, port, mac, dst, tag in ((2, 'p1', B, A, 10), (1, 'p2', C, A, 10),
                                     (2, 'p2', H, G, 20)):
        vlan = 30 if (src, port) == (2, 'p2') else None
        res = trunk.send(src, port, ipv4(mac, dst, OWN[mac], OWN[dst],
                                         vlan=vlan))
        assert res.points() == {(1, 'p1')}, res
        assert vid(res.only_delivery()[2]) == tag, res


def test_local_trunk_to_access_is_untagged_and_back(trunk):
    res = trunk.send(1, 'p1', ipv4(A, C, '10.1.0.1', '10.1.0.3', vlan=10))
    assert res.points() == {(1, 'p2')} and res.underlay == [], res
    assert vid(res.only_delivery()[2]) is None


@pytest.mark.parametrize('mac, vlan, target, answer', [
    (A, 10, '10.1.0.2', B), (G, 20, '10.2.0.2', H), (A, 10, '10.1.0.3', C)])
def test_arp_answers_go_back_tagged(trunk, mac, vlan, target, answer):
    res = trunk.send(1, 'p1', arp_request(mac, OWN[mac], target, vlan=vlan))
    assert res.points() == {(1, 'p1')}, res
    assert res.underlay == [] and res.packet_ins == [], res
    _, _, reply = res.only_delivery()
    assert vid(reply) == vlan
    assert (reply['arp_op'], reply['arp_sha'], reply['eth_dst']) == (
        2, answer, mac)


def test_arp_answer_on_an_untagged_port_stays_untagged(trunk):
    res = trunk.send(1, 'p2', arp_request(C, '10.1.0.3', '10.1.0.1'))
    _, _, reply = res.only_delivery()
    assert vid(reply) is None and reply['arp_sha'] == A


def test_broadcast_on_a_trunk_stays_in_its_vlan_vn(trunk):
    res = trunk.send(1, 'p1', broadcast(A, vlan=10))
    assert res.points() == {(1, 'p2'), (2, 'p1')}, res
    assert all(vid(p) is None for _, _, p in res.deliveries)
    # Blue broadcast from nve2 reaches the trunk tagged 10 only, never 20.
    res = trunk.send(2, 'p1', broadcast(B))
    tags = sorted((trunk.net.port_name(d, p), vid(pkt))
                  for d, p, pkt in res.deliveries)
    assert tags == [('p1', 10), ('p2', None)], res
    res = trunk.send(2, 'p2', broadcast(H, vlan=30))
    tags = sorted((d, trunk.net.port_name(d, p), vid(pkt))
                  for d, p, pkt in res.deliveries)
    assert tags == [(1, 'p1', 20)], res


def test_unbound_vlan_and_untagged_frames_on_a_trunk_are_punted(trunk):
    for vlan in (30, None):
        res = trunk.send(1, 'p1', broadcast(A, vlan=vlan))
        assert res.deliveries == [] and res.underlay == [], res
        assert len(res.packet_ins) == 1, res


def test_source_is_checked_per_vlan(trunk):
    # A is known on VLAN 10 (blue); the same MAC on VLAN 20 is unknown in
    # green, so it is punted rather than forwarded.
    res = trunk.send(1, 'p1', ipv4(A, H, '10.2.0.9', '10.2.0.2', vlan=20))
    assert res.deliveries == [] and len(res.packet_ins) == 1, res


def test_rebinding_a_vlan_moves_it_to_another_vn(trunk):
    trunk.db.bind_port(1, 'p1', vlans={10: GREEN})   # VLAN 20 goes
    trunk.sync()
    assert (BLUE, A) not in trunk.db.attachments  # dropped off the binding
    res = trunk.send(2, 'p1', broadcast(B))
    assert res.points() == {(1, 'p2')}, res
    trunk.learn(1, 'p1', A, '10.2.0.9', vlan=10)
    trunk.sync()
    res = trunk.send(1, 'p1', ipv4(A, H, '10.2.0.9', '10.2.0.2', vlan=10))
    assert res.points() == {(2, 'p2')}, res
    assert [vni for _, _, vni, _ in res.underlay] == [GREEN]


def test_two_vlans_of_one_trunk_in_one_vn_are_refused():
    """Frames between them would have to leave by their ingress port."""
    lab = Lab(nves=(1,))
    lab.db.create_vn(BLUE, 'blue')
    with pytest.raises(BadRequest, match='one VLAN only'):
        lab.db.bind_port(1, 'p1', vlans={10: BLUE, 20: BLUE})
    assert 'p1' not in lab.db.nves[1].bindings


