"""ARP and neighbour discovery as real guests use them (law 2), on the fake
OpenFlow network.

Broadcast requests for known addresses are answered by the ingress NVE;
what only a guest can answer, or must hear, is never answered for it:
gratuitous ARP announcements and unsolicited NAs reach the VN, unicast ARP
requests and NS reach their target, and an owner's own address probe (ARP
from 0.0.0.0, DAD NS from ``::``) is not answered, while another MAC's
probe for an address in use is.  tests/integration/test_guest_arp_nd.py
does the same with real guests on real OVS.

Topology (the ``blue`` VN 5001 of test_forwarding.py)::

    nve1: p1 A .1   p2 C .3   p3 (bound, nobody yet)
    nve2: p1 B .2   p2 (bound, nobody yet)
"""

import pytest

from fakeof import (Lab, arp_probe, arp_request, garp, ipv6_ns,
                    ipv6_unsolicited_na, rarp)
from nvo3_ryu_app.authority import pipeline as P

BLUE, RED = 5001, 7001
A, B, C = '02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:00:0c'
NEW = '02:00:00:00:00:0e'
IP_A, IP_B, IP_C = '192.168.1.1', '192.168.1.2', '192.168.1.3'
V6_A, V6_B = 'fd00::a', 'fd00::b'
GW = '02:fe:00:00:00:01'
# Everyone in the VN but A: where A's broadcasts must go.
A_PEERS = {(1, 'p2'), (1, 'p3'), (2, 'p1'), (2, 'p2')}


@pytest.fixture
def blue():
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(BLUE, 'blue')
    for dpid, port in ((1, 'p1'), (1, 'p2'), (1, 'p3'), (2, 'p1'),
                       (2, 'p2')):
        lab.db.bind_port(dpid, port, vnid=BLUE)
    lab.learn(1, 'p1', A, IP_A)
    lab.learn(1, 'p1', A, V6_A)
    lab.learn(2, 'p1', B, IP_B)
    lab.learn(2, 'p1', B, V6_B)
    lab.learn(1, 'p2', C, IP_C)
    lab.sync()
    yield lab
    lab.check_consistent()


def _answered_at_ingress(res, port=(1, 'p1')):
    assert res.points() == {port}, res
    assert res.underlay == [] and res.packet_ins == [], res
    return res.only_delivery()[2]


# --- broadcast requests for known addresses: the NVE answers ----------------

def test_broadcast_request_for_a_known_address_is_answered_at_ingress(blue):
    reply = _answered_at_ingress(blue.send(1, 'p1',
                                           arp_request(A, IP_A, IP_B)))
    assert (reply['arp_op'], reply['arp_sha'], reply['arp_spa']) == (
        2, B, IP_B)


# --- gratuitous ARP: the VN hears it -----------------------------------------

@pytest.mark.parametrize('op', [1, 2], ids=['request', 'reply'])
def test_gratuitous_arp_reaches_every_member_and_is_not_answered(blue, op):
    sent = garp(A, IP_A, op)
    res = blue.send(1, 'p1', sent)
    assert res.points() == A_PEERS, res
    assert all(pkt == sent for _, _, pkt in res.deliveries), res
    assert [(s, d, vni) for s, d, vni, _ in res.underlay] == [(1, 2, BLUE)]
    assert res.packet_ins == []
    # It passed the owner's announcement flow (whose counts refresh it).
    sw = blue.net.switch(1)
    blue.send(1, 'p1', sent)
    assert (P.SOURCE, P.PRIO_ANNOUNCE) in {
        (f.table, f.priority) for t, f in sw.trace if not isinstance(f, str)}


def test_gratuitous_arp_for_a_new_address_is_punted_to_be_learned(blue):
    res = blue.send(1, 'p1', garp(A, '192.168.1.77'))
    assert res.deliveries == [] and res.underlay == [], res
    assert [(d, t) for d, t, _ in res.packet_ins] == [(1, P.SOURCE)]
    blue.learn(1, 'p1', A, '192.168.1.77')
    blue.sync()
    # Re-injected once learned, it reaches the VN.
    assert blue.send(1, 'p1', garp(A, '192.168.1.77')).points() == A_PEERS


def test_gratuitous_arp_for_another_owners_address_never_reaches_the_vn(blue):
    res = blue.send(1, 'p2', garp(C, IP_A))
    assert res.deliveries == [] and res.underlay == [], res
    assert [(d, t) for d, t, _ in res.packet_ins] == [(1, P.SOURCE)]


# --- unicast requests: to their target ---------------------------------------

def test_unicast_arp_request_reaches_its_target_unanswered(blue):
    sent = arp_request(A, IP_A, IP_B, eth_dst=B)
    res = blue.send(1, 'p1', sent)
    assert res.points() == {(2, 'p1')}, res
    assert res.only_delivery()[2] == sent          # the request itself
    assert [(s, d, vni) for s, d, vni, _ in res.underlay] == [(1, 2, BLUE)]
    # Local target: delivered on the NVE, nothing on the underlay.
    res = blue.send(1, 'p1', arp_request(A, IP_A, IP_C, eth_dst=C))
    assert res.points() == {(1, 'p2')} and res.underlay == [], res
    assert res.only_delivery()[2]['arp_op'] == 1


def test_unicast_arp_request_to_an_unknown_mac_is_not_answered(blue):
    res = blue.send(1, 'p1', arp_request(A, IP_A, IP_B,
                                         eth_dst='02:00:00:00:00:99'))
    assert res.points() == A_PEERS, res        # unknown unicast, flooded
    assert all(p['arp_op'] == 1 for _, _, p in res.deliveries)


# --- address probes (RFC 5227 ARP from 0.0.0.0) -------------------------------

def test_owners_own_address_probe_is_not_answered(blue):
    sent = arp_probe(A, IP_A)
    res = blue.send(1, 'p1', sent)
    assert (1, 'p1') not in res.points(), res
    assert res.points() == A_PEERS, res
    assert all(pkt == sent for _, _, pkt in res.deliveries)
    assert res.packet_ins == []


def test_another_macs_probe_for_an_address_in_use_is_answered(blue):
    reply = _answered_at_ingress(blue.send(1, 'p2', arp_probe(C, IP_A)),
                                 (1, 'p2'))
    assert (reply['arp_op'], reply['arp_sha'], reply['arp_spa'],
            reply['eth_dst'], reply['arp_tpa']) == (
                2, A, IP_A, C, '0.0.0.0')
    # From the owner's own NVE or another one alike.
    reply = _answered_at_ingress(blue.send(2, 'p1', arp_probe(B, IP_A)),
                                 (2, 'p1'))
    assert reply['arp_sha'] == A


def test_probe_for_a_free_address_is_flooded(blue):
    res = blue.send(1, 'p1', arp_probe(A, '192.168.1.200'))
    assert res.points() == A_PEERS, res


def test_a_newcomers_probe_for_an_address_in_use_is_answered_once_known(blue):
    res = blue.send(1, 'p3', arp_probe(NEW, IP_A))
    assert [(d, t) for d, t, _ in res.packet_ins] == [(1, P.SOURCE)]
    blue.learn(1, 'p3', NEW)                  # no address: it probes first
    blue.sync()
    reply = _answered_at_ingress(blue.send(1, 'p3', arp_probe(NEW, IP_A)),
                                 (1, 'p3'))
    assert reply['arp_sha'] == A


# --- IPv6 ----------------------------------------------------------------------

def test_owners_own_dad_solicitation_is_not_answered(blue):
    sent = ipv6_ns(A, '::', V6_A)
    res = blue.send(1, 'p1', sent)
    assert res.packet_ins == [], res
    assert res.points() == A_PEERS, res
    assert all(pkt == sent for _, _, pkt in res.deliveries)


def test_another_macs_dad_solicitation_for_an_address_in_use_is_punted(blue):
    res = blue.send(1, 'p2', ipv6_ns(C, '::', V6_A))
    assert res.deliveries == [] and res.underlay == [], res
    # The authority answers it (test_authority_packet_in.py).
    assert [(d, t) for d, t, _ in res.packet_ins] == [
        (1, P.ARP_ND_RESPONDER)]


def test_unicast_ns_reaches_its_target_unanswered(blue):
    sent = ipv6_ns(A, V6_A, V6_B, eth_dst=B)
    res = blue.send(1, 'p1', sent)
    assert res.packet_ins == [], res
    assert res.points() == {(2, 'p1')}, res
    assert res.only_delivery()[2] == sent


def test_multicast_ns_for_a_known_target_is_still_answered_by_the_nve(blue):
    res = blue.send(1, 'p1', ipv6_ns(A, V6_A, V6_B))
    assert res.deliveries == [] and res.underlay == [], res
    assert [(d, t) for d, t, _ in res.packet_ins] == [
        (1, P.ARP_ND_RESPONDER)]


def test_unsolicited_na_reaches_every_member(blue):
    sent = ipv6_unsolicited_na(A, V6_A)
    res = blue.send(1, 'p1', sent)
    assert res.points() == A_PEERS, res
    assert res.packet_ins == []
    assert all(pkt == sent for _, _, pkt in res.deliveries)


# --- QEMU's RARP announcement --------------------------------------------------

def test_rarp_announcement_floods_and_a_moved_one_is_punted(blue):
    res = blue.send(1, 'p1', rarp(A))
    assert res.points() == A_PEERS and res.packet_ins == [], res
    # From the port a migrated VM now uses: the authority sees the move.
    res = blue.send(2, 'p2', rarp(A))
    assert res.deliveries == [], res
    assert [(d, t) for d, t, _ in res.packet_ins] == [(2, P.SOURCE)]


# --- the gateway of an L3 VN is the NVE itself ---------------------------------

@pytest.fixture
def red():
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(RED, 'red', service='l3', gateway_mac=GW,
                     gateway_ips=['192.168.10.1/24', 'fd10::1/64'])
    for dpid in (1, 2):
        lab.db.bind_port(dpid, 'p1', vnid=RED)
    lab.learn(1, 'p1', A, '192.168.10.5')
    lab.learn(1, 'p1', A, 'fd10::5')
    lab.learn(2, 'p1', B, '192.168.10.6')
    lab.sync()
    yield lab
    lab.check_consistent()


def test_unicast_arp_for_the_gateway_is_answered_by_the_nve(red):
    """A guest's NUD probe of its router: only the NVE can answer it."""
    reply = _answered_at_ingress(red.send(1, 'p1', arp_request(
        A, '192.168.10.5', '192.168.10.1', eth_dst=GW)))
    assert (reply['arp_op'], reply['arp_sha']) == (2, GW)


def test_unicast_ns_for_the_gateway_is_answered_by_the_authority(red):
    res = red.send(1, 'p1', ipv6_ns(A, 'fd10::5', 'fd10::1', eth_dst=GW))
    assert res.deliveries == [] and res.underlay == [], res
    assert [(d, t) for d, t, _ in res.packet_ins] == [
        (1, P.ARP_ND_RESPONDER)]


def test_unicast_arp_between_tenants_of_an_l3_vn_reaches_the_target(red):
    sent = arp_request(A, '192.168.10.5', '192.168.10.6', eth_dst=B)
    res = red.send(1, 'p1', sent)
    assert res.points() == {(2, 'p1')}, res
    assert res.only_delivery()[2] == sent


# --- VLAN bindings ------------------------------------------------------------

def test_gratuitous_arp_on_a_tagged_binding_reaches_the_vn_tagged_as_bound():
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(BLUE, 'blue')
    lab.db.bind_port(1, 'p1', vlans={10: BLUE})
    lab.db.bind_port(2, 'p1', vlans={20: BLUE})
    lab.learn(1, 'p1', A, IP_A, vlan=10)
    lab.learn(2, 'p1', B, IP_B, vlan=20)
    lab.sync()
    res = lab.send(1, 'p1', garp(A, IP_A, vlan=10))
    assert res.points() == {(2, 'p1')}, res
    assert res.only_delivery()[2]['vlan_vid'] == P.VLAN_PRESENT | 20
    # An own probe likewise; a unicast request reaches its target tagged.
    assert lab.send(1, 'p1', arp_probe(A, IP_A, vlan=10)).points() == {
        (2, 'p1')}
    res = lab.send(1, 'p1', arp_request(A, IP_A, IP_B, vlan=10, eth_dst=B))
    assert res.points() == {(2, 'p1')}
    assert res.only_delivery()[2]['arp_op'] == 1
    lab.check_consistent()
