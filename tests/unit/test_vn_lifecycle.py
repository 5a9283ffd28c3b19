"""Draft section 7.1: creating and updating a VN as tenant systems come and
go, case by case, and what each case puts on which NVE."""

import pytest

from nvo3_ryu_app.authority import model
from nvo3_ryu_app.authority import planner
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.owners import TsOwner, cookie_for
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound.flowtable import FlowTables
from nvo3_ryu_app.authority.errors import BadRequest

M1, M2, M3 = '02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03'


@pytest.fixture
def fabric():
    db = model.MappingDB()
    db.create_vn(5001, 'blue')
    for dpid in (1, 2, 3):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        db.nve_connected(dpid, {'vxlan0': 10, 'gre0': 11, 'p1': 1, 'p2': 2},
                         '02:aa:00:00:00:0%d' % dpid, 0.0)
    plan = planner.Planner(db, Settings(), FlowTables())
    plan.plan()
    return db, plan


def routes_to(plan, dpid, mac):
    """Where NVE ``dpid`` sends frames for ``mac`` (table l2_forward)."""
    for item in plan.tables[dpid].desired.values():
        if isinstance(item, P.Flow) and item.table == P.L2_FORWARD and \
                ('eth_dst', mac) in item.match:
            return item.actions
    return None


def events(db, since):
    return [(e['type'], e.get('nve')) for e in db.event_log.since(since)
            if e['type'] in ('vn-join', 'vn-leave')]


def check(db, plan):
    plan.plan()
    for dpid in db.nves:
        assert plan.tables[dpid].desired == plan.expected(dpid)


def test_first_participant_sets_up_the_mapping_at_its_nve(fabric):
    db, plan = fabric
    seq = db.event_log.seq
    db.bind_port(1, 'p1', vnid=5001)
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    check(db, plan)
    assert events(db, seq) == [('vn-join', '0000000000000001')]
    assert db.members(5001) == {1}
    assert routes_to(plan, 1, M1) == (('output', 1),)
    assert routes_to(plan, 2, M1) is None and routes_to(plan, 3, M1) is None


def m1_on_1_and_m2_on_2(db):
    """NVE 1 and 2 in VN 5001 through port p1, M1 and M2 attached there."""
    for dpid, mac in ((1, M1), (2, M2)):
        db.bind_port(dpid, 'p1', vnid=5001)
        db.learn(dpid, 'p1', None, mac, None, 1.0)


def test_nve_not_yet_on_the_vn_joins_and_mappings_go_both_ways(fabric):
    db, plan = fabric
    db.bind_port(1, 'p1', vnid=5001)
    db.learn(1, 'p1', None, M1, '192.168.1.1', 1.0)
    seq = db.event_log.seq
    db.bind_port(2, 'p1', vnid=5001)
    db.learn(2, 'p1', None, M2, '192.168.1.2', 2.0)
    check(db, plan)
    assert events(db, seq) == [('vn-join', '0000000000000002')]
    tunnel = lambda ip: (('set', 'tunnel_id', 5001),
                         ('set', 'tun_ipv4_dst', ip), ('output', 10))
    assert routes_to(plan, 2, M1) == tunnel('10.0.0.1')
    assert routes_to(plan, 1, M2) == tunnel('10.0.0.2')
    assert routes_to(plan, 3, M1) is None           # not a member


def test_nve_already_on_the_vn_only_distributes_the_new_entry(fabric):
    db, plan = fabric
    m1_on_1_and_m2_on_2(db)
    db.bind_port(1, 'p2', vnid=5001)
    plan.plan()
    for dpid in (1, 2):
        plan.tables[dpid].take_changes()
    seq = db.event_log.seq
    db.learn(1, 'p2', None, M3, None, 2.0)
    check(db, plan)
    assert events(db, seq) == []
    changed = {dpid: {c[1].key for c in plan.tables[dpid].take_changes()}
               for dpid in (1, 2)}
    owner = cookie_for(TsOwner(5001, M3))
    for dpid, keys in changed.items():
        assert keys, dpid
        assert all(plan.tables[dpid].desired[k].cookie == owner
                   for k in keys), dpid
    assert routes_to(plan, 2, M3)[-1] == ('output', 10)


def test_last_participant_leaving_removes_the_nve_from_the_vn(fabric):
    db, plan = fabric
    m1_on_1_and_m2_on_2(db)
    check(db, plan)
    seq = db.event_log.seq
    db.detach(5001, M2, 2.0)
    db.unbind_port(2, 'p1', 2.0)
    check(db, plan)
    assert events(db, seq) == [('vn-leave', '0000000000000002')]
    assert db.members(5001) == {1}
    assert routes_to(plan, 1, M2) is None
    assert not [i for i in plan.tables[2].desired.values()
                if isinstance(i, P.Flow) and i.match_dict.get('metadata')]


def test_updating_the_encapsulation_moves_every_tunnel(fabric):
    db, plan = fabric
    m1_on_1_and_m2_on_2(db)
    check(db, plan)
    db.update_vn(5001, encap='gre', name='blue-gre')
    check(db, plan)
    assert routes_to(plan, 1, M2)[-1] == ('output', 11)
    assert db.vns[5001].name == 'blue-gre'
    with pytest.raises(BadRequest):
        db.update_vn(5001, service='l3')            # needs a gateway
    assert db.vns[5001].service == 'l2'             # unchanged
    db.update_vn(5001, service='l3', gateway_mac='02:00:00:00:fe:01',
                 gateway_ips=['192.168.1.254/24'])
    check(db, plan)
