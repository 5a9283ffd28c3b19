"""Who masters which NVE in a cluster (southbound/cluster.py): the local
fence, the plan (sticky, balanced, hold-down), claims and releases, roles,
with time passed in."""

import json

from nvo3_ryu_app.southbound.cluster import MASTER, SLAVE, Mastership

D1, D2, D3 = 1, 2, 3


def view(me='a', names=('a', 'b', 'c'), conns=None, ttl=3, mono=100.0,
         since=0.0):
    """A mastership of ``me`` whose view holds ``names`` alive since
    ``since`` and connected to ``conns`` ({dpid: names}, default all)."""
    m = Mastership(me, ttl=ttl)
    m.registered(lease=7, ttl=ttl, asked=mono)
    for name in names:
        m.observe('inst/' + name, json.dumps({'rest': name}).encode(),
                  7 if name == me else 9, 1, False, since)
    for dpid, who in (conns or {d: names for d in (D1, D2, D3)}).items():
        for name in who:
            m.observe('conn/%016x/%s' % (dpid, name), b'', 7, 1, False,
                      since)
    m.loaded()
    return m


def own(m, dpid, name, gen, lease=9):
    m.observe('owner/%016x' % dpid, name.encode(), lease, gen, False, 0.0)


def test_the_local_fence_runs_out_before_etcd_expires_the_lease():
    m = Mastership('a', ttl=3, margin=0.5)
    assert not m.lease_ok(0.0)
    m.registered(lease=7, ttl=3, asked=10.0)
    assert m.lease_ok(12.4) and not m.lease_ok(12.5)
    assert m.renewed(3, asked=11.0)
    assert m.lease_ok(13.4) and not m.lease_ok(13.5)
    # A keepalive asked before an earlier one never shortens the deadline.
    assert m.renewed(3, asked=10.5)
    assert m.lease_ok(13.4)
    # Frozen past the TTL: the monotonic clock ran on, nothing is ours.
    assert not m.lease_ok(20.0)
    assert not m.renewed(-1, asked=20.0)
    assert m.lease is None and m.lease_losses == 1


def test_a_lost_lease_owns_nothing_even_before_the_watch_says_so():
    m = view()
    own(m, D1, 'a', 40, lease=7)
    assert m.mine(D1) == 40 and m.may_write(D1, 100.5) == 40
    m.lost()
    m.registered(lease=8, ttl=3, asked=101.0)
    # The old key hangs on the old lease: not ours.
    assert m.mine(D1) is None and m.may_write(D1, 101.5) is None
    assert m.role_for(D1, 101.5) == (SLAVE, 40)
    # And nothing is claimed before a full reload.
    assert m.actions({D1, D2, D3}, 101.5) == []


def test_unowned_nves_are_shared_out_one_each():
    plans = {}
    for me in 'abc':
        plans[me] = view(me).plan(100.0)
    # The same pure function on every instance: the same answer.
    assert plans['a'] == plans['b'] == plans['c']
    assert sorted(plans['a'].values()) == ['a', 'b', 'c']
    m = view('a')
    want = [d for d, n in plans['a'].items() if n == 'a']
    claims = [a for a in m.actions({D1, D2, D3}, 100.0) if a[0] == 'claim']
    assert claims == [('claim', d) for d in want]


def test_an_owner_keeps_its_nve_and_a_dead_owners_nve_is_taken():
    m = view('a', since=99.0)     # within the hold-down: no rebalancing
    own(m, D1, 'b', 10)
    own(m, D2, 'b', 11)
    own(m, D3, 'c', 12)
    assert m.plan(100.0) == {D1: 'b', D2: 'b', D3: 'c'}     # sticky
    # b dies: its key (and its owner keys, on the same lease) go.
    for key in ('inst/b', 'owner/%016x' % D1, 'owner/%016x' % D2):
        m.observe(key, b'', 0, 0, True, 101.0)
    plan = m.plan(101.0)
    assert plan[D3] == 'c' and {plan[D1], plan[D2]} == {'a', 'c'}
    assert ('claim', [d for d in (D1, D2) if plan[d] == 'a'][0]) in \
        m.actions({D1, D2, D3}, 101.0)


def test_a_newcomer_gets_nves_only_after_the_hold_down():
    m = view('a', names=('a', 'b'), since=0.0)
    own(m, D1, 'a', 10, lease=7)
    own(m, D2, 'a', 11, lease=7)
    own(m, D3, 'a', 12, lease=7)
    m.observe('inst/c', b'{}', 9, 1, False, 100.0)       # c comes (back)
    for dpid in (D1, D2, D3):
        m.observe('conn/%016x/c' % dpid, b'', 9, 1, False, 100.0)
    # b has been alive long enough: a hands one to b at once ...
    acts = m.actions({D1, D2, D3}, 100.0)
    assert [a[0] for a in acts].count('release') == 1
    released = [a[1] for a in acts if a[0] == 'release'][0]
    assert m.may_write(released, 100.0) is None      # stop writing first
    assert m.plan(100.0)[released] == 'b'
    m.observe('owner/%016x' % released, b'', 0, 0, True, 100.1)
    own(m, released, 'b', 20)
    # ... and to c only once c was alive for two TTLs.
    m.renewed(3, asked=104.0)
    assert not [a for a in m.actions({D1, D2, D3}, 105.0)
                if a[0] == 'release']
    m.renewed(3, asked=106.0)
    assert [a[0] for a in m.actions({D1, D2, D3}, 106.1)].count(
        'release') == 1


def test_an_nve_we_no_longer_reach_is_released():
    m = view('a')
    own(m, D1, 'a', 10, lease=7)
    assert ('release', D1) in m.actions({D2, D3}, 100.0)


def test_roles_carry_the_owner_key_generation():
    m = view('a')
    own(m, D1, 'a', 40, lease=7)
    own(m, D2, 'b', 41)
    assert m.role_for(D1, 100.0) == (MASTER, 40)
    assert m.role_for(D2, 100.0) == (SLAVE, 41)
    # No owner now: a slave request with the largest generation seen,
    # never above a future master's (revisions only grow).
    m.observe('owner/%016x' % D2, b'', 0, 0, True, 100.0)
    assert m.role_for(D2, 100.0) == (SLAVE, 41)
    assert m.role_for(D3, 100.0) == (SLAVE, 0)
    # Past the fence: slave everywhere.
    assert m.role_for(D1, 103.0) == (SLAVE, 40)


def test_the_leader_decides_for_nves_nobody_masters():
    m = view('a')
    own(m, D1, 'b', 10)
    assert ('lead',) in m.actions({D1}, 100.0)
    m.observe('leader', b'a', 7, 5, False, 100.0)
    assert m.is_leader()
    assert not m.decides(D1, 100.0)        # b masters it
    assert m.decides(D2, 100.0)            # nobody does: the leader
    assert not m.decides(D2, 103.0)        # not past the fence
    own(m, D2, 'a', 11, lease=7)
    assert m.decides(D2, 100.0)
    assert ('lead',) not in m.actions({D1}, 100.0)


def test_our_connections_are_said_and_unsaid():
    m = view('a', conns={D1: ('a', 'b'), D2: ('b',)})
    acts = m.actions({D2, D3}, 100.0)
    assert ('conn', D2, True) in acts and ('conn', D3, True) in acts
    assert ('conn', D1, False) in acts


def test_nothing_is_written_without_a_lease_or_before_the_view_is_loaded():
    m = view('a')
    assert m.actions({D1}, 103.0) == []        # fence passed
    m2 = Mastership('a', ttl=3)
    m2.registered(lease=7, ttl=3, asked=100.0)
    assert m2.actions({D1}, 100.0) == []       # not loaded yet
