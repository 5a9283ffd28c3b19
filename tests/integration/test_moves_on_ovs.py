"""Moves on real OVS: moves, spoofed moves, flapping, port down, NVE resync.

The three-NVE testbed (topologies/three-nve.yaml), the app under
osken-manager.  A move is what a cloud does (nvo3_ryu_app/testbed/
migration.py): the destination port is bound through REST, the vNIC is
re-attached there with the same MAC and IP, and the VM announces itself with
a gratuitous ARP.  The VM "pr" on nve3 probes on a fixed 10 ms schedule
(nvo3_ryu_app/testbed/prober.py).  Waits are on acknowledged state or on
the event log; the only sleeps are probing windows of a measurement.

The tests share one lab and run in file order; each uses VMs of its own:
mv (move under probing), vic/sp (spoofed move), fl (six moves), pd (port
down), h2 and nve2 (NVE disconnect and resync).
"""

import os
import re
import subprocess
import time

import pytest

from nvo3_ryu_app.testbed import migration, procs, prober

import threenve
from threenve import APP_COOKIE, DPID, STAMP_COOKIE, VNID, VTEP
from threenve import events as _events, ip as _ip, mac as _mac

pytestmark = pytest.mark.integration

GRACE = 1.0                 # port_down_grace and nve_down_grace of the lab
REDIRECT_HOLD = 5.0
EXTRA_INI = ('port_down_grace = %s\nnve_down_grace = %s\ntick_interval = 0.1\n'
             'redirect_hold = %s\n' % (GRACE, GRACE, REDIRECT_HOLD))


@pytest.fixture(scope='module')
def lab():
    yield from threenve.known_lab(EXTRA_INI)


# -- helpers --------------------------------------------------------------

def _mapping(lab, mac):
    """The tenant system's location (its mapping entries, one per IP,
    share it), or None."""
    entries = lab.get('/v1/mappings?mac=%s' % mac)
    where = {(e['vnid'], e['nve'], e['port'], e['seq'], e['reachable'])
             for e in entries}
    assert len(where) <= 1, entries
    return entries[0] if entries else None


def _move_event(lab, mac, seq, timeout=10.0):
    """The move of ``mac`` to location ``seq``, once its convergence time
    is known (every NVE it changed acknowledged)."""
    def found():
        for e in _events(lab, 'move', mac):
            if e['location_seq'] == seq and 'convergence_ms' in e:
                return e
        return None
    return lab.wait_for(found, timeout=timeout,
                        what='move of %s to location %d' % (mac, seq))


def _flows(lab, nve, table=None, mac=None):
    """App flows (our cookie) on ``nve``, optionally of one table / MAC."""
    out = []
    for line in lab.dump_flows(nve):
        if not APP_COOKIE.search(line):
            continue
        if table is not None and ' table=%d,' % table not in ' ' + line:
            continue
        if mac is not None and mac.lower() not in line.lower():
            continue
        out.append(line)
    return out


def _l2_route(lab, nve, mac):
    """The table-4 (L2_FORWARD) host flow for ``mac`` on ``nve``, or None."""
    got = [f for f in _flows(lab, nve, 4, mac) if 'priority=200' in f]
    assert len(got) <= 1, got
    return got[0] if got else None


def _probe(lab, dst_vm, seconds=30.0, name='probe'):
    out = os.path.join(lab.tb.rundir, '%s-%s-%d.json' % (
        name, dst_vm, int(time.time() * 1000)))
    return prober.start(lab.tb.vms['pr'].pid, _ip(lab, dst_vm), out,
                        interval=0.01, duration=seconds, linger=0.3)


def _unbind(lab, info):
    lab.request('DELETE', '/v1/nves/%s/ports/%s' % (info['old_dpid'],
                                                    info['old_port']))


# -- (1) a move under 10 ms probing ------------------------------------------

def test_vm_moves_to_another_nve_while_pinged_every_10ms(lab):
    mac = _mac(lab, 'mv')
    before = _mapping(lab, mac)
    assert (before['nve'], before['port']) == (DPID['nve1'], 'mv-0')
    probe = _probe(lab, 'mv')
    try:
        time.sleep(0.3)                  # probing window before the move
        timings = {}
        info = migration.migrate(lab, 'mv', 'nve2', timings=timings)
        # Probing window after the move; no REST polls meanwhile (the app
        # is one event loop: they would be served during the outage).
        time.sleep(0.5)
    finally:
        results = probe.stop()
    event = _move_event(lab, mac, before['seq'] + 1)
    gaps = prober.outages(results)
    summary = prober.summary(results)
    outage_ms = sum(g[3] for g in gaps)
    print('\nmove of mv nve1 -> nve2 under a 10 ms prober: outage %.1f ms, '
          '%d probes lost of %d (%d outage(s)); app convergence %.1f ms; '
          'switch-over in the VM %.1f ms'
          % (outage_ms, summary['lost'], summary['sent'], len(gaps),
             event['convergence_ms'],
             (timings['announced'] - timings['cut']) * 1000.0))
    # Connectivity came back, soon, and stayed.
    assert gaps == [] or gaps[-1][1] is not None, gaps
    assert len(gaps) <= 1 and outage_ms < 1000.0, gaps
    assert summary['received'] >= summary['sent'] - 100
    # The record of the move.
    assert event['old_nve'] == DPID['nve1'] and event['old_port'] == 'mv-0'
    assert event['nve'] == DPID['nve2'] and event['port'] == info['port']
    assert event['location_seq'] == before['seq'] + 1 and event['vnid'] == VNID
    assert isinstance(event['convergence_ms'], float) \
        and 0 < event['convergence_ms'] < 5000
    metrics = lab.metrics()
    assert metrics['nvo3_moves_total{}'] >= 1
    assert metrics['nvo3_move_convergence_seconds_count{}'] >= 1
    after = _mapping(lab, mac)
    assert (after['nve'], after['port'], after['seq']) == (
        DPID['nve2'], info['port'], before['seq'] + 1)
    lab.wait_sync()
    # The old NVE holds no local entry any more; every member NVE forwards
    # to the new location (nve1 still has VMs of the VN: it is a member).
    assert [f for f in _flows(lab, 'nve1', 5, mac)
            if 'priority=150' not in f] == []      # only the redirect
    assert _flows(lab, 'nve1', 1, mac) == []        # no source flows
    for nve in ('nve1', 'nve3'):
        route = _l2_route(lab, nve, mac)
        assert route is not None and VTEP['nve2'] in route, (nve, route)
    assert 'output:' in _flows(lab, 'nve2', 5, mac)[0]
    _check_redirect(lab, mac)
    _unbind(lab, info)


def _check_redirect(lab, mac):
    """During switch-over the old NVE sends frames still tunnelled to it on
    to the new location.  Make nve3 lag on purpose (a foreign flow, which
    the app neither sees nor touches, steering mv's MAC to nve1) and ping:
    nve1's redirect flow carries the echo requests to nve2."""
    redirect = [f for f in _flows(lab, 'nve1', 5, mac) if 'priority=150' in f]
    assert len(redirect) == 1 and 'in_port' in redirect[0].lower() \
        and VTEP['nve2'] in redirect[0], redirect
    nve3 = lab.tb.nve('nve3')
    lag = ('table=4,priority=300,metadata=%d,dl_dst=%s,actions=set_field:%d->'
           'tun_id,set_field:%s->tun_dst,output:60001'
           % (VNID, mac, VNID, VTEP['nve1']))
    nve3.ofctl('add-flow', lag)
    try:
        def n_packets():
            flows = [f for f in _flows(lab, 'nve1', 5, mac)
                     if 'priority=150' in f]
            return int(re.search(r'n_packets=(\d+)', flows[0]).group(1))
        before = n_packets()
        assert lab.ping('pr', _ip(lab, 'mv'), count=2)
        # (OVS folds datapath statistics into its flows every ~0.5 s.)
        lab.wait_for(lambda: n_packets() >= before + 2, timeout=5,
                     what='echo requests through the redirect', interval=0.1)
    finally:
        nve3.ofctl('del-flows', 'table=4,priority=300,metadata=%d,dl_dst=%s'
                   % (VNID, mac), '--strict')
    # The redirect ends after the hold time.
    lab.wait_for(lambda: not [f for f in _flows(lab, 'nve1', 5, mac)
                              if 'priority=150' in f],
                 timeout=REDIRECT_HOLD + 5, what='the redirect to end',
                 interval=0.2)


# -- (2) a spoofed move ------------------------------------------------------

def test_spoofed_move_of_a_live_vm_does_not_take_its_traffic(lab):
    vic, sp = _mac(lab, 'vic'), _mac(lab, 'sp')
    before = _mapping(lab, vic)
    assert before['nve'] == DPID['nve1']
    moves_before = len(_events(lab, 'move', vic))
    probe = _probe(lab, 'vic')
    try:
        time.sleep(0.3)
        # sp (on nve2) announces vic's MAC and IP, again and again.
        lab.tb.gratuitous_arp('sp', mac=vic, ip=_ip(lab, 'vic'), count=5,
                              interval=0.1)
        conflict = lab.wait_for(
            lambda: [e for e in _events(lab, 'conflict', vic)
                     if e.get('claimant_nve') == DPID['nve2']],
            timeout=10, what='a conflict event')[-1]
        lab.wait_sync()
        time.sleep(0.3)
    finally:
        results = probe.stop()
    summary = prober.summary(results)
    print('\nspoofed move of vic: %d probes lost of %d while sp announced '
          'its MAC' % (summary['lost'], summary['sent']))
    assert summary['lost'] <= 1, prober.outages(results)
    assert conflict['reason'] == 'old-location-live', conflict
    assert conflict['claimant_port'] == 'sp-0'
    assert (conflict['nve'], conflict['port']) == (DPID['nve1'], 'vic-0')
    after = _mapping(lab, vic)
    assert (after['nve'], after['port'], after['seq']) == (
        before['nve'], before['port'], before['seq'])
    assert len(_events(lab, 'move', vic)) == moves_before
    # The claimant is blocked on its port: its frames with that MAC drop.
    blocked = [f for f in _flows(lab, 'nve2', 1, vic) if 'priority=400' in f]
    assert len(blocked) == 1 and 'actions=drop' in blocked[0], blocked
    # More spoofing changes nothing; sp itself is untouched.
    lab.tb.gratuitous_arp('sp', mac=vic, ip=_ip(lab, 'vic'), count=2)
    lab.wait_sync()
    assert _mapping(lab, vic)['seq'] == before['seq']
    assert _mapping(lab, sp)['nve'] == DPID['nve2']
    assert lab.ping('pr', _ip(lab, 'vic')) and lab.ping('pr', _ip(lab, 'sp'))


# -- (3) six moves in a minute ----------------------------------------------

def test_vm_moving_six_times_in_a_minute_is_followed_and_not_frozen(lab):
    mac, ip = _mac(lab, 'fl'), _ip(lab, 'fl')
    seq = _mapping(lab, mac)['seq']
    t0 = time.monotonic()
    for i in range(6):
        to = 'nve2' if i % 2 == 0 else 'nve1'
        info = migration.migrate(lab, 'fl', to)
        event = _move_event(lab, mac, seq + i + 1)
        assert (event['nve'], event['port']) == (DPID[to], info['port'])
        entry = _mapping(lab, mac)
        assert (entry['nve'], entry['port'], entry['seq']) == (
            DPID[to], info['port'], seq + i + 1)
        assert lab.ping('pr', ip, count=2), 'move %d to %s' % (i + 1, to)
        _unbind(lab, info)
    elapsed = time.monotonic() - t0
    print('\nsix moves of fl followed in %.1f s' % elapsed)
    assert elapsed < 60.0
    assert _events(lab, 'frozen', mac) == []
    assert _mapping(lab, mac)['nve'] == DPID['nve1']


# -- (4) port down -----------------------------------------------------------

def test_port_down_withdraws_remote_entries_after_the_grace_period(lab):
    mac = _mac(lab, 'pd')
    lab.wait_sync()
    for nve in ('nve1', 'nve3'):
        assert _l2_route(lab, nve, mac) is not None, nve
    t0 = time.monotonic()
    # The hypervisor deletes the VM's port.
    lab.tb.nve('nve2').vsctl('del-port', 'br-int', 'pd-0')
    # Not before the grace period: the remote entries stay (a link flap
    # would ride through).
    while time.monotonic() - t0 < GRACE * 0.8:
        for nve in ('nve1', 'nve3'):
            assert _l2_route(lab, nve, mac) is not None, (
                nve, time.monotonic() - t0)
    assert _mapping(lab, mac) is not None

    def gone():
        return all(_l2_route(lab, nve, mac) is None
                   for nve in ('nve1', 'nve3'))
    lab.wait_for(gone, timeout=GRACE + 5, what='remote entries withdrawn',
                 interval=0.05)
    took = time.monotonic() - t0
    print('\nport down: remote entries withdrawn after %.2f s (grace %.1f s)'
          % (took, GRACE))
    assert took >= GRACE
    assert _mapping(lab, mac) is None
    detach = _events(lab, 'detach', mac)[-1]
    assert detach['reason'] == 'port-down' and detach['port'] == 'pd-0'
    lab.wait_sync()
    assert _flows(lab, 'nve2', mac=mac) == []


# -- (4) NVE disconnect and reconnect ----------------------------------------

def _disconnect(lab, name):
    """Cut ``name``'s controller channel: its relay dies (as when the
    hypervisor loses the management network); OVS keeps its flows."""
    relay = lab.tb.relays.pop(name)
    procs.kill_pid(relay.pid, group=True)
    relay.wait(timeout=5)


def _reconnect(lab, name):
    """A new relay on the same socket; the NVE connects at once."""
    tb, node = lab.tb, lab.tb.nve(name)
    log = open(os.path.join(node.rundir, 'socat.log'), 'ab')
    proc = subprocess.Popen(
        ['socat', 'UNIX-LISTEN:%s,fork,unlink-early' % node.controller_sock,
         'TCP:127.0.0.1:%d,nodelay' % lab.ctl.of_port],   # as builder.py
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True)
    log.close()
    tb.relays[name] = proc
    tb.manifest.add_pid(proc.pid, 'socat %s' % name)
    lab.wait_for(lambda: os.path.exists(node.controller_sock), timeout=5,
                 what='the relay socket')
    node.reconnect_controller()


def test_nve_disconnect_marks_unreachable_and_reconnect_resyncs_exactly(lab):
    h2, fl = _mac(lab, 'h2'), _mac(lab, 'fl')
    dpid = DPID['nve2']
    lab.wait_sync()
    assert _l2_route(lab, 'nve1', h2) is not None
    _disconnect(lab, 'nve2')
    lab.wait_for(lambda: not lab.get('/v1/nves/%s' % dpid)['connected'],
                 timeout=10, what='nve2 seen disconnected')
    # Past the grace period its tenant systems are unreachable: the other
    # NVEs stop tunnelling to them.
    t0 = time.monotonic()
    try:
        lab.wait_for(lambda: _events(lab, 'nve-unreachable') and
                     _mapping(lab, h2)['reachable'] is False,
                     timeout=GRACE + 5, what='nve2 unreachable')
    except AssertionError:
        raise AssertionError((time.monotonic() - t0, _mapping(lab, h2),
                              lab.get('/v1/events?limit=8')['events']))
    lab.wait_sync(nves=[DPID['nve1'], DPID['nve3']])
    for nve in ('nve1', 'nve3'):
        assert _l2_route(lab, nve, h2) is None, nve
    # Meanwhile fl moves (nve1 -> nve3): nve2's route to fl is now stale.
    seq = _mapping(lab, fl)['seq']
    info = migration.migrate(lab, 'fl', 'nve3')
    _move_event(lab, fl, seq + 1)
    assert VTEP['nve1'] in _l2_route(lab, 'nve2', fl)      # stale, offline

    _reconnect(lab, 'nve2')
    took = lab.wait_sync(timeout=30)
    print('\nnve2 reconnected and resynchronized in %.2f s' % took)
    audit = lab.get('/v1/nves/%s/audit' % dpid)
    assert audit['desired_equals_recompute'] is True, audit
    assert (audit['missing'], audit['stale'], audit['different']) == (
        [], [], []), audit
    assert audit['installed'] == audit['desired'], audit
    # The switch itself: exactly the desired flows and meters, no more.
    node = lab.tb.nve('nve2')
    flows = [line for line in lab.dump_flows('nve2') if APP_COOKIE.search(line)]
    meters = [line for line in node.ofctl('dump-meters').splitlines()
              if 'meter=' in line]
    assert len(flows) + len(meters) == audit['desired'], (len(flows),
                                                          len(meters), audit)
    # Nothing foreign: besides them, at most the app's stamp of what they
    # are (table 8, southbound/stamp.py), written a moment after them.
    others = [line for line in lab.dump_flows('nve2')
              if not APP_COOKIE.search(line)]
    assert all(STAMP_COOKIE.search(line) and 'table=8' in line
               for line in others) and len(others) <= 1, others
    assert VTEP['nve3'] in _l2_route(lab, 'nve2', fl)
    assert _mapping(lab, h2)['reachable'] is True
    for nve in ('nve1', 'nve3'):
        assert VTEP['nve2'] in _l2_route(lab, nve, h2), nve
    assert lab.ping('pr', _ip(lab, 'h2')) and lab.ping('h2', _ip(lab, 'fl'))
    _unbind(lab, info)


def test_every_nve_holds_exactly_what_the_database_implies(lab):
    lab.wait_sync()
    for name, dpid in DPID.items():
        audit = lab.get('/v1/nves/%s/audit' % dpid)
        assert audit['desired_equals_recompute'], (name, audit)
        assert (audit['missing'], audit['stale'], audit['different']) == (
            [], [], []), (name, audit)
