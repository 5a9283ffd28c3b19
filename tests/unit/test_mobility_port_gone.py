"""A claim probing a port that goes down becomes a move at once.

A migrated VM announces itself at its new NVE, and its old tap goes a
moment later: the probe of the old location need not run out."""

from test_mobility import frame_in, location, make


def test_the_old_port_going_down_turns_a_pending_claim_into_a_move():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    outs = frame_in(auth, 2, 'p1', 2.0)           # claim: probe out of 1/p1
    assert location(auth) == (1, 'p1') and outs[0].dpid == 1
    outs = auth.port_changed(1, 'p1', None, 2.01)
    assert location(auth) == (2, 'p1')
    # The claimed frame is re-injected at its new NVE.
    assert [(o.dpid, o.actions) for o in outs] == [(2, [('output', 'TABLE')])]
    assert auth.arbiter.claims == {}
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert move['time'] == 2.01 and move['nve'] == '0000000000000002'
    # Nothing is left for the probe deadline.
    assert auth.tick(2.1) == [] and location(auth) == (2, 'p1')


def test_another_port_going_down_leaves_the_claim_alone():
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    frame_in(auth, 2, 'p1', 2.0)
    assert auth.port_changed(1, 'p2', None, 2.01) == []
    assert auth.port_changed(3, 'p1', None, 2.01) == []
    assert location(auth) == (1, 'p1')
    assert list(auth.arbiter.claims) == [(5001, '02:00:00:00:00:01')]


def test_a_frozen_address_stays_frozen_when_its_port_goes():
    auth = make(max_moves=1)
    frame_in(auth, 1, 'p1', 1.0)
    auth.port_changed(1, 'p1', None, 1.5)
    frame_in(auth, 2, 'p1', 2.0)                  # move 1 (old port gone)
    auth.port_changed(1, 'p1', 1, 2.5)
    frame_in(auth, 1, 'p1', 3.0)                  # claim back: probed
    assert location(auth) == (2, 'p1')
    auth.port_changed(2, 'p1', None, 3.01)        # over the limit: frozen
    assert location(auth) == (2, 'p1')
    assert auth.event_log.since(0, kinds={'frozen'})



def test_a_port_reported_again_unchanged_touches_nothing():
    # OVS reports a tap again as it loses its carrier (speed and the
    # like) before it reports the link down: the first report must not
    # cost a replan of the NVE, the second still makes the move.
    auth = make()
    frame_in(auth, 1, 'p1', 1.0)
    frame_in(auth, 2, 'p1', 2.0)                  # claim: probe out of 1/p1
    db = auth.db
    db.take_touched()
    db.port_status(1, 'p1', 1, 2.005)
    assert not db.take_touched()[1]
    assert auth.port_changed(1, 'p1', 1, 2.005) == []
    assert location(auth) == (1, 'p1')
    auth.port_changed(1, 'p1', None, 2.01)
    assert location(auth) == (2, 'p1')
    # Gone, and reported gone again: nothing to replan either.
    db.port_status(1, 'p1', None, 2.02)
    assert not db.take_touched()[1]
    # A port back under another number is a change.
    db.port_status(1, 'p1', 7, 2.03)
    assert db.take_touched()[1] == {1} and db.nves[1].ofport('p1') == 7
