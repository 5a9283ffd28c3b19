"""Packet-in decisions of the authority: learning, gleaning, bad frames."""

import pytest
from os_ken.lib.packet import ethernet, ipv4, packet

from nvo3_ryu_app.authority import authority
from nvo3_ryu_app.authority import packets
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.storage.store import MemoryStore
from nvo3_ryu_app.southbound.flowtable import FlowTables

GW_MAC = '02:00:00:00:fe:01'


def make(service='l2'):
    auth = authority.Authority(FlowTables(), store=MemoryStore())
    db = auth.db
    kw = {}
    if service == 'l3':
        kw = dict(gateway_mac=GW_MAC,
                  gateway_ips=['192.168.10.1/24', '192.168.20.1/24'])
    db.create_vn(5001, 'blue', service, **kw)
    for dpid in (1, 2):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        auth.switch_connected(dpid, {'vxlan0': 10, 'p1': 1, 'p2': 2},
                              '02:aa:00:00:00:0%d' % dpid, 0.0)
        db.bind_port(dpid, 'p1', vnid=5001)
    db.bind_port(2, 'p2', vlans={7: 5001})
    auth.commit(0.0)
    return auth


def ip_frame(src_mac, dst_mac, src_ip, dst_ip):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst_mac, src_mac, 0x0800))
    pkt.add_protocol(ipv4.ipv4(src=src_ip, dst=dst_ip, proto=1))
    pkt.serialize()
    return bytes(pkt.data)


def test_first_frame_is_learned_with_its_address_and_reinjected():
    auth = make()
    data = ip_frame('02:00:00:00:00:01', '02:00:00:00:00:02', '192.168.1.1',
                    '192.168.1.2')
    outs = auth.packet_in(1, P.SOURCE, 1, 'p1', {}, data, 1.0)
    att = auth.db.attachments[(5001, '02:00:00:00:00:01')]
    assert (att.nve, att.port, att.addresses()) == (1, 'p1', {'192.168.1.1': None})
    assert [(o.dpid, o.in_port, o.actions) for o in outs] == [
        (1, 1, [('output', 'TABLE')])]
    # A second address of the same vNIC is learned too.
    auth.packet_in(1, P.SOURCE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', '02:00:00:00:00:02', '192.168.1.9',
        '192.168.1.2'), 2.0)
    assert set(att.ips) == {'192.168.1.1', '192.168.1.9'}


def test_an_address_of_another_tenant_system_is_refused_and_dropped():
    auth = make()
    auth.packet_in(1, P.SOURCE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', '02:00:00:00:00:02', '192.168.1.1',
        '192.168.1.2'), 1.0)
    outs = auth.packet_in(2, P.SOURCE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:66', '02:00:00:00:00:01', '192.168.1.1',
        '192.168.1.2'), 2.0)
    assert outs == []
    assert (5001, '02:00:00:00:00:66') not in auth.db.attachments
    assert auth.counters['dropped_refused'] == 1
    assert auth.event_log.since(0, kinds={'conflict'})


@pytest.mark.parametrize('data,reason', [
    (b'', 'malformed'),
    (b'\x01\x02\x03', 'malformed'),
    (b'\xff' * 14, 'malformed'),                       # multicast source
    (bytes.fromhex('ffffffffffff020000000001' '0806' '0001'), 'malformed'),
    (bytes.fromhex('ffffffffffff020000000001' '0800' '45'), 'malformed'),
])
def test_malformed_frames_are_dropped_and_counted(data, reason):
    auth = make()
    assert auth.packet_in(1, P.SOURCE, 1, 'p1', {}, data, 1.0) == []
    assert auth.counters['dropped_' + reason] == 1
    assert not auth.db.attachments


def test_frames_of_unbound_ports_and_unknown_vnids_are_dropped_and_counted():
    auth = make()
    frame = ip_frame('02:00:00:00:00:01', '02:00:00:00:00:02', '192.168.1.1',
                     '192.168.1.2')
    assert auth.packet_in(1, P.CLASSIFY, 2, 'p2', {}, frame, 1.0) == []
    assert auth.packet_in(1, P.CLASSIFY, 10, 'vxlan0', {}, frame, 1.0) == []
    assert auth.packet_in(1, P.CLASSIFY, 99, None, {}, frame, 1.0) == []
    assert (auth.counters['dropped_unbound_port'],
            auth.counters['dropped_unknown_vnid'],
            auth.counters['dropped_unknown_port']) == (1, 1, 1)
    assert not auth.db.attachments


def test_gateway_asks_for_an_unknown_destination_on_every_member():
    auth = make('l3')
    auth.packet_in(1, P.SOURCE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', GW_MAC, '192.168.10.5', '192.168.20.7'), 1.0)
    outs = auth.packet_in(1, P.L3_ROUTE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', GW_MAC, '192.168.10.5', '192.168.20.7'), 1.1)
    where = sorted((o.dpid, o.actions[0][1]) for o in outs)
    assert where == [(1, 1), (2, 1), (2, 2)]
    for out in outs:
        frame = packets.parse_frame(out.data)
        assert (frame.src_mac, frame.dst_mac, frame.ip) == (
            GW_MAC, 'ff:ff:ff:ff:ff:ff', '192.168.20.1')
    tagged = [o for o in outs if o.dpid == 2 and o.actions[0][1] == 2][0]
    assert packets.parse_frame(tagged.data).vlan == 7
    # At most once a second per address; never for a known one.
    assert auth.packet_in(1, P.L3_ROUTE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', GW_MAC, '192.168.10.5', '192.168.20.7'),
        1.5) == []
    assert auth.packet_in(1, P.L3_ROUTE, 1, 'p1', {}, ip_frame(
        '02:00:00:00:00:01', GW_MAC, '192.168.10.5', '10.9.9.9'),
        3.0) == []
    assert auth.counters['dropped_no_route'] == 1


def test_neighbour_solicitation_for_a_known_address_is_answered():
    from os_ken.lib.packet import icmpv6, ipv6
    auth = make()
    auth.db.learn(2, 'p1', None, '02:00:00:00:00:02', '2001:db8::2', 1.0)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet('33:33:ff:00:00:02',
                                       '02:00:00:00:00:01', 0x86DD))
    pkt.add_protocol(ipv6.ipv6(src='2001:db8::1', dst='ff02::1:ff00:2',
                               nxt=58, hop_limit=255))
    pkt.add_protocol(icmpv6.icmpv6(
        type_=icmpv6.ND_NEIGHBOR_SOLICIT,
        data=icmpv6.nd_neighbor(dst='2001:db8::2')))
    pkt.serialize()
    outs = auth.packet_in(1, P.ARP_ND_RESPONDER, 1, 'p1',
                          {'metadata': 5001}, bytes(pkt.data), 2.0)
    assert len(outs) == 1 and outs[0].actions == [('output', 1)]
    answer = packet.Packet(outs[0].data)
    icmp = answer.get_protocol(icmpv6.icmpv6)
    assert icmp.type_ == icmpv6.ND_NEIGHBOR_ADVERT
    assert icmp.data.dst == '2001:db8::2'
    assert icmp.data.option.hw_src == '02:00:00:00:00:02'
    assert answer.get_protocol(ipv6.ipv6).dst == '2001:db8::1'


def test_arp_probe_carries_no_sender_address():
    """RFC 5227 probe: a live host answers it without learning from it."""
    frame = packets.parse_frame(packets.build_arp_probe(
        '02:4e:56:00:00:01', '02:00:00:00:00:01', '192.168.1.1'))
    assert (frame.ip, frame.how, frame.dst_mac) == (
        None, 'arp', '02:00:00:00:00:01')


def test_a_mac_flood_on_one_port_stops_at_the_port_limit():
    auth = make()
    auth.settings = auth.settings.replace(max_macs_per_port=5)
    for i in range(12):
        auth.packet_in(1, P.SOURCE, 1, 'p1', {}, ip_frame(
            '02:00:00:00:10:%02x' % i, 'ff:ff:ff:ff:ff:ff',
            '192.168.1.%d' % (100 + i), '192.168.1.255'), 1.0 + i)
    assert len(auth.db.attachments_at(1)) == 5
    assert auth.counters['dropped_port_mac_limit'] == 7
    # Another port of the same NVE still learns.
    auth.db.bind_port(1, 'p2', vnid=5001)
    auth.commit(20.0)
    auth.packet_in(1, P.SOURCE, 2, 'p2', {}, ip_frame(
        '02:00:00:00:20:01', 'ff:ff:ff:ff:ff:ff', '192.168.1.200',
        '192.168.1.255'), 21.0)
    assert (5001, '02:00:00:00:20:01') in auth.db.attachments
