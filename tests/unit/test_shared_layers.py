"""The shared layers of the flow tables (southbound/flowtable.py).

A VN's tenant systems as its member NVEs see them alike are kept once per
VN (and tunnel port number); each NVE's table reads that layer and keeps
only its exceptions.  Every scenario ends in ``lab.sync()``, whose
``check_consistent`` asserts incremental == recompute == switch and that
the layers hold exactly ``flows.shared_view`` of every tenant system
(tests/fakeof.py); the tests below also check where the exceptions are.
"""

import pytest

from fakeof import Lab, ipv4
from nvo3_ryu_app.authority import flows as F
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.owners import TsOwner, cookie_for
from nvo3_ryu_app.southbound import stamp
from nvo3_ryu_app.southbound.flowtable import FlowTables, Layer, NveFlowTable

BLUE = 5001
A, B, C = '02:00:00:00:00:0a', '02:00:00:00:00:0b', '02:00:00:00:00:0c'
D, IP_D = '02:00:00:00:00:0d', '192.168.1.4'
IP_A, IP_B, IP_C = '192.168.1.1', '192.168.1.2', '192.168.1.3'


def own_owners(lab, dpid):
    """The tenant systems NVE ``dpid`` keeps a spec of its own for."""
    return {tuple(o) for o in lab.planner.tables[dpid]._own
            if o.kind == 'ts'}


def layer_keys(lab):
    return {key for by_key in lab.planner.tables.layers.values()
            for key in by_key}


@pytest.fixture
def blue():
    """A, B, C of VN 5001 on NVEs 1, 2, 3; NVE 4 has nothing of it."""
    lab = Lab(nves=(1, 2, 3, 4))
    lab.db.create_vn(BLUE, 'blue')
    for dpid in (1, 2, 3):
        lab.db.bind_port(dpid, 'p1', vnid=BLUE)
    lab.db.bind_port(4, 'p2', vnid=BLUE)
    lab.sync()
    lab.learn(1, 'p1', A, IP_A)
    lab.learn(2, 'p1', B, IP_B)
    lab.learn(3, 'p1', C, IP_C)
    lab.sync()
    return lab


def test_a_tenant_system_is_its_own_nve_exception_only(blue):
    tables = blue.planner.tables
    assert layer_keys(blue) == {(BLUE, 100)}
    (layer,) = tables.layers_of(BLUE)
    assert set(layer.specs) == {(BLUE, A), (BLUE, B), (BLUE, C)}
    assert layer.tables == {tables[1], tables[2], tables[3], tables[4]}
    assert own_owners(blue, 1) == {(BLUE, A)}
    assert own_owners(blue, 2) == {(BLUE, B)}
    assert own_owners(blue, 3) == {(BLUE, C)}
    assert own_owners(blue, 4) == set()
    # The remote view every other NVE reads is the layer's one object.
    owner = TsOwner(BLUE, A)
    assert tables[2].spec(owner) is tables[3].spec(owner) is \
        layer.specs[owner]
    assert isinstance(tables[1].spec(owner), F.TsHere)
    # Its own NVE's view shares the addresses with it; neither keeps a
    # cookie of its own (derived from the owner).
    assert tables[1].spec(owner).ips is layer.specs[owner].ips
    for view in (tables[1].spec(owner), layer.specs[owner]):
        assert 'cookie' not in view._fields
        assert view.cookie == cookie_for(owner)


def test_the_views_of_an_l3_vn_share_its_gateway_tuple():
    lab = Lab(nves=(1, 2))
    lab.db.create_vn(BLUE, 'blue', service='l3',
                     gateway_mac='02:00:00:00:ff:01',
                     gateway_ips=['192.168.1.254/24'])
    for dpid in (1, 2):
        lab.db.bind_port(dpid, 'p1', vnid=BLUE)
    lab.learn(1, 'p1', A, IP_A)
    lab.learn(2, 'p1', B, IP_B)
    lab.sync()
    views = [lab.planner.tables[dpid].spec(TsOwner(BLUE, mac))
             for dpid in (1, 2) for mac in (A, B)]
    assert views[0].l3 == ('02:00:00:00:ff:01', ('192.168.1.254/24',))
    assert all(view.l3 is views[0].l3 for view in views)


def test_a_move_moves_the_exception(blue):
    blue.db.move(blue.db.attachments[(BLUE, A)], 2, 'p1', None, blue.tick(),
                 'packet-in')
    blue.sync()
    # The new NVE holds it as local, the old one redirects for a while.
    assert own_owners(blue, 2) == {(BLUE, A), (BLUE, B)}
    assert own_owners(blue, 1) == {(BLUE, A)}
    assert blue.planner.tables[1].spec(TsOwner(BLUE, A)).redirect
    assert blue.send(3, 'p1', ipv4(C, A, IP_C, IP_A)).points() == {(2, 'p1')}
    blue.db.end_redirect(blue.db.attachments[(BLUE, A)])
    blue.sync()
    assert own_owners(blue, 1) == set()
    assert own_owners(blue, 2) == {(BLUE, A), (BLUE, B)}


def test_an_nve_joining_reads_the_layer_and_leaving_drops_it(blue):
    tables = blue.planner.tables
    blue.db.unbind_port(4, 'p2', blue.tick())
    blue.sync()
    (layer,) = tables.layers_of(BLUE)
    assert tables[4] not in layer.tables
    assert blue.holds_vn(4, BLUE) == []
    blue.db.bind_port(4, 'p2', vnid=BLUE)
    blue.sync()
    assert tables[4] in layer.tables
    blue.learn(4, 'p2', D, IP_D)
    blue.sync()
    assert blue.send(4, 'p2', ipv4(D, A, IP_D, IP_A)).points() == {(1, 'p1')}


def test_the_last_tenant_system_and_port_gone_drop_the_layer(blue):
    for dpid in (1, 2, 3):
        blue.db.unbind_port(dpid, 'p1', blue.tick())
    blue.db.unbind_port(4, 'p2', blue.tick())
    for mac in (A, B, C):
        if (BLUE, mac) in blue.db.attachments:
            blue.db.detach(BLUE, mac, blue.tick())
    blue.sync()
    assert blue.planner.tables.layers == {}
    assert all(not t._own or all(o.kind != 'ts' for o in t._own)
               for t in blue.planner.tables.values())


def test_a_claimant_blocked_on_an_nve_is_that_nve_exception(blue):
    att = blue.db.attachments[(BLUE, A)]
    blue.db.block(att, (3, 'p1'), blue.tick() + 100, blue.now)
    blue.sync()
    assert own_owners(blue, 3) == {(BLUE, A), (BLUE, C)}
    assert blue.planner.tables[3].spec(TsOwner(BLUE, A)).blocked == (1,)
    assert own_owners(blue, 2) == {(BLUE, B)}


def test_nves_with_other_tunnel_port_numbers_read_another_layer():
    lab = Lab(nves=(1, 2))
    lab.add_nve(3)
    # NVE 3's vxlan0 has another port number: its routes differ.
    ports = dict(lab.ports(3), vxlan0=200)
    lab.db.nve_connected(3, ports, '02:aa:00:00:00:03', lab.tick())
    lab.db.create_vn(BLUE, 'blue')
    for dpid in (1, 2, 3):
        lab.db.bind_port(dpid, 'p1', vnid=BLUE)
    lab.learn(1, 'p1', A, IP_A)
    lab.learn(2, 'p1', B, IP_B)
    lab.sync()
    assert layer_keys(lab) == {(BLUE, 100), (BLUE, 200)}
    assert lab.planner.tables[3].spec(TsOwner(BLUE, A)).route == \
        ('10.0.0.1', 200)
    assert own_owners(lab, 3) == set()
    # The tunnel port renumbered: NVE 3 reads the other layer now.
    lab.db.nve_connected(3, lab.ports(3), '02:aa:00:00:00:03', lab.tick())
    lab.sync()
    assert layer_keys(lab) == {(BLUE, 100)}
    lab.learn(3, 'p1', C, IP_C)
    lab.sync()
    assert lab.send(3, 'p1', ipv4(C, A, IP_C, IP_A)).points() == {(1, 'p1')}


# --- the table and its layers alone -----------------------------------------

def _flow(n):
    return P.flow(P.L2_FORWARD, P.PRIO_HOST, {'metadata': BLUE,
                                              'eth_dst': '02:00:00:00:01:%02x'
                                              % n}, [], P.COOKIE_APP)


def _build(spec):
    return () if spec is None else tuple(_flow(n) for n in spec)


def _tables():
    tables = FlowTables(_build)
    for dpid in (1, 2):
        tables.table(dpid).load_installed([])
        tables.table(dpid).take_changes()
    return tables


def test_a_layer_change_reaches_every_reader_without_an_exception():
    tables = _tables()
    a, b = TsOwner(BLUE, A), TsOwner(BLUE, B)
    tables.read_layer(1, BLUE, (BLUE, 100), lambda: {a: (1,)})
    tables.read_layer(2, BLUE, (BLUE, 100), lambda: {})
    t1, t2 = tables[1], tables[2]
    t2.set_owners({a: (7,)})             # NVE 2 sees A otherwise
    assert [(op, i.key) for op, i in t1.take_changes()] == [
        ('add', _flow(1).key)]
    assert [op for op, _ in t2.take_changes()] == ['add']
    (layer,) = tables.layers_of(BLUE)
    tables.set_layer(layer, {a: (2,), b: (3,)})
    assert sorted(op for op, _ in t1.take_changes()) == ['add', 'add',
                                                         'delete']
    assert [(op, i.key) for op, i in t2.take_changes()] == [
        ('add', _flow(3).key)]           # its own A stays
    assert t1.n_desired == len(t1.desired) == 2
    assert t2.n_desired == len(t2.desired) == 2
    # The layer now says what NVE 2 held as its own: it keeps nothing.
    tables.set_layer(layer, {a: (7,)})
    assert a not in t2._own and t2.take_changes() == []


def test_an_exception_back_to_the_layer_sends_the_difference_only():
    tables = _tables()
    a = TsOwner(BLUE, A)
    tables.read_layer(1, BLUE, (BLUE, 100), lambda: {a: (1,)})
    t1 = tables[1]
    t1.take_changes()
    t1.set_owners({a: (1, 2)})
    t1.set_owners({a: (1,)})             # before anything was taken
    assert t1.take_changes() == [] and t1.in_sync and not t1._own
    t1.set_owners({a: None})             # nothing of A on this NVE
    assert t1._own == {a: None}
    assert [op for op, _ in t1.take_changes()] == ['delete']
    assert t1.desired == {} and t1.n_desired == 0


def test_reading_another_layer_changes_only_what_differs():
    tables = _tables()
    a, b = TsOwner(BLUE, A), TsOwner(BLUE, B)
    tables.read_layer(1, BLUE, (BLUE, 100), lambda: {a: (1,), b: (2,)})
    tables.read_layer(2, BLUE, (BLUE, 200), lambda: {a: (1,), b: (3,)})
    t1 = tables[1]
    t1.take_changes()
    tables.read_layer(1, BLUE, (BLUE, 200), None)
    assert [(op, i.key) for op, i in t1.take_changes()] == [
        ('add', _flow(3).key), ('delete', _flow(2).key)]
    assert set(tables.layers[BLUE]) == {(BLUE, 200)}   # unread: dropped
    del tables[2]
    (layer,) = tables.layers_of(BLUE)
    assert layer.tables == {t1}
    tables.read_layer(1, BLUE, None, None)
    assert tables.layers == {}
    assert sorted(op for op, _ in t1.take_changes()) == ['delete', 'delete']


def test_a_flat_copy_holds_the_same_without_layers():
    tables = _tables()
    a = TsOwner(BLUE, A)
    tables.read_layer(1, BLUE, (BLUE, 100), lambda: {a: (1,)})
    t1 = tables[1]
    t1.take_changes()
    copy = t1.flat_copy()
    assert isinstance(copy, NveFlowTable) and copy._layers == {}
    assert copy.desired == t1.desired and copy.in_sync
    copy.set_owners({a: (5,)})
    assert t1.spec(a) == (1,) and isinstance(tables.layers_of(BLUE)[0],
                                             Layer)


def test_where_an_nve_sees_a_tenant_system_as_its_layer_its_spec_is_the_layers(
        blue):
    """The planner takes the layer's spec without working out the NVE's
    own view where ``flows.sees_as_its_layer`` says they are equal: check
    that they are, after moves (a redirect), a blocked claimant and a
    migration."""
    from nvo3_ryu_app.authority.flows import sees_as_its_layer
    lab = blue
    lab.learn(4, 'p2', D, IP_D)
    lab.sync()
    lab.learn(2, 'p1', A, IP_A)          # A moves to 2: 1 redirects for it
    lab.sync()
    seen = set()
    db, cfg = lab.db, lab.planner.cfg
    for dpid in lab.db.nves:
        for att in db.attachments_in(BLUE):
            owner = att.key
            spec = F.spec(db, cfg, dpid, owner)
            if sees_as_its_layer(db, dpid, owner):
                key = F.layer_key(db, cfg, dpid, BLUE)
                shared = F.shared_view(db, cfg, key, att.mac) if key else None
                assert spec == shared and type(spec) is type(shared), (
                    dpid, owner)
                seen.add(True)
            else:
                seen.add(False)
    assert seen == {True, False}


def test_an_nve_that_connects_works_out_its_own_tenant_systems_only(
        blue, monkeypatch):
    """A connection (its ports known again) plans the NVE's own view of
    what it holds; the remote tenant systems of its VNs are its layer's,
    looked up, not worked out again, on it nor on its peers, and no
    layer is refreshed for them."""
    lab = blue
    for i in range(20):
        lab.learn(2 + i % 2, 'p1', '02:00:00:00:01:%02x' % i,
                  '192.168.2.%d' % (i + 1))
    lab.sync()
    ports = dict(lab.db.nves[1].dyn_ports)
    lab.db.nve_disconnected(1, 1.0)
    lab.sync()
    calls = []
    real_spec, real_view = F.spec, F.shared_view
    monkeypatch.setattr(F, 'spec', lambda db, cfg, dpid, owner: (
        calls.append((dpid, owner)) or real_spec(db, cfg, dpid, owner)))
    monkeypatch.setattr(F, 'shared_view', lambda db, cfg, key, mac: (
        calls.append((key, mac)) or real_view(db, cfg, key, mac)))
    lab.db.nve_connected(1, ports, None, 2.0)
    lab.planner.plan()
    # A, attached to NVE 1: its own view there, the route to it on its
    # peers and in the layer; nothing of the other 22.
    tenants = {owner for _, owner in calls
               if isinstance(owner, str) or owner.kind == 'ts'}
    assert tenants == {TsOwner(BLUE, A), A}
    assert (1, TsOwner(BLUE, A)) in calls
    monkeypatch.undo()
    lab.sync()


def test_own_specs_are_counted_when_the_count_is_asked(monkeypatch):
    """Counting an NVE's own spec builds its flows: for a large batch
    (here: more than one owner) it is done when ``n_desired`` is asked,
    and gives what counting at once gave, through own and layer changes
    of the same owners in between; a small batch is counted at once."""
    import random
    from nvo3_ryu_app.southbound import flowtable
    monkeypatch.setattr(flowtable, 'COUNT_LATER', 1)
    rng = random.Random(7)
    built = []
    tables = FlowTables(lambda spec: built.append(spec) or _build(spec))
    owners = [TsOwner(BLUE, '02:00:00:00:02:%02x' % i) for i in range(12)]
    tables.read_layer(1, BLUE, (BLUE, 100), lambda: {
        o: (20 * i,) for i, o in enumerate(owners[:6])})
    tables.read_layer(2, BLUE, (BLUE, 100), lambda: {})
    (layer,) = tables.layers_of(BLUE)
    t1 = tables[1]
    del built[:]
    t1.set_owners({owners[0]: (1, 2), owners[7]: (141,)})
    assert built == []                   # nothing built to count them
    t1.set_owners({owners[8]: (161,)})
    assert (161,) in built               # counted at once
    assert t1.n_desired == len(t1.desired)
    for _ in range(300):
        i = rng.randrange(len(owners))
        owner, base = owners[i], 20 * i     # no key of another owner's
        spec = rng.choice([None, (base + rng.randrange(10),),
                           (base + rng.randrange(10), base + 10 +
                            rng.randrange(10))])
        if rng.random() < 0.5:
            tables[rng.choice((1, 2))].set_owners({owner: spec})
        else:
            tables.set_layer(layer, {owner: spec})
        if rng.random() < 0.3:
            for table in (tables[1], tables[2]):
                assert table.n_desired == len(table.desired)
    for table in (tables[1], tables[2]):
        assert table.n_desired == len(table.desired)
        assert table.flat_copy().n_desired == table.n_desired


def test_reading_a_new_layer_at_once_keeps_count_digest_and_changes():
    """A table reading a layer where it read none of the VN takes the
    layer's count and digest in one step: the same as owner by owner,
    with entries of its own (equal to the layer's or not), owners not
    counted yet, and changes not sent yet in between."""
    import random
    rng = random.Random(11)
    owners = [TsOwner(BLUE, '02:00:00:00:03:%02x' % i) for i in range(10)]
    for _ in range(40):
        tables = _tables()
        table = tables[1]
        held = {}
        own = {o: (20 * i + rng.randrange(3),) for i, o in
               enumerate(owners) if rng.random() < 0.4}
        table.set_owners(own)
        if rng.random() < 0.5:
            for op, item in table.take_changes():
                held[item.key] = item
        else:
            table.load_installed([])
            table.take_changes()
            held = {k: v for k, v in table.desired.items()}
        if rng.random() < 0.5:
            table.digest()                  # kept from here on
        if rng.random() < 0.5:
            assert table.n_desired == len(table.desired)
        table.set_owners({o: (20 * i + 5,) for i, o in enumerate(owners)
                          if rng.random() < 0.2})
        layer_specs = {o: (20 * i + rng.randrange(3),) for i, o in
                       enumerate(owners) if rng.random() < 0.7}
        tables.read_layer(2, BLUE, (BLUE, 100), lambda: layer_specs)
        tables.read_layer(1, BLUE, (BLUE, 100), lambda: {})
        assert table.n_desired == len(table.desired)
        assert table.digest() == stamp.digest_of(table.specs.values())
        for op, item in table.take_changes():
            if op == 'delete':
                del held[item.key]
            else:
                held[item.key] = item
        assert held == table.desired


def test_the_digest_is_brought_up_to_date_when_asked(monkeypatch):
    """A change of an NVE's own spec hashes nothing (a move's flows must
    not wait for the stamp's digest); asked for, the digest is the one
    made from scratch, through own and layer changes, owners going back
    to what the digest counts, and layers read in between."""
    import random
    from nvo3_ryu_app.southbound import flowtable
    hashed = []
    digest_of_one = stamp.spec_digest

    def spec_digest(spec):
        hashed.append(spec)
        return digest_of_one(spec)
    monkeypatch.setattr(flowtable.stamp, 'spec_digest', spec_digest)
    rng = random.Random(5)
    owners = [TsOwner(BLUE, '02:00:00:00:04:%02x' % i) for i in range(10)]
    tables = FlowTables(_build)
    for dpid in (1, 2):
        tables.table(dpid).load_installed([])
        tables.table(dpid).take_changes()
    t1 = tables[1]
    t1.digest()
    del hashed[:]
    t1.set_owners({owners[0]: (1,), owners[1]: (21, 22)})
    t1.set_owners({owners[0]: (2,)})
    assert hashed == []
    assert t1.digest() == stamp.digest_of(t1.specs.values())
    t1.set_owners({owners[1]: (23,)})
    t1.set_owners({owners[1]: (21, 22)})        # back as it was counted
    del hashed[:]
    got = t1.digest()
    assert hashed == []
    assert got == stamp.digest_of(t1.specs.values())
    read = False
    for _ in range(300):
        i = rng.randrange(len(owners))
        spec = rng.choice([None, (20 * i + rng.randrange(5),)])
        roll = rng.random()
        if roll < 0.45:
            tables[rng.choice((1, 2))].set_owners({owners[i]: spec})
        elif roll < 0.9 and read:
            (layer,) = tables.layers_of(BLUE)
            tables.set_layer(layer, {owners[i]: spec})
        elif not read:
            specs = {o: (20 * j,) for j, o in enumerate(owners) if j % 2}
            tables.read_layer(2, BLUE, (BLUE, 100), lambda: specs)
            tables.read_layer(1, BLUE, (BLUE, 100), lambda: {})
            read = True
        if rng.random() < 0.2:
            for table in (tables[1], tables[2]):
                assert table.digest() == stamp.digest_of(
                    table.specs.values())
    for table in (tables[1], tables[2]):
        assert table.digest() == stamp.digest_of(table.specs.values())
