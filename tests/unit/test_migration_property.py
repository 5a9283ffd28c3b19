"""Random operations with announced migrations among them (hypothesis).

The operations of test_forwarding_property.py, plus announcing, cancelling,
arriving at and timing out migrations.  After every operation the
incremental plan equals a full recompute and every fake switch holds
exactly that (the dual-delivery flows included).  After the sequence, a
frame to a migrating tenant system reaches each of its live places once and
nothing outside its VN; then every migration is called off and everything
is as without them (the reachability oracle of the plain property test).
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakeof import ethernet, vid
from nvo3_ryu_app.authority import migrations, mobility
from nvo3_ryu_app.authority import events as ev
from nvo3_ryu_app.authority.errors import MappingError
from test_forwarding_property import (ARGS, MACS, NVES, PORTS, WEIGHTS,
                                      _pick, apply_op, check_reachability,
                                      index, live, nve, populated_lab, port)

MIGRATION_ARGS = {
    'migrate': (index, nve, port, st.sampled_from((None, 10, 20))),
    'cancel': (index,),
    'arrive': (index,),
    'timeout': (index,),
}
ALL_ARGS = dict(ARGS, **MIGRATION_ARGS)
KINDS = [k for k in ALL_ARGS
         for _ in range({'migrate': 12, 'arrive': 2}.get(k, WEIGHTS.get(k, 1)))]
OPS = st.sampled_from(KINDS).flatmap(
    lambda kind: st.tuples(st.just(kind), *ALL_ARGS[kind]))


def _migrating(db, i):
    keys = sorted(db.migrating)
    return db.attachments[keys[i % len(keys)]] if keys else None


def apply_migration_op(lab, migs, op):
    db, kind, args = lab.db, op[0], op[1:]
    if kind not in MIGRATION_ARGS:
        return apply_op(lab, op)
    now = lab.tick()
    if kind == 'migrate':
        att = _pick(db, args[0])
        if att is not None:
            migs.start(att.vnid, att.mac, args[1], args[2], args[3], now)
        return None
    att = _migrating(db, args[0])
    if att is None:
        return None
    if kind == 'cancel':
        migs.cancel(att.vnid, att.mac, now)
    elif kind == 'arrive':
        # Its frame at the announced place: the move that completes it.
        mig = att.migration
        db.learn(mig.nve, mig.port, mig.vlan, att.mac, None, now)
    elif kind == 'timeout':
        db.end_migration(att, now, ev.MIGRATION_TIMED_OUT)
    return None


def places(lab, att):
    """Where a frame to ``att`` must be delivered: its live places."""
    db = lab.db
    out = set()
    if live(lab, att):
        out.add((att.nve, db.nves[att.nve].ofport(att.port), att.vlan))
    mig = att.migration
    target = db.nves[mig.nve]
    if not target.dyn_unreachable and db.binding_vn(
            mig.nve, mig.port, mig.vlan) == att.vnid and \
            target.ofport(mig.port) is not None:
        out.add((mig.nve, target.ofport(mig.port), mig.vlan))
    return out


def reaches(lab, src, dst_nve):
    """Can a frame from ``src`` cross to ``dst_nve`` (tunnel ports and
    VTEPs at both ends)?"""
    if src.nve == dst_nve:
        return True
    tunnel = lab.cfg.tunnel_ports[lab.db.vns[src.vnid].encap]
    a, b = lab.db.nves[src.nve], lab.db.nves[dst_nve]
    return bool(a.ofport(tunnel) is not None and b.ofport(tunnel) is not None
                and a.vtep_ip and b.vtep_ip)


def check_dual_delivery(lab):
    db = lab.db
    for key in sorted(db.migrating):
        att = db.attachments[key]
        want = places(lab, att)
        for src in db.attachments_in(att.vnid):
            if src is att or not live(lab, src) or src.mac == att.mac:
                continue
            res = lab.send(src.nve, src.port,
                           ethernet(src.mac, att.mac, vlan=src.vlan))
            got = [(d, p, vid(pkt)) for d, p, pkt in res.deliveries]
            assert len(got) == len(set(got)), res           # once each
            expected = {p for p in want if reaches(lab, src, p[0])
                        and p[:2] != (src.nve,
                                      db.nves[src.nve].ofport(src.port))}
            if expected:
                assert set(got) == expected, (att, src, res)
            # (No place it can reach: an unknown destination, flooded in
            # the VN as without a migration.)
            for d, p, pkt in res.deliveries:
                assert db.binding_vn(d, lab.net.port_name(d, p),
                                     vid(pkt)) == att.vnid, res


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=10, max_size=40),
       st.sampled_from((None, None, 1, 7)))
def test_random_operations_with_migrations(ops, batch):
    lab = populated_lab(batch, ['172.16.0.%d' % (10 + i) for i in range(5)])
    migs = migrations.Migrations(lab.db, lab.cfg, mobility.MoveArbiter(
        lab.db, lab.cfg))
    for op in ops:
        try:
            apply_migration_op(lab, migs, op)
        except MappingError:
            pass  # refused: whatever it touched must still be planned
        lab.sync()
    check_dual_delivery(lab)
    for key in sorted(lab.db.migrating):
        migs.cancel(key[0], key[1], lab.tick())
    lab.sync()
    check_reachability(lab)
    lab.check_consistent()


def test_the_operations_cover_every_migration_step():
    assert set(MIGRATION_ARGS) <= set(KINDS)
    assert set(PORTS) and set(NVES)
