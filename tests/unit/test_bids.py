"""Binding identifiers and registration on the mapping database (bids.py).

Every BID rule of draft sections 4.2 and 6.1 and every bad registration
request; a refused call must leave the database exactly as it was.
"""

import dataclasses

import pytest

from nvo3_ryu_app.authority import bids
from nvo3_ryu_app.authority import model
from nvo3_ryu_app.authority import persist
from nvo3_ryu_app.authority.errors import BadRequest, Conflict, NotFound

NVE1, NVE2 = '0000000000000001', '0000000000000002'
MAC = '02:00:00:00:00:01'
MAC2 = '02:00:00:00:00:02'
L3_VNS = {10: '192.168.1', 20: '192.168.2', 30: '192.168.3'}
L2_VNS = (40, 50, 60)


def ip(vnid, host=10):
    return '%s.%d' % (L3_VNS[vnid], host)


@pytest.fixture
def db():
    db = model.MappingDB()
    for vnid, net in L3_VNS.items():
        db.create_vn(vnid, 'l3-%d' % vnid, 'l3',
                     gateway_mac='02:fe:00:00:00:%02x' % vnid,
                     gateway_ips=['%s.1/24' % net])
    for vnid in L2_VNS:
        db.create_vn(vnid, 'l2-%d' % vnid, 'l2')
    for dpid in (1, 2):
        db.register_nve(dpid, '10.0.0.%d' % dpid)
        db.nve_connected(dpid, {'p1': 1, 'p2': 2, 'p3': 3, 'vxlan0': 100},
                         '02:aa:00:00:00:%02x' % dpid, 1.0)
        # The operator's bindings (a registration binds no port): L3 vNICs
        # reach p1 and p3 untagged, the L2 VNs are VLANs 10, 20, 30 of p2.
        db.bind_port(dpid, 'p1', vnid=10)
        db.bind_port(dpid, 'p2', vlans=dict(zip((10, 20, 30), L2_VNS)))
        db.bind_port(dpid, 'p3', vnid=10)
    db.take_changed_records()
    return db


def snapshot(db):
    """Everything a refused call must leave alone."""
    return (persist.all_records(db),
            {k: dataclasses.asdict(a) for k, a in db.attachments.items()},
            dict(db._by_ip),
            {vnid: db.members(vnid) for vnid in db.vns},
            {d: {p: b.to_dict() for p, b in n.bindings.items()}
             for d, n in db.nves.items()})


def refused(db, exc_type, field_name, func, *args, **kwargs):
    """Call ``func``: it must raise ``exc_type`` naming ``field_name`` and
    change nothing."""
    db.take_changed_records()
    before = snapshot(db)
    with pytest.raises(exc_type) as info:
        func(db, *args, **kwargs)
    assert info.value.field == field_name, info.value.message
    assert snapshot(db) == before
    assert db.take_changed_records() == set()
    return info.value.message


def l3(db, mac=MAC, vnid=10, host=10, bid=None, nve=NVE1, port='p1',
       **kwargs):
    return bids.associate(db, nve, port, mac, vnid, ip=ip(vnid, host),
                          bid=bid, **kwargs)


def cache(db, mac=MAC):
    return [(b.vnid, b.ip, b.vlan, b.bid) for b in bids.binding_cache(db, mac)]


# --- rule 1: one binding needs no BID ----------------------------------------

def test_a_vnic_with_one_ip_needs_no_bid(db):
    done = l3(db)
    assert done['action'] == 'registered' and done['bid'] is None
    att = db.attachments[(10, MAC)]
    assert att.source == 'registered' and att.addresses() == {ip(10): None}
    assert cache(db) == [(10, ip(10), None, None)]
    entry, = bids.query(db, 10, MAC)['entries']
    assert entry['ip'] == ip(10) and entry['bid'] is None


def test_a_vnic_with_one_ip_may_have_a_bid(db):
    l3(db, bid=7)
    assert cache(db) == [(10, ip(10), None, 7)]


def test_registration_is_idempotent(db):
    l3(db, now=1.0)
    assert l3(db, now=2.0)['action'] == 're-registered'
    assert cache(db) == [(10, ip(10), None, None)]
    assert db.attachments[(10, MAC)].last_seen == 2.0


# --- rule 2: several bindings, every one with a BID --------------------------

def test_second_ip_on_a_vnic_without_bids_is_refused(db):
    l3(db)
    msg = refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 20,
                  ip=ip(20))
    assert 'needs a BID' in msg
    msg = refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 20,
                  ip=ip(20), bid=2)
    assert 're-register that one with a bid first' in msg
    # The same, for a second IP in the same VN.
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 10,
            ip=ip(10, 11))


def test_the_first_ip_gets_its_bid_then_the_second_is_accepted(db):
    l3(db)
    assert l3(db, bid=1)['action'] == 'bid-assigned'
    assert l3(db, vnid=20, bid=2)['action'] == 'registered'
    assert cache(db) == [(10, ip(10), None, 1), (20, ip(20), None, 2)]


def test_once_a_vnic_has_bids_every_new_ip_needs_one(db):
    l3(db, bid=1)
    l3(db, vnid=20, bid=2)
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 30,
            ip=ip(30))
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 10,
            ip=ip(10, 11))
    l3(db, host=11, bid=3)            # a second IP in VN 10, with a BID
    assert cache(db)[:2] == [(10, ip(10), None, 1), (10, ip(10, 11), None, 3)]


def test_l2_second_binding_needs_bids_too(db):
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10)
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p2', MAC, 50,
            vlan=20, bid=2)
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p2', MAC, 50,
            vlan=20)
    done = bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)
    assert done['action'] == 'bid-assigned'
    bids.associate(db, NVE1, 'p2', MAC, 50, vlan=20, bid=2)
    assert cache(db) == [(40, None, 10, 1), (50, None, 20, 2)]


def test_mixed_l2_and_l3_bindings_share_the_rules(db):
    l3(db, port='p2')
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p2', MAC, 40,
            vlan=10, bid=4)


# --- rule 3: the first registration of a BID carries its IP or VLAN ----------

def test_reregistration_of_a_bid_never_registered_is_refused(db):
    msg = refused(db, NotFound, 'bid', bids.associate, NVE1, 'p1', MAC, 10,
                  bid=5)
    assert 'never registered' in msg and 'ip' in msg
    l3(db, bid=1)
    refused(db, NotFound, 'bid', bids.associate, NVE1, 'p1', MAC, 10, bid=2)


def test_l2_first_registration_of_a_bid_carries_its_vlan(db):
    msg = refused(db, NotFound, 'bid', bids.associate, NVE1, 'p2', MAC, 40,
                  bid=1)
    assert 'vlan' in msg


def test_l3_binding_without_ip_or_bid_is_refused(db):
    refused(db, BadRequest, 'ip', bids.associate, NVE1, 'p1', MAC, 10)


# --- rule 4: later calls carry only the BID ----------------------------------

def test_reregistration_carries_only_the_bid(db):
    l3(db, bid=1, now=5.0)
    l3(db, vnid=20, bid=2, now=5.0)
    done = bids.associate(db, NVE1, 'p1', MAC, 20, bid=2, now=9.0)
    assert done['action'] == 're-registered'
    assert db.attachments[(20, MAC)].last_seen == 9.0
    assert cache(db) == [(10, ip(10), None, 1), (20, ip(20), None, 2)]
    # The same IP may come along; it changes nothing.
    l3(db, vnid=20, bid=2)
    assert cache(db) == [(10, ip(10), None, 1), (20, ip(20), None, 2)]


def test_a_bid_reused_with_another_ip_is_refused(db):
    l3(db, bid=1)
    msg = refused(db, Conflict, 'ip', bids.associate, NVE1, 'p1', MAC, 10,
                  ip=ip(10, 99), bid=1)
    assert 're-used with another IP' in msg


def test_a_bid_reused_in_another_vn_is_refused(db):
    l3(db, bid=1)
    refused(db, Conflict, 'vnid', bids.associate, NVE1, 'p1', MAC, 20,
            ip=ip(20), bid=1)
    refused(db, Conflict, 'vnid', bids.associate, NVE1, 'p2', MAC, 40,
            vlan=10, bid=1)


def test_l2_bid_reused_with_another_vlan_is_refused(db):
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)
    msg = refused(db, Conflict, 'vlan', bids.associate, NVE1, 'p2', MAC, 40,
                  vlan=11, bid=1)
    assert 're-used with another VLAN' in msg
    assert bids.associate(db, NVE1, 'p2', MAC, 40, bid=1)['action'] == \
        're-registered'


def test_an_ip_keeps_its_bid(db):
    l3(db, bid=1)
    l3(db, vnid=20, bid=2)
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p1', MAC, 10,
            ip=ip(10), bid=3)


# --- rule 5: uniqueness ------------------------------------------------------

def test_a_bid_is_unique_per_vnic_mac_only(db):
    l3(db, bid=1)
    l3(db, mac=MAC2, host=20, bid=1, port='p3')
    assert cache(db, MAC2) == [(10, ip(10, 20), None, 1)]


def test_one_ip_of_a_vnic_is_in_one_vn_only(db):
    l3(db, bid=1)
    refused(db, Conflict, 'ip', bids.associate, NVE1, 'p1', MAC, 20,
            ip=ip(10), bid=2)


def test_an_ip_registered_to_another_mac_is_refused(db):
    l3(db)
    refused(db, Conflict, 'ip', bids.associate, NVE1, 'p3', MAC2, 10,
            ip=ip(10))


def test_one_l2_binding_per_vn(db):
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)
    refused(db, Conflict, 'bid', bids.associate, NVE1, 'p2', MAC, 40,
            vlan=10, bid=2)


# --- unknown things and VLANs bound elsewhere --------------------------------

def test_unknown_vn_or_nve_is_refused(db):
    refused(db, NotFound, 'vnid', bids.associate, NVE1, 'p1', MAC, 99,
            ip='10.9.9.9')
    refused(db, NotFound, 'nve', bids.associate, '00000000000000ff', 'p1',
            MAC, 10, ip=ip(10))
    refused(db, NotFound, 'nve', bids.dissociate, '00000000000000ff', MAC)
    refused(db, NotFound, 'vnid', bids.query, 99, MAC)


def test_a_vlan_already_bound_elsewhere_is_refused(db):
    db.bind_port(1, 'p2', vlans={10: 40})
    msg = refused(db, Conflict, 'vlan', bids.associate, NVE1, 'p2', MAC, 50,
                  vlan=10)
    assert 'already bound to VN 40' in msg
    db.bind_port(1, 'p3', vnid=40)
    refused(db, Conflict, 'vlan', bids.associate, NVE1, 'p3', MAC, 50,
            vlan=20)
    refused(db, Conflict, 'port', bids.associate, NVE1, 'p3', MAC, 50)
    refused(db, BadRequest, 'vlan', bids.associate, NVE1, 'p2', MAC, 50)


def test_l3_binding_over_a_vlan_checks_the_vlan(db):
    db.bind_port(1, 'p2', vlans={10: 40})
    refused(db, Conflict, 'vlan', bids.associate, NVE1, 'p2', MAC, 10,
            ip=ip(10), vlan=10)
    # A VLAN nobody bound is not bound by a registration.
    msg = refused(db, NotFound, 'vlan', bids.associate, NVE1, 'p2', MAC, 10,
                  ip=ip(10), vlan=11)
    assert 'not bound' in msg
    db.bind_port(1, 'p2', vlans={10: 40, 11: 10})
    bids.associate(db, NVE1, 'p2', MAC, 10, ip=ip(10), vlan=11)
    assert db.nves[1].bindings['p2'].vlans == {10: 40, 11: 10}


def test_a_port_nobody_bound_is_refused(db):
    db.unbind_port(1, 'p3')
    for vnid, kwargs in ((10, dict(ip=ip(10))), (40, dict(vlan=10)),
                         (40, {})):
        msg = refused(db, NotFound, 'port', bids.associate, NVE1, 'p3', MAC,
                      vnid, **kwargs)
        assert 'p3' in msg and 'not bound' in msg
    assert 'p3' not in db.nves[1].bindings


@pytest.mark.parametrize('kwargs,field_name', [
    (dict(mac='zz:00:00:00:00:01'), 'mac'),
    (dict(mac='01:00:5e:00:00:01'), 'mac'),
    (dict(mac=5), 'mac'),
    (dict(vnid='abc'), 'vnid'),
    (dict(vnid=0), 'vnid'),
    (dict(nve='not-hex'), 'nve'),
    (dict(nve=None), 'nve'),
    (dict(port=''), 'port'),
    (dict(port='x' * 16), 'port'),
    (dict(ip='192.168.1.300'), 'ip'),
    (dict(ip='224.0.0.1'), 'ip'),
    (dict(bid=0), 'bid'),
    (dict(bid=65536), 'bid'),
    (dict(bid=True), 'bid'),
    (dict(bid='1'), 'bid'),
    (dict(vlan=4095), 'vlan'),
    (dict(vlan=[10]), 'vlan'),
])
def test_malformed_values_are_refused(db, kwargs, field_name):
    args = dict(nve=NVE1, port='p1', mac=MAC, vnid=10, ip=ip(10))
    args.update(kwargs)
    nve, port, mac, vnid = (args.pop(k) for k in ('nve', 'port', 'mac',
                                                   'vnid'))
    refused(db, BadRequest, field_name, bids.associate, nve, port, mac, vnid,
            **args)


# --- the binding cache in the mapping entries (Figures 3 and 4) --------------

def test_l3_binding_cache_figure_3(db):
    for n, vnid in enumerate((10, 20, 30), 1):
        l3(db, vnid=vnid, bid=n)
    assert cache(db) == [(10, ip(10), None, 1), (20, ip(20), None, 2),
                         (30, ip(30), None, 3)]
    for n, vnid in enumerate((10, 20, 30), 1):
        view = bids.query(db, vnid, MAC)
        assert view['tesid'] == {'vnid': vnid, 'nve': NVE1, 'ts': MAC}
        entry, = view['entries']
        assert (entry['mac'], entry['ip'], entry['bid']) == (MAC, ip(vnid), n)
        assert entry['nve_ip'] == '10.0.0.1' and entry['port'] == 'p1'
        assert len(view['bindings']) == 3


def test_l2_binding_cache_figure_4(db):
    for n, vnid in enumerate(L2_VNS, 1):
        bids.associate(db, NVE1, 'p2', MAC, vnid, vlan=10 * n, bid=n)
    assert cache(db) == [(40, None, 10, 1), (50, None, 20, 2),
                         (60, None, 30, 3)]
    assert db.nves[1].bindings['p2'].vlans == {10: 40, 20: 50, 30: 60}
    assert db.nves[1].bindings['p2'].origin == 'rest'
    entry, = bids.query(db, 50, MAC)['entries']
    assert (entry['mac'], entry['vlan'], entry['bid']) == (MAC, 20, 2)
    # An address of an L2 binding carries the binding's BID.
    bids.associate(db, NVE1, 'p2', MAC, 50, ip='172.16.0.5', bid=2)
    entry, = bids.query(db, 50, MAC)['entries']
    assert (entry['ip'], entry['bid']) == ('172.16.0.5', 2)


def test_several_vnics_of_one_vm_reach_different_vns_at_one_nve(db):
    l3(db, mac=MAC, vnid=10, port='p1')
    l3(db, mac=MAC2, vnid=20, port='p3')
    assert cache(db, MAC) == [(10, ip(10), None, None)]
    assert cache(db, MAC2) == [(20, ip(20), None, None)]
    assert (db.count_at(10, 1), db.count_at(20, 1)) == (1, 1)
    assert {10, 20} <= db.vns_of(1)


# --- dissociate --------------------------------------------------------------

def test_dissociate_one_bid_removes_exactly_that_binding(db):
    for n, vnid in enumerate((10, 20, 30), 1):
        l3(db, vnid=vnid, bid=n)
    done = bids.dissociate(db, NVE1, MAC, bid=2)
    assert [b['bid'] for b in done['removed']] == [2]
    assert cache(db) == [(10, ip(10), None, 1), (30, ip(30), None, 3)]
    assert (20, MAC) not in db.attachments and 20 not in db.vns_of(1)
    assert db.lookup_ip(20, ip(20)) is None


def test_dissociate_one_of_several_ips_in_a_vn(db):
    l3(db, bid=1)
    l3(db, host=11, bid=2)
    bids.dissociate(db, NVE1, MAC, bid=1)
    assert db.attachments[(10, MAC)].addresses() == {ip(10, 11): 2}


def test_dissociate_refusals(db):
    l3(db, bid=1)
    l3(db, vnid=20, bid=2)
    refused(db, NotFound, 'bid', bids.dissociate, NVE1, MAC, bid=9)
    msg = refused(db, Conflict, 'nve', bids.dissociate, NVE2, MAC, bid=1)
    assert 'registered at NVE 0000000000000001' in msg
    msg = refused(db, BadRequest, 'bid', bids.dissociate, NVE1, MAC)
    assert 'carries the bid' in msg
    refused(db, BadRequest, 'bid', bids.dissociate, NVE1, MAC, bid=-1)
    refused(db, BadRequest, 'mac', bids.dissociate, NVE1, 'nope')
    refused(db, NotFound, 'mac', bids.dissociate, NVE1, MAC2)


def test_dissociate_a_vnic_without_bids(db):
    l3(db)
    done = bids.dissociate(db, NVE1, MAC)
    assert [b['ip'] for b in done['removed']] == [ip(10)]
    assert done['bindings'] == [] and not db.attachments


def test_dissociate_leaves_the_port_bindings_alone(db):
    for n, vnid in enumerate(L2_VNS, 1):
        bids.associate(db, NVE1, 'p2', MAC, vnid, vlan=10 * n, bid=n)
    for n in (2, 1, 3):
        bids.dissociate(db, NVE1, MAC, bid=n)
    assert db.nves[1].bindings['p2'].vlans == {10: 40, 20: 50, 30: 60}


def test_dissociate_keeps_operator_bindings(db):
    db.bind_port(1, 'p2', vlans={10: 40})
    refused(db, NotFound, 'vlan', bids.associate, NVE1, 'p2', MAC, 50,
            vlan=20)
    db.bind_port(1, 'p2', vlans={10: 40, 20: 50})
    bids.associate(db, NVE1, 'p2', MAC, 50, vlan=20)
    bids.dissociate(db, NVE1, MAC)
    assert db.nves[1].bindings['p2'].vlans == {10: 40, 20: 50}
    assert db.nves[1].bindings['p2'].origin == 'rest'


# --- registered beats learned ------------------------------------------------

def test_registration_takes_over_a_learned_entry(db):
    db.bind_port(1, 'p1', vnid=10)
    db.learn(1, 'p1', None, MAC, ip(10, 50), 2.0)
    done = l3(db)
    assert done['action'] == 'registered'
    att = db.attachments[(10, MAC)]
    assert att.source == 'registered' and att.addresses() == {ip(10): None}
    assert db.lookup_ip(10, ip(10, 50)) is None


def test_a_learned_owner_loses_a_registered_ip(db):
    db.bind_port(1, 'p3', vnid=10)
    db.learn(1, 'p3', None, MAC2, ip(10), 2.0)
    l3(db)
    assert db.lookup_ip(10, ip(10)).mac == MAC
    assert db.attachments[(10, MAC2)].addresses() == {}
    assert db.event_log.since(kinds={'conflict'})[-1]['reason'] == \
        'registered-over-learned'


def test_packets_add_no_address_to_a_registered_entry(db):
    db.bind_port(1, 'p1', vnid=10)
    l3(db)
    db.learn(1, 'p1', None, MAC, ip(10, 77), 3.0)
    assert db.attachments[(10, MAC)].addresses() == {ip(10): None}


def test_rebinding_the_port_keeps_bindings_reached_by_source_ip(db):
    l3(db, vnid=20, bid=2)
    db.bind_port(1, 'p1', vnid=10)
    db.bind_port(1, 'p1', vlans={5: 40})
    assert (20, MAC) in db.attachments
    db.unbind_port(1, 'p1')
    assert (20, MAC) not in db.attachments


# --- a vNIC is in one place --------------------------------------------------

def test_registering_elsewhere_moves_every_binding_of_the_vnic(db):
    l3(db, bid=1)
    l3(db, vnid=20, bid=2)
    seq = db.attachments[(10, MAC)].seq
    done = bids.associate(db, NVE2, 'p3', MAC, 10, bid=1)
    assert done['action'] == 're-registered'
    assert [(b.vnid, b.nve, b.port) for b in bids.binding_cache(db, MAC)] \
        == [(10, 2, 'p3'), (20, 2, 'p3')]
    assert [db.count_at(v, 1) for v in (10, 20)] == [0, 0]
    assert [db.count_at(v, 2) for v in (10, 20)] == [1, 1]
    assert db.attachments[(10, MAC)].seq == seq + 1
    assert db.attachments[(10, MAC)].redirect_from is None
    # The old hypervisor's late de-registration changes nothing.
    refused(db, Conflict, 'nve', bids.dissociate, NVE1, MAC, bid=2)


def test_a_move_checks_the_vlans_at_the_new_port(db):
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)
    bids.associate(db, NVE1, 'p2', MAC, 50, vlan=20, bid=2)
    db.bind_port(2, 'p2', vlans={20: 60})
    refused(db, Conflict, 'vlan', bids.associate, NVE2, 'p2', MAC, 40,
            bid=1)
    db.bind_port(2, 'p3', vlans={20: 50})
    refused(db, NotFound, 'vlan', bids.associate, NVE2, 'p3', MAC, 40,
            bid=1)
    db.bind_port(2, 'p3', vlans={10: 40, 20: 50})
    bids.associate(db, NVE2, 'p3', MAC, 40, bid=1)
    assert db.nves[2].bindings['p3'].vlans == {10: 40, 20: 50}
    assert cache(db) == [(40, None, 10, 1), (50, None, 20, 2)]


def test_query_of_an_unknown_vnic(db):
    refused(db, NotFound, 'mac', bids.query, 10, MAC)
    refused(db, BadRequest, 'mac', bids.query, 10, 'x')


def test_packets_add_no_vn_to_a_registered_vnic(db):
    db.bind_port(1, 'p2', vlans={10: 40, 20: 50})
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)
    db.take_changed_records()
    before = snapshot(db)
    with pytest.raises(Conflict) as info:
        db.learn(1, 'p2', 20, MAC, None, 3.0)
    assert info.value.field == 'mac' and snapshot(db) == before
    bids.dissociate(db, NVE1, MAC, bid=1)
    assert db.learn(1, 'p2', 20, MAC, None, 4.0).source == 'learned'


def _restored(db):
    fresh = model.MappingDB()
    persist.restore(fresh, persist.all_records(db))
    return fresh


def test_l3_bids_survive_a_restart(db):
    for n, vnid in enumerate((10, 20), 1):
        l3(db, vnid=vnid, bid=n)
    assert cache(_restored(db)) == cache(db)


def test_l2_bids_survive_a_restart(db):
    for n, vnid in enumerate(L2_VNS, 1):
        bids.associate(db, NVE1, 'p2', MAC, vnid, vlan=10 * n, bid=n)
    assert cache(_restored(db)) == cache(db)


def registered_vns(db):
    """What the index of registered MACs must say, worked out anew."""
    out = {}
    for att in db.attachments.values():
        if att.source == 'registered':
            out.setdefault(att.mac, set()).add(att.vnid)
    return out


def indexed_registered_vns(db):
    return {mac: set(db._registered_vns_of(mac)) for mac in db._registered_vns}


def test_the_index_of_registered_macs_follows_every_change(db):
    """learn() finds a registered vNIC of another VN through an index of
    the registered MACs only: it follows registration, take-over of a
    learned entry, dissociation, a restart and another instance's
    records."""
    db.bind_port(1, 'p2', vlans={10: 40, 20: 50})
    db.learn(1, 'p2', 10, MAC, None, 2.0)
    db.learn(1, 'p2', 10, MAC2, None, 2.0)
    assert indexed_registered_vns(db) == registered_vns(db) == {}
    bids.associate(db, NVE1, 'p2', MAC, 40, vlan=10, bid=1)   # takes over
    bids.associate(db, NVE1, 'p2', MAC, 50, vlan=20, bid=2)
    assert indexed_registered_vns(db) == registered_vns(db) == {
        MAC: {40, 50}}
    assert indexed_registered_vns(_restored(db)) == {MAC: {40, 50}}
    # Another instance's record: MAC2 registered there, then MAC not.
    other = _restored(db)
    bids.associate(other, NVE1, 'p2', MAC2, 40, vlan=10, bid=3)
    bids.dissociate(other, NVE1, MAC, bid=2)
    changes = {('att', key): persist.record_of(other, 'att', key)
               for key in [(40, MAC), (40, MAC2), (50, MAC)]}
    assert persist.apply(db, changes) == {}
    assert indexed_registered_vns(db) == registered_vns(db) == {
        MAC: {40}, MAC2: {40}}
    bids.dissociate(db, NVE1, MAC, bid=1)
    assert indexed_registered_vns(db) == registered_vns(db) == {MAC2: {40}}
    with pytest.raises(Conflict):
        db.learn(1, 'p2', 20, MAC2, None, 3.0)
