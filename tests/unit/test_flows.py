"""For given database states, the exact flows each NVE must hold.

Flows are rendered as short text (table name, priority tier, match,
actions) so a failure reads like a flow dump.
"""

from nvo3_ryu_app.authority import model
from nvo3_ryu_app.authority import planner
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables

M1, M2, M3 = '02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03'


def render(item):
    if isinstance(item, P.Meter):
        return 'meter %d %dpps' % (item.meter_id, item.rate_pps)
    table = P.TABLES[item.table]
    tier = P.tier_name(item.table, item.priority)
    match = ','.join('%s=%s' % (k, v if not isinstance(v, tuple)
                                else '%s/%s' % v) for k, v in item.match)
    acts = ','.join(':'.join(str(x) for x in a) for a in item.actions)
    return '%s %s %s -> %s' % (table.name, tier, match, acts or 'drop')


def two_nves(service='l2'):
    db = model.MappingDB()
    kw = {}
    if service == 'l3':
        kw = dict(gateway_mac='02:00:00:00:fe:01',
                  gateway_ips=['192.168.10.1/24', '192.168.20.1/24'])
    db.create_vn(5001, 'blue', service, **kw)
    for dpid in (1, 2, 3):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        db.nve_connected(dpid, {'vxlan0': 10, 'gre0': 11, 'p1': 1, 'p2': 2},
                         '02:aa:00:00:00:0%d' % dpid, 0.0)
        if dpid != 3:       # NVE 3 has no port in the VN
            db.bind_port(dpid, 'p1', vnid=5001)
    plan = planner.Planner(db, Settings(), FlowTables())
    return db, plan


def rendered(plan, dpid):
    plan.plan()
    return sorted(render(i) for i in plan.tables[dpid].desired.values())


# Unicast ARP requests and neighbour solicitations go to their target.
UNICAST = [
    'arp_nd_responder UNICAST arp_op=1,'
    'eth_dst=00:00:00:00:00:00/01:00:00:00:00:00,eth_type=2054 -> goto:3',
    'arp_nd_responder UNICAST eth_dst=00:00:00:00:00:00/01:00:00:00:00:00,'
    'eth_type=34525,icmpv6_type=135,ip_proto=58 -> goto:3',
]

UNBOUND = UNICAST + [
    'arp_nd_responder MISS  -> goto:3',
    'classify MISS  -> meter:65280,output:CONTROLLER',
    'l2_forward MISS  -> drop',
    'l2_forward PROBE eth_dst=02:4e:56:00:00:01 -> '
    'meter:65280,output:CONTROLLER',
    'l3_route MISS  -> goto:4',
    'local_delivery MISS  -> drop',
    'meter 65280 50pps',
    'source MISS  -> drop',
    'to_ingress MISS  -> output:IN_PORT',
]

BASE = UNICAST + [
    'arp_nd_responder MISS  -> goto:3',
    'classify MISS  -> meter:65280,output:CONTROLLER',
    'classify PORT_PUNT in_port=1 -> meter:1,output:CONTROLLER',
    'classify PORT_PUNT_ARP arp_tpa=0.0.0.0,eth_type=2054,in_port=1 -> '
    'meter:1,output:CONTROLLER',
    'l2_forward MISS  -> drop',
    'l2_forward PROBE eth_dst=02:4e:56:00:00:01 -> '
    'meter:65280,output:CONTROLLER',
    'l3_route MISS  -> goto:4',
    'local_delivery MISS  -> drop',
    'meter 1 100pps',
    'meter 65280 50pps',
    'source MISS  -> drop',
    'source PORT_PUNT in_port=1 -> meter:1,output:CONTROLLER',
    'source PORT_PUNT_ARP arp_tpa=0.0.0.0,eth_type=2054,in_port=1 -> '
    'meter:1,output:CONTROLLER',
    'to_ingress MISS  -> output:IN_PORT',
]


def test_nve_without_tenant_systems_holds_only_its_base_flows():
    _, plan = two_nves()
    assert rendered(plan, 3) == sorted(UNBOUND)


def test_a_bound_port_puts_its_nve_in_the_vn_context():
    """A tenant system on a bound port may be silent: its NVE must still
    receive the VN's broadcasts, or nobody could ever reach it."""
    db, plan = two_nves()
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    assert db.members(5001) == {1, 2}
    got = rendered(plan, 1)
    assert ('l2_forward FLOOD eth_dst=01:00:00:00:00:00/01:00:00:00:00:00,'
            'metadata=5001 -> output:1,set:tunnel_id:5001,'
            'set:tun_ipv4_dst:10.0.0.2,output:10') in got
    assert ('classify ACCESS in_port=1,vlan_vid=0 -> metadata:5001,goto:1'
            in rendered(plan, 2))


def test_two_members_exact_flows():
    db, plan = two_nves()
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    db.learn(2, 'p1', None, M2, '192.168.1.2', 1.0)
    tun2 = 'set:tunnel_id:5001,set:tun_ipv4_dst:10.0.0.2,output:10'
    arp = ('move:eth_src:eth_dst:48,set:eth_src:{mac},set:arp_op:2,'
           'move:arp_sha:arp_tha:48,move:arp_spa:arp_tpa:32,'
           'set:arp_sha:{mac},set:arp_spa:{ip},goto:6')
    expected = sorted(BASE + [
        'classify ACCESS in_port=1,vlan_vid=0 -> metadata:5001,goto:1',
        'classify TUNNEL in_port=10,tunnel_id=5001 -> metadata:5001,goto:5',
    ] + [line % M1 for line in (
        'source HOST_ANY eth_src=%s,in_port=1,metadata=5001 -> goto:2',
        'source ADDR_PUNT eth_src=%s,eth_type=2054,in_port=1,metadata=5001'
        ' -> meter:1,output:CONTROLLER',
        'source ADDR_PUNT eth_src=%s,eth_type=2048,in_port=1,metadata=5001'
        ' -> meter:1,output:CONTROLLER',
        'source ADDR_PUNT eth_src=%s,eth_type=34525,in_port=1,metadata=5001'
        ' -> meter:1,output:CONTROLLER',
        'source HOST arp_spa=192.168.1.1,eth_src=%s,eth_type=2054,in_port=1,'
        'metadata=5001 -> goto:2',
        'source HOST arp_spa=0.0.0.0,eth_src=%s,eth_type=2054,in_port=1,'
        'metadata=5001 -> goto:2',
        'source HOST eth_src=%s,eth_type=2048,in_port=1,'
        'ipv4_src=192.168.1.1,metadata=5001 -> goto:2',
        'source HOST eth_src=%s,eth_type=2048,in_port=1,'
        'ipv4_src=0.0.0.0,metadata=5001 -> goto:2',
        'source HOST eth_src=%s,eth_type=34525,in_port=1,ipv6_src=::,'
        'metadata=5001 -> goto:2',
        # Its own announcements and address probes: for the VN to hear.
        'source ANNOUNCE arp_spa=192.168.1.1,arp_tpa=192.168.1.1,'
        'eth_src=%s,eth_type=2054,in_port=1,metadata=5001 -> goto:3',
        'source ANNOUNCE arp_spa=0.0.0.0,arp_tpa=192.168.1.1,'
        'eth_src=%s,eth_type=2054,in_port=1,metadata=5001 -> goto:3')] + [
        'arp_nd_responder HOST arp_op=1,arp_tpa=192.168.1.1,eth_type=2054,'
        'metadata=5001 -> ' + arp.format(mac=M1, ip='192.168.1.1'),
        'arp_nd_responder HOST arp_op=1,arp_tpa=192.168.1.2,eth_type=2054,'
        'metadata=5001 -> ' + arp.format(mac=M2, ip='192.168.1.2'),
        'l2_forward HOST eth_dst=%s,metadata=5001 -> output:1' % M1,
        'l2_forward HOST eth_dst=%s,metadata=5001 -> %s' % (M2, tun2),
        'l2_forward FLOOD eth_dst=01:00:00:00:00:00/01:00:00:00:00:00,'
        'metadata=5001 -> output:1,' + tun2,
        'l2_forward UNKNOWN_UCAST metadata=5001 -> output:1,' + tun2,
        'local_delivery HOST eth_dst=%s,metadata=5001 -> output:1' % M1,
        'local_delivery FLOOD eth_dst=01:00:00:00:00:00/01:00:00:00:00:00,'
        'metadata=5001 -> output:1',
        'local_delivery UNKNOWN_UCAST metadata=5001 -> output:1',
    ])
    assert rendered(plan, 1) == expected
    # The third NVE is no member: it holds nothing of VN 5001.
    assert rendered(plan, 3) == sorted(UNBOUND)


def test_vlan_binding_tags_and_untags():
    db, plan = two_nves()
    db.create_vn(5002, 'red')
    db.bind_port(1, 'p2', vlans={10: 5001, 20: 5002})
    db.learn(1, 'p2', 10, M3, None, 1.0)
    got = rendered(plan, 1)
    assert ('classify ACCESS_VLAN in_port=2,vlan_vid=4106 -> pop_vlan,'
            'set:reg6:10,metadata:5001,goto:1') in got
    assert ('to_ingress HOST in_port=2,reg6=10 -> push_vlan,'
            'set:vlan_vid:4106,output:IN_PORT') in got
    assert ('local_delivery HOST eth_dst=%s,metadata=5001 -> push_vlan,'
            'set:vlan_vid:4106,output:2,pop_vlan' % M3) in got
    # VLAN 20 of the trunk puts NVE 1 in VN 5002's context too.
    assert ('classify ACCESS_VLAN in_port=2,vlan_vid=4116 -> pop_vlan,'
            'set:reg6:20,metadata:5002,goto:1') in got
    assert db.members(5002) == {1}


def test_l3_vn_routes_and_answers_for_gateway():
    db, plan = two_nves('l3')
    db.learn(1, 'p1', None, M1, '192.168.10.5', 1.0)
    db.learn(2, 'p1', None, M2, '192.168.20.5', 1.0)
    got = rendered(plan, 1)
    assert ('l3_route HOST eth_dst=02:00:00:00:fe:01,eth_type=2048,'
            'ipv4_dst=192.168.20.5,metadata=5001 -> '
            'set:eth_src:02:00:00:00:fe:01,set:eth_dst:%s,dec_ttl,goto:4'
            % M2) in got
    assert any(line.startswith('arp_nd_responder GATEWAY arp_op=1,'
                               'arp_tpa=192.168.10.1,') for line in got)
    assert ('l3_route GLEAN eth_dst=02:00:00:00:fe:01,metadata=5001'
            ' -> meter:65280,output:CONTROLLER') in got


def test_ipv6_neighbour_solicitation_is_punted_for_known_targets():
    db, plan = two_nves()
    db.learn(2, 'p1', None, M2, '2001:db8::2', 1.0)
    got = rendered(plan, 2)
    assert ('arp_nd_responder ND_PUNT eth_type=34525,icmpv6_type=135,'
            'ip_proto=58,ipv6_nd_target=2001:db8::2,metadata=5001 -> '
            'output:CONTROLLER') in got


def test_vn_delete_withdraws_every_flow():
    db, plan = two_nves()
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    db.learn(2, 'p1', None, M2, '192.168.1.2', 1.0)
    plan.plan()
    db.delete_vn(5001)
    for dpid in (1, 2, 3):
        got = rendered(plan, dpid)
        assert not [line for line in got if '5001' in line]
        assert plan.tables[dpid].desired == plan.expected(dpid)


def test_incremental_equals_recompute_after_moves():
    db, plan = two_nves()
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    db.learn(2, 'p1', None, M2, '192.168.1.2', 1.0)
    plan.plan()
    db.bind_port(3, 'p1', vnid=5001)
    db.learn(3, 'p1', None, M1, '192.168.1.1', 2.0)   # M1 moves to NVE 3
    db.unbind_port(1, 'p1')                           # its old port goes
    plan.plan()
    for dpid in (1, 2, 3):
        assert plan.tables[dpid].desired == plan.expected(dpid)
    assert db.members(5001) == {2, 3}
    # The old NVE redirects frames still tunnelled to it, for a moment.
    assert ('local_delivery REDIRECT eth_dst=%s,metadata=5001 -> '
            'set:tunnel_id:5001,set:tun_ipv4_dst:10.0.0.3,output:IN_PORT' % M1
            ) in rendered(plan, 1)
    db.end_redirect(db.attachments[(5001, M1)])
    plan.plan()
    for dpid in (1, 2, 3):
        assert plan.tables[dpid].desired == plan.expected(dpid)
    assert rendered(plan, 1) == sorted(UNBOUND)


def test_views_keep_their_rare_parts_in_one_field():
    """A view's fields that nearly always hold the same value are kept in
    one ``rare`` tuple of its shared ``ctx``, None when they do (as in
    every view of a shared layer); they read the same either way, and
    equal views compare equal."""
    from nvo3_ryu_app.authority import flows as F
    from nvo3_ryu_app.authority.owners import TsOwner
    key = TsOwner(1, M1)
    usual = F.make_here(key, ('10.0.0.1',), None, 3, None, 3,
                        F.here_rare((), False, True))
    assert usual.ctx[-1] is None
    assert (usual.blocked, usual.by_source_ip, usual.deliver) == (
        (), False, True)
    assert (usual.vnid, usual.mac, usual.l3, usual.ofport, usual.vlan,
            usual.meter) == (1, M1, None, 3, None, 3)
    odd = F.make_here(key, (), None, 3, None, 3,
                      F.here_rare((4,), True, False))
    assert (odd.blocked, odd.by_source_ip, odd.deliver) == ((4,), True,
                                                            False)
    assert odd != usual and odd == F.make_here(
        TsOwner(1, M1), (), None, 3, None, 3, F.here_rare((4,), True, False))
    there = F.make_there(key, (), None, ('10.9.9.9', 7),
                         F.there_rare((), False))
    assert there.ctx[-1] is None and (there.blocked, there.redirect) == (
        (), False)
    moved = F.make_there(key, (), None, ('10.9.9.9', 7),
                         F.there_rare((), True))
    assert (moved.blocked, moved.redirect) == ((), True)


def test_views_share_their_ctx_and_read_their_fields():
    """Four fields a view (80 B): the VN's gateway, the VLAN and the rare
    parts are one tuple shared by the views alike; the meter is kept only
    where it is not the port's own."""
    from nvo3_ryu_app.authority import flows as F
    from nvo3_ryu_app.authority.owners import TsOwner
    gw = ('02:00:00:00:ff:01', ('10.0.0.1/24',))
    one = F.make_here(TsOwner(7, M1), ('10.0.0.5',), gw, 3, 10, 3)
    two = F.make_here(TsOwner(7, M2), ('10.0.0.6',), gw, 4, 10, 4)
    assert len(one) == 4 and one.ctx is two.ctx
    assert (one.l3, one.vlan, one.meter, one.cookie) == (
        gw, 10, 3, F.cookie_for(TsOwner(7, M1)))
    missed = F.make_here(TsOwner(7, M1), (), gw, 3, None, P.MISS_METER_ID)
    assert missed.meter == P.MISS_METER_ID and missed.ctx is not one.ctx
    gone = F.make_here(TsOwner(7, M1), (), gw, None, None, None)
    assert gone.meter is None and gone.ofport is None
    far = F.make_there(TsOwner(7, M1), ('10.0.0.5',), gw, ('10.9.9.9', 7))
    near = F.make_there(TsOwner(7, M2), (), gw, None)
    assert len(far) == 4 and far.ctx is near.ctx and far.l3 == gw
    assert (far.vnid, far.mac, far.route) == (7, M1, ('10.9.9.9', 7))
    # A view of each kind never equals one of the other.
    assert far != F.make_here(TsOwner(7, M1), ('10.0.0.5',), gw,
                              ('10.9.9.9', 7), None, None)
