"""The authority's decisions on what guests send about their own addresses,
and on registered L2 bindings without an address.

* an IPv6 DAD solicitation (source ``::``) of the owner is not answered;
  another MAC's, for an address in use, is (so the newcomer sees the
  conflict);
* QEMU's RARP announcement of a migrated VM moves it;
* gratuitous ARPs teach new addresses and their flow counts refresh;
* a vNIC registered in an L2 VN with a VLAN and a BID and no IP carries
  traffic: its addresses are learned into its entry, with the learned
  anti-spoofing (authority/bids.py).
"""

from os_ken.lib.packet import arp, ethernet, icmpv6, ipv6, packet

from nvo3_ryu_app.authority import authority
from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import flows, packets
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.owners import TsOwner
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.storage.store import MemoryStore

VN, L2 = 5001, 4001
OWNER, OTHER = '02:00:00:00:00:01', '02:00:00:00:00:02'
NVE1 = '0000000000000001'


def make():
    auth = authority.Authority(FlowTables(), store=MemoryStore())
    db = auth.db
    db.create_vn(VN, 'blue')
    db.create_vn(L2, 'green')
    for dpid in (1, 2):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        auth.switch_connected(dpid, {'vxlan0': 10, 'p1': 1, 'p2': 2,
                                     'p3': 3}, '02:aa:00:00:00:0%d' % dpid,
                              0.0)
        db.bind_port(dpid, 'p1', vnid=VN)
        db.bind_port(dpid, 'p2', vnid=VN)
    db.bind_port(1, 'p3', vlans={10: L2})
    auth.commit(0.0)
    return auth


def ns_frame(src_mac, src_ip, target):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('33:33:ff:00:00:0a', src_mac, 0x86DD))
    pkt.add_protocol(ipv6.ipv6(src=src_ip, dst='ff02::1:ff00:a', nxt=58,
                               hop_limit=255))
    pkt.add_protocol(icmpv6.icmpv6(type_=icmpv6.ND_NEIGHBOR_SOLICIT,
                                   data=icmpv6.nd_neighbor(dst=target)))
    pkt.serialize()
    return bytes(pkt.data)


def arp_frame(src_mac, spa, tpa, op=1, dst='ff:ff:ff:ff:ff:ff', vlan=None):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst, src_mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=op, src_mac=src_mac, src_ip=spa,
                             dst_mac='00:00:00:00:00:00', dst_ip=tpa))
    pkt.serialize()
    data = bytes(pkt.data)
    return packets.build_vlan_tagged(data, vlan) if vlan else data


def qemu_rarp(mac):
    """The frame QEMU sends for a migrated VM (net/announce.c)."""
    m = bytes.fromhex(mac.replace(':', ''))
    return (b'\xff' * 6 + m + b'\x80\x35' + bytes.fromhex('000108000604')
            + b'\x00\x03' + m + b'\x00' * 4 + m + b'\x00' * 4).ljust(
                60, b'\x00')


# --- IPv6 DAD -----------------------------------------------------------------

def test_the_owners_dad_solicitation_is_not_answered():
    auth = make()
    auth.db.learn(1, 'p1', None, OWNER, 'fd00::a', 1.0)
    outs = auth.packet_in(1, P.ARP_ND_RESPONDER, 1, 'p1', {'metadata': VN},
                          ns_frame(OWNER, '::', 'fd00::a'), 2.0)
    assert outs == []
    assert auth.counters['nd_own_not_answered'] == 1
    assert auth.counters['nd_answered'] == 0


def test_another_macs_dad_solicitation_for_an_address_in_use_is_answered():
    auth = make()
    auth.db.learn(1, 'p1', None, OWNER, 'fd00::a', 1.0)
    outs = auth.packet_in(2, P.ARP_ND_RESPONDER, 2, 'p2', {'metadata': VN},
                          ns_frame(OTHER, '::', 'fd00::a'), 2.0)
    assert [(o.dpid, o.actions) for o in outs] == [(2, [('output', 2)])]
    answer = packet.Packet(outs[0].data)
    icmp = answer.get_protocol(icmpv6.icmpv6)
    assert icmp.type_ == icmpv6.ND_NEIGHBOR_ADVERT
    assert (icmp.data.dst, icmp.data.option.hw_src) == ('fd00::a', OWNER)
    # A DAD answer goes to all nodes (RFC 4861 7.2.4), to the newcomer's MAC.
    assert answer.get_protocol(ipv6.ipv6).dst == 'ff02::1'
    assert answer.get_protocol(ethernet.ethernet).dst == OTHER


# --- QEMU's RARP announcement ---------------------------------------------------

def test_a_rarp_announcement_at_a_new_port_moves_the_vm():
    auth = make()
    auth.db.learn(1, 'p1', None, OWNER, '192.168.1.1', 1.0)
    auth.port_changed(1, 'p1', None, 2.0)      # the source tap went away
    data = qemu_rarp(OWNER)
    assert packets.parse_frame(data).how == 'rarp'
    outs = auth.packet_in(2, P.SOURCE, 2, 'p2', {}, data, 3.0)
    att = auth.db.attachments[(VN, OWNER)]
    assert (att.nve, att.port, att.addresses()) == (2, 'p2', {'192.168.1.1': None})
    assert [(o.dpid, o.in_port, o.actions) for o in outs] == [
        (2, 2, [('output', 'TABLE')])]
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert (move['mac'], move['how']) == (OWNER, 'rarp')


def test_a_rarp_announcement_while_the_old_port_answers_is_probed_first():
    auth = make()
    auth.db.learn(1, 'p1', None, OWNER, '192.168.1.1', 1.0)
    outs = auth.packet_in(2, P.SOURCE, 2, 'p2', {}, qemu_rarp(OWNER), 2.0)
    probe = packets.parse_frame(outs[0].data)
    assert (outs[0].dpid, probe.dst_mac) == (1, OWNER)
    assert auth.tick(2.1)                      # no answer: a move
    assert auth.db.attachments[(VN, OWNER)].nve == 2


# --- gratuitous ARP teaches and refreshes ----------------------------------------

def test_a_gratuitous_arp_teaches_its_address_and_is_reinjected():
    auth = make()
    outs = auth.packet_in(1, P.SOURCE, 1, 'p1', {},
                          arp_frame(OWNER, '192.168.1.5', '192.168.1.5'), 1.0)
    assert auth.db.attachments[(VN, OWNER)].addresses() == {'192.168.1.5': None}
    assert [o.actions for o in outs] == [[('output', 'TABLE')]]


def test_announcement_flow_counts_refresh_the_tenant_system():
    auth = make()
    auth.db.learn(1, 'p1', None, OWNER, '192.168.1.5', 1.0)
    auth.commit(1.0)
    att = auth.db.attachments[(VN, OWNER)]
    announce = [f for f in flows.compute(auth.db, auth.settings, 1,
                                         TsOwner(VN, OWNER))
                if isinstance(f, P.Flow) and f.priority == P.PRIO_ANNOUNCE]
    assert len(announce) == 2          # its GARP and its own probe
    auth.observe_sources(1, [(announce[0], 0)], 5.0)
    auth.observe_sources(1, [(announce[0], 3)], 9.0)
    assert att.last_seen == 9.0


# --- a registered L2 binding without an IP ----------------------------------------

def _register_l2(auth, now=1.0):
    return auth.execute(C.Associate(NVE1, 'p3', OWNER, L2, vlan=10, bid=7),
                        now)


def test_a_registered_l2_binding_without_ip_learns_the_addresses_it_uses():
    auth = make()
    done = _register_l2(auth)
    assert (done['action'], done['ip']) == ('registered', None)
    # Its first ARP (a reply to a peer): tagged, as on its trunk.
    outs = auth.packet_in(1, P.SOURCE, 3, 'p3', {'reg6': 10}, arp_frame(
        OWNER, '172.16.1.10', '172.16.1.20', op=2, dst=OTHER), 2.0)
    assert [(o.dpid, o.in_port, o.actions) for o in outs] == [
        (1, 3, [('output', 'TABLE')])]
    assert packets.parse_frame(outs[0].data).vlan == 10
    assert auth.counters['dropped_unknown_source_ip'] == 0
    entries = auth.views.vn_mappings(L2)
    assert [(e['mac'], e['ip'], e['bid'], e['vlan'], e['source'])
            for e in entries] == [
                (OWNER, '172.16.1.10', 7, 10, 'registered')]
    # Its other addresses too (an IPv6 one).
    auth.packet_in(1, P.SOURCE, 3, 'p3', {'reg6': 10},
                   ns_frame(OWNER, 'fd00::10', 'fd00::20'), 3.0)
    assert set(auth.db.attachments[(L2, OWNER)].ips) == {'172.16.1.10',
                                                         'fd00::10'}
    # Still registered: a frame elsewhere does not move it.
    assert auth.db.attachments[(L2, OWNER)].source == 'registered'


def test_a_registered_l2_binding_cannot_take_another_tenants_address():
    auth = make()
    auth.db.bind_port(2, 'p3', vlans={10: L2})
    auth.db.learn(2, 'p3', 10, OTHER, '172.16.1.20', 1.0)
    _register_l2(auth, 2.0)
    outs = auth.packet_in(1, P.SOURCE, 3, 'p3', {'reg6': 10}, arp_frame(
        OWNER, '172.16.1.20', '172.16.1.20'), 3.0)
    assert outs == []
    assert auth.counters['dropped_refused'] == 1
    conflict = auth.event_log.since(0, kinds={'conflict'})[-1]
    assert (conflict['mac'], conflict['owner'], conflict['ip']) == (
        OWNER, OTHER, '172.16.1.20')
    assert auth.db.attachments[(L2, OWNER)].addresses() == {}
    assert auth.db.lookup_ip(L2, '172.16.1.20').mac == OTHER


def test_a_registered_l3_binding_still_owns_only_its_registered_address():
    auth = make()
    auth.db.create_vn(3001, 'red', 'l3', gateway_mac='02:fe:00:00:00:01',
                      gateway_ips=['192.168.3.1/24'])
    auth.db.bind_port(2, 'p3', vnid=3001)
    auth.execute(C.Associate('0000000000000002', 'p3', OTHER, 3001,
                             ip='192.168.3.10'), 1.0)
    outs = auth.packet_in(2, P.SOURCE, 3, 'p3', {}, arp_frame(
        OTHER, '192.168.3.99', '192.168.3.1'), 2.0)
    assert outs == []
    assert auth.counters['dropped_unknown_source_ip'] == 1
    assert auth.db.attachments[(3001, OTHER)].addresses() == {'192.168.3.10': None}
