"""Announced live migrations on real OVS (authority/migrations.py).

The three-NVE testbed (topologies/three-nve.yaml), the app under
osken-manager.  The VM "pr" on nve3 probes on a fixed 1 ms schedule
(nvo3_ryu_app/testbed/prober.py).  A migration is what a cloud does
(nvo3_ryu_app/testbed/migration.py): the destination port is bound, the
hypervisor announces the migration (``POST /v1/vns/{vnid}/migrations``) and
waits for ``/v1/sync``, then the guest switches over without a pause (it
never lacks its address: what the prober loses, the network lost).

The tests share one lab and use VMs of their own: mv (the migration under
probing), fl (cancelled), vic (timed out), sp (alive at both places).
Waits are on acknowledged state or on the event log; the only sleeps are
probing windows of a measurement.
"""

import os
import re
import time

import pytest

from nvo3_ryu_app.testbed import migration, prober

import threenve
from threenve import APP_COOKIE, DPID, VNID, VTEP
from threenve import events as _events, ip as _ip, mac as _mac

pytestmark = pytest.mark.integration

TIMEOUT = 3.0                # migration_timeout of the lab
EXTRA_INI = 'migration_timeout = %s\ntick_interval = 0.1\n' % TIMEOUT
MIGRATIONS = '/v1/vns/%d/migrations' % VNID


@pytest.fixture(scope='module')
def lab():
    yield from threenve.known_lab(EXTRA_INI)


def _mapping(lab, mac):
    entries = lab.get('/v1/mappings?mac=%s' % mac)
    return entries[0] if entries else None


def _l2_route(lab, nve, mac):
    """The table-4 host flow for ``mac`` on ``nve`` (our cookie), or None."""
    got = [line for line in lab.dump_flows(nve)
           if APP_COOKIE.search(line) and ' table=4,' in ' ' + line
           and 'priority=200' in line and mac in line.lower()]
    assert len(got) <= 1, got
    return got[0] if got else None


def _app_flows(lab):
    """Every NVE's app flows, without their counters."""
    out = {}
    for nve in DPID:
        out[nve] = sorted(
            re.sub(r'(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*,?'
                   r'\s*', '', line)
            for line in lab.dump_flows(nve) if APP_COOKIE.search(line))
    return out


def _probe(lab, dst_vm, seconds, name):
    out = os.path.join(lab.tb.rundir, '%s-%s-%d.json' % (
        name, dst_vm, int(time.time() * 1000)))
    return prober.start(lab.tb.vms['pr'].pid, _ip(lab, dst_vm), out,
                        interval=0.001, duration=seconds, linger=0.5)


def _bind(lab, nve, port):
    status, body = lab.request('PUT', '/v1/nves/%s/ports/%s' % (
        DPID[nve], port), {'vnid': VNID})
    assert status in (200, 201), body


def _unbind(lab, nve, port):
    lab.request('DELETE', '/v1/nves/%s/ports/%s' % (DPID[nve], port))


def _announce(lab, vm, nve, port):
    status, body = lab.request('POST', MIGRATIONS, {
        'mac': _mac(lab, vm), 'nve': DPID[nve], 'port': port})
    assert status == 201, body
    return body


def _audit_clean(lab):
    for name, dpid in DPID.items():
        audit = lab.get('/v1/nves/%s/audit' % dpid)
        assert audit['desired_equals_recompute'], (name, audit)
        assert (audit['missing'], audit['stale'], audit['different']) == (
            [], [], []), (name, audit)


# -- an announced migration loses nothing ------------------------------------

def test_an_announced_migration_loses_no_probe_of_a_1ms_prober(lab):
    mac = _mac(lab, 'mv')
    before = _mapping(lab, mac)
    assert (before['nve'], before['port']) == (DPID['nve1'], 'mv-0')
    seen = {}

    def dual_delivery(_port):
        # Announced and acknowledged: nve3 sends mv's frames to both NVEs.
        route = _l2_route(lab, 'nve3', mac)
        seen['route'] = route
    probe = _probe(lab, 'mv', 30.0, 'announced')
    try:
        time.sleep(0.3)                  # probing window before
        timings = {}
        info = migration.migrate(lab, 'mv', 'nve2', live=True, tell=True,
                                 timings=timings,
                                 before_switch=dual_delivery)
        time.sleep(0.5)                  # and after; no REST meanwhile
    finally:
        results = probe.stop()
    summary = prober.summary(results)
    print('\nannounced migration of mv nve1 -> nve2 under a 1 ms prober: '
          '%d of %d probes lost, longest gap %.1f ms'
          % (summary['lost'], summary['sent'], summary['longest_gap_ms']))
    assert summary['sent'] > 500
    assert summary['lost'] == 0, prober.outages(results)
    assert info['migration']['to'] == {'nve': DPID['nve2'],
                                       'port': info['port'], 'vlan': None}
    assert VTEP['nve1'] in seen['route'] and VTEP['nve2'] in seen['route']
    # Completed once, as one move; switch-over measured.
    done = lab.wait_for(lambda: [e for e in _events(
        lab, 'migration-completed', mac) if 'switch_over_ms' in e],
        timeout=10, what='migration-completed with its switch-over')[-1]
    assert (done['nve'], done['port'], done['old_port']) == (
        DPID['nve2'], info['port'], 'mv-0')
    assert done['location_seq'] == before['seq'] + 1
    assert 0 < done['switch_over_ms'] < 5000
    moves = [e for e in _events(lab, 'move', mac)
             if e['location_seq'] > before['seq']]
    assert [(m['how'], m['location_seq']) for m in moves] == [
        ('migration', before['seq'] + 1)]
    after = _mapping(lab, mac)
    assert (after['nve'], after['port'], after['seq']) == (
        DPID['nve2'], info['port'], before['seq'] + 1)
    assert lab.get(MIGRATIONS) == []
    lab.wait_sync()
    for nve in ('nve1', 'nve3'):
        route = _l2_route(lab, nve, mac)
        assert VTEP['nve2'] in route and VTEP['nve1'] not in route, route
    metrics = lab.metrics()
    assert metrics['nvo3_migrations_total{outcome=completed}'] >= 1
    assert metrics['nvo3_migration_switchover_seconds_count{}'] >= 1
    assert metrics['nvo3_migrations_pending{}'] == 0
    _unbind(lab, 'nve1', 'mv-0')


# -- cancelled and timed out: the old place as it was ------------------------

def _announced_then(lab, vm, end, what):
    """Announce ``vm``'s migration to a new port of nve2 while probing it
    every 1 ms, and ``end`` it (``what`` names how, for the log): the old
    place stays as it was (location, sequence number, every NVE's flows)
    and the prober loses nothing."""
    mac = _mac(lab, vm)
    port = '%s-new' % vm
    _bind(lab, 'nve2', port)
    lab.wait_sync()
    # A redirect left by an earlier move ends on its own (redirect_hold):
    # not part of what is compared.
    lab.wait_for(lambda: not any(
        ' table=5,' in line and 'priority=150' in line
        for flows in _app_flows(lab).values() for line in flows),
        timeout=10, what='earlier redirects to end', interval=0.1)
    before = _app_flows(lab)
    seq = _mapping(lab, mac)['seq']
    probe = _probe(lab, vm, 30.0, vm)
    try:
        time.sleep(0.2)
        _announce(lab, vm, 'nve2', port)
        lab.wait_sync()
        route = _l2_route(lab, 'nve3', mac)
        assert VTEP['nve1'] in route and VTEP['nve2'] in route, route
        end(mac)
        lab.wait_sync()
        time.sleep(0.2)
    finally:
        results = probe.stop()
    after = _app_flows(lab)
    entry = _mapping(lab, mac)
    assert (entry['nve'], entry['port'], entry['seq']) == (
        DPID['nve1'], '%s-0' % vm, seq)
    assert lab.ping('pr', _ip(lab, vm), count=2)
    _unbind(lab, 'nve2', port)
    summary = prober.summary(results)
    print('\n%s migration of %s: %d of %d probes lost'
          % (what, vm, summary['lost'], summary['sent']))
    assert summary['lost'] == 0, prober.outages(results)
    assert after == before


def test_a_cancelled_migration_leaves_the_old_place_working(lab):
    def cancel(mac):
        status, _ = lab.request('DELETE', '%s/%s' % (MIGRATIONS, mac))
        assert status == 204
    _announced_then(lab, 'fl', cancel, 'cancelled')
    event = _events(lab, 'migration-cancelled', _mac(lab, 'fl'))[-1]
    assert event['reason'] == 'requested'
    _audit_clean(lab)


def test_a_migration_that_times_out_leaves_the_old_place_working(lab):
    def wait_timeout(mac):
        lab.wait_for(lambda: _events(lab, 'migration-timed-out', mac),
                     timeout=TIMEOUT + 5, what='the migration to time out',
                     interval=0.1)
    _announced_then(lab, 'vic', wait_timeout, 'timed-out')
    assert lab.get(MIGRATIONS) == []
    _audit_clean(lab)


# -- law 4: alive at both places ---------------------------------------------

def test_a_vnic_seen_alive_at_both_places_is_a_conflict(lab):
    """sp (nve2) is announced to migrate to nve1, and a copy of it shows up
    there (its MAC on a tap of nve1, in another VM, announcing its
    address) while sp itself still runs and answers: a conflict, not two
    locations."""
    mac, ip = _mac(lab, 'sp'), _ip(lab, 'sp')
    before = _mapping(lab, mac)
    port = 'sp-twin'
    _bind(lab, 'nve1', port)
    migration.plug_tap(lab.tb, 'nve1', port, 'h3', 'twin0', mac)
    try:
        lab.wait_sync()
        _announce(lab, 'sp', 'nve1', port)
        lab.wait_sync()
        lab.tb.gratuitous_arp('h3', mac=mac, ip=ip, ifname='twin0')
        conflict = lab.wait_for(
            lambda: [e for e in _events(lab, 'conflict', mac)
                     if e.get('claimant_port') == port],
            timeout=10, what='a conflict event')[-1]
        assert conflict['reason'] == 'old-location-live'
        assert (conflict['nve'], conflict['port']) == (DPID['nve2'], 'sp-0')
        ended = lab.wait_for(
            lambda: _events(lab, 'migration-cancelled', mac), timeout=10,
            what='the migration to end')[-1]
        assert ended['reason'] == 'old-location-live'
        lab.wait_sync()
        # One location, the original, unchanged; the twin's port blocked.
        entry = _mapping(lab, mac)
        assert (entry['nve'], entry['port'], entry['seq']) == (
            before['nve'], before['port'], before['seq'])
        assert _events(lab, 'migration-completed', mac) == []
        assert lab.get(MIGRATIONS) == []
        route = _l2_route(lab, 'nve3', mac)
        assert VTEP['nve2'] in route and VTEP['nve1'] not in route, route
        blocked = [line for line in lab.dump_flows('nve1')
                   if APP_COOKIE.search(line) and 'priority=400' in line
                   and mac in line.lower()]
        assert len(blocked) == 1 and 'actions=drop' in blocked[0], blocked
        assert lab.ping('pr', ip, count=2)
    finally:
        migration.unplug_tap(lab.tb, 'nve1', port)
        _unbind(lab, 'nve1', port)
    lab.wait_sync()
