"""The fake OpenFlow switch itself: matching, actions, flow-mod semantics.

Forwarding tests are only as good as the fake they run on, so its OpenFlow
semantics are pinned down here with hand-written flows.
"""

import pytest

from fakeof import (FakeSwitch, Loop, SwitchError, FakeNetwork, arp_request,
                    broadcast, ipv4, Lab)
from nvo3_ryu_app.authority import pipeline as P

C = P.COOKIE_APP
A, B = '02:00:00:00:00:0a', '02:00:00:00:00:0b'


def fl(table, prio, match, actions):
    return P.Flow(table, prio, tuple(sorted(match.items())),
                  P.canonical_order(actions), C)


def switch(*flows, meters=()):
    sw = FakeSwitch(1)
    sw.apply([('add', m) for m in meters] + [('add', f) for f in flows])
    return sw


def test_highest_priority_match_wins_and_missing_table_drops():
    sw = switch(fl(0, 10, {}, [('output', 1)]),
                fl(0, 20, {'eth_dst': B}, [('output', 2)]),
                fl(0, 30, {'eth_dst': A}, [('goto', 1)]))
    assert [o.port for o in sw.process(ipv4(A, B, '1.1.1.1', '1.1.1.2'), 9)] \
        == [2]
    assert [o.port for o in sw.process(ipv4(B, A, '1.1.1.1', '1.1.1.2'), 9)] \
        == []
    assert sw.trace[-1] == (1, 'no-match')


def test_masked_mac_and_vlan_none_match():
    sw = switch(fl(0, 20, {'eth_dst': P.MCAST_BIT, 'vlan_vid': 0},
                   [('output', 1)]),
                fl(0, 10, {'vlan_vid': 0x1000 | 10}, [('output', 2)]))
    assert [o.port for o in sw.process(broadcast(A), 9)] == [1]
    assert [o.port for o in sw.process(broadcast(A, vlan=10), 9)] == [2]
    assert sw.process(broadcast(A, vlan=11), 9) == []


def test_absent_fields_never_match():
    sw = switch(fl(0, 10, {'eth_type': 0x0806, 'arp_tpa': '10.0.0.1'},
                   [('output', 1)]))
    assert sw.process(ipv4(A, B, '10.0.0.2', '10.0.0.1'), 9) == []
    assert len(sw.process(arp_request(A, '10.0.0.2', '10.0.0.1'), 9)) == 1


def test_switch_refuses_what_ovs_refuses():
    with pytest.raises(SwitchError, match='prerequisite'):
        switch(fl(2, 10, {'arp_tpa': '10.0.0.1'}, []))
    with pytest.raises(SwitchError, match='goto'):
        switch(fl(3, 10, {}, [('goto', 1)]))
    with pytest.raises(SwitchError, match='meter'):
        switch(fl(0, 10, {}, [('meter', 7), ('output', 'CONTROLLER')]))
    with pytest.raises(SwitchError, match='vlan'):
        switch(fl(0, 10, {}, [('set', 'vlan_vid', 0x1000 | 3)]))
    with pytest.raises(SwitchError, match='pop_vlan'):
        switch(fl(0, 10, {'vlan_vid': 0}, [('pop_vlan',)]))
    with pytest.raises(SwitchError, match='dec_ttl'):
        switch(fl(0, 10, {}, [('dec_ttl',)]))


def test_same_priority_overlap_is_undefined():
    sw = switch(fl(0, 10, {'eth_src': A}, [('output', 1)]),
                fl(0, 10, {'eth_dst': B}, [('output', 2)]))
    with pytest.raises(SwitchError, match='undefined'):
        sw.process(ipv4(A, B, '1.1.1.1', '1.1.1.2'), 9)


def test_actions_in_order_and_in_port_rule():
    sw = switch(fl(0, 10, {'eth_type': 0x0800}, [
        ('output', 9), ('output', 1), ('set', 'eth_dst', A),
        ('push_vlan',), ('set', 'vlan_vid', 0x1000 | 5), ('output', 2),
        ('pop_vlan',), ('dec_ttl',), ('output', 'IN_PORT'),
        ('metadata', 7), ('goto', 1)]),
        fl(1, 10, {'metadata': 7}, [('output', 'CONTROLLER')]))
    out = sw.process(ipv4(A, B, '1.1.1.1', '1.1.1.2', ttl=5), 9)
    assert [o.port for o in out] == [1, 2, 9, 'CONTROLLER']
    assert out[0].pkt['eth_dst'] == B and 'vlan_vid' not in out[0].pkt
    assert out[1].pkt['vlan_vid'] == 0x1000 | 5
    assert out[2].pkt['ip_ttl'] == 4 and 'vlan_vid' not in out[2].pkt
    assert out[3].table == 1


def test_ttl_expiry_drops():
    sw = switch(fl(0, 10, {'eth_type': 0x0800},
                   [('dec_ttl',), ('output', 1)]))
    assert sw.process(ipv4(A, B, '1.1.1.1', '1.1.1.2', ttl=1), 9) == []
    assert len(sw.process(ipv4(A, B, '1.1.1.1', '1.1.1.2', ttl=2), 9)) == 1


def test_move_copies_fields():
    sw = switch(fl(0, 10, {'eth_type': 0x0806}, [
        ('move', 'eth_src', 'eth_dst', 48), ('move', 'arp_spa', 'arp_tpa', 32),
        ('output', 'IN_PORT')]))
    (out,) = sw.process(arp_request(A, '10.0.0.2', '10.0.0.1'), 3)
    assert out.port == 3
    assert out.pkt['eth_dst'] == A and out.pkt['arp_tpa'] == '10.0.0.2'


def test_flow_mods_are_keyed_and_strict():
    f1 = fl(0, 10, {'in_port': 1}, [('output', 2)])
    f1b = fl(0, 10, {'in_port': 1}, [('output', 3)])
    f2 = fl(0, 20, {'in_port': 1}, [('output', 4)])
    sw = switch(f1, f2)
    sw.apply([('modify', f1b)])
    assert sw.flows() == {f1b, f2}
    sw.apply([('delete', f2)])
    assert sw.flows() == {f1b}


def test_meter_delete_removes_its_flows():
    meter = P.Meter(5, 10, 10)
    punt = fl(0, 10, {'in_port': 5}, [('meter', 5), ('output', 'CONTROLLER')])
    other = fl(0, 0, {}, [])
    sw = switch(punt, other, meters=[meter])
    sw.apply([('delete', meter)])
    assert sw.flows() == {other} and not sw.meters


def test_idempotence_check_catches_duplicate_keys():
    f1 = fl(0, 10, {'in_port': 1}, [('output', 2)])
    sw = FakeSwitch(1)
    with pytest.raises(SwitchError, match='twice'):
        sw.apply([('add', f1), ('delete', f1)])


def test_underlay_loop_is_bounded():
    lab = Lab(nves=(1, 2))
    net = FakeNetwork(lab.db, lab.cfg)
    # Each NVE bounces frames back out of the tunnel port they came in by.
    for dpid, peer in ((1, '10.0.0.2'), (2, '10.0.0.1')):
        net.switch(dpid).apply([('add', fl(0, 0, {}, [
            ('set', 'tunnel_id', 1), ('set', 'tun_ipv4_dst', peer),
            ('output', 'IN_PORT')]))])
    with pytest.raises(Loop):
        net.send(1, 'vxlan0', broadcast(A))


def test_meter_add_twice_and_modify_of_missing_are_refused():
    meter = P.Meter(5, 10, 10)
    sw = switch(meters=[meter])
    with pytest.raises(SwitchError, match='exists'):
        sw.apply([('add', meter)])
    with pytest.raises(SwitchError, match='unknown'):
        sw.apply([('modify', P.Meter(6, 10, 10))])
    sw.apply([('modify', P.Meter(5, 20, 10))])
    assert sw.meters[5].rate_pps == 20
