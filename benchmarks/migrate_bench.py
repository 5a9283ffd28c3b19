"""Benchmark of live migrations on real OVS: announced, unannounced, and
OVN's two modes in the same run.

The three-NVE testbed (topologies/three-nve.yaml) with the app under
osken-manager; VMs move between nve1 and nve2 with a live migration's
switch-over (nvo3_ryu_app/testbed/migration.py, ``live=True``: the guest
takes its addresses on the new vNIC, then drops them from the old one,
announces itself and the old vNIC goes down; it never lacks its address,
so what the prober loses is what the network lost), while the VM "pr" on
nve3 probes the moving VM every 1 ms on a fixed schedule
(nvo3_ryu_app/testbed/prober.py).  Two kinds, alternating:

* announced: the destination port is bound, the hypervisor announces the
  migration (``POST /v1/vns/{vnid}/migrations``, the RPC's ``migrate``)
  and waits for ``/v1/sync`` before the switch-over;
* unannounced: the same without the announcement (the app learns the new
  place from the VM's first frame there).

Per migration: probes lost, the outage (ms from the first lost probe to
the first answered one after it, summed), the app's switch-over
(``migration-completed``: first frame at the new place -> every NVE
acknowledged) or move convergence.  Six movers (three on each of nve1
and nve2 at the start) take turns, each alternately announced and not, so
that no address moves more than ``max_moves`` times a minute (up to about
``--migrations 30``).  A migration whose move is not seen ends the run:
the JSON says why (``error``, the VM's conflict and frozen events).

Then, with ``--anchor DIR``, the OVN anchor (``DIR/run.sh``, not part of
this repository) runs in the same invocation with the same prober interval
(``PING_I``): its break-before-make (plain OVN) and make-before-break
(multi-chassis binding, ``requested-chassis=src,dst``) migrations, probed
from a third hypervisor.  Its outage includes its testbed's own steps
between unplugging on the source and the VM's NIC coming up on the
destination (reported beside it as ``unplug->bind``), a gap this
benchmark's switch-over does not have.

Usage (root): .venv/bin/python benchmarks/migrate_bench.py \\
    [--migrations 10] [--anchor /work/shared/anchors/ovn]
Prints a table and writes benchmarks/results/migrate.json.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import benchenv  # noqa: E402
from nvo3_ryu_app.testbed import migration, prober  # noqa: E402
from nvo3_ryu_app.testbed.builder import _require_root_and_tools  # noqa: E402
from nvo3_ryu_app.testbed.lab import Lab, LabError  # noqa: E402

TOPOLOGY = os.path.join(ROOT, 'topologies', 'three-nve.yaml')
ENDS = ('nve1', 'nve2')
MOVERS = (('mv', 0), ('sp', 1), ('fl', 0), ('pd', 1), ('vic', 0),
          ('h2', 1))               # and the end each starts at
PROBER_VM = 'pr'                   # on nve3
ANCHOR_OUT = '/tmp/ovnbench/out'   # where the anchor script writes
DEFAULT_OUT = os.path.join(HERE, 'results', 'migrate.json')


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {'p50': round(prober.percentile(values, 0.5), 3),
            'p95': round(prober.percentile(values, 0.95), 3),
            'mean': round(statistics.mean(values), 3),
            'max': round(max(values), 3), 'n': len(values)}


def _event(lab, kind, mac, match, timeout=10.0):
    def found():
        for e in lab.get('/v1/events?type=%s&limit=100' % kind)['events']:
            if e.get('mac') == mac and match(e):
                return e
        return None
    return lab.wait_for(found, timeout=timeout, what='%s of %s' % (kind,
                                                                     mac))


def one_migration(lab, vm, to_nve, announced, interval, lead, tail):
    tb = lab.tb
    spec = tb.topo.vm(vm).vnics[0]
    mac = spec.mac
    seq = lab.get('/v1/mappings?mac=%s' % mac)[0]['seq']
    out = os.path.join(tb.rundir, 'probe-%s-%d.json' % (vm, seq))
    probe = prober.start(tb.vms[PROBER_VM].pid, str(spec.ip.ip), out,
                         interval=interval, duration=lead + tail + 10.0,
                         linger=0.5, realtime=True)
    try:
        time.sleep(lead)
        timings = {}
        info = migration.migrate(lab, vm, to_nve, live=True, tell=announced,
                                 timings=timings)
        # No REST polling while the prober measures: the app is one event
        # loop and would serve the polls during the switch-over.
        time.sleep(tail)
    finally:
        results = probe.stop()
    move = _event(lab, 'move', mac, lambda e: e['location_seq'] == seq + 1
                  and 'convergence_ms' in e)
    done = None
    if announced:
        done = _event(lab, 'migration-completed', mac,
                      lambda e: e['location_seq'] == seq + 1
                      and 'switch_over_ms' in e)
    lab.request('DELETE', '/v1/nves/%s/ports/%s' % (info['old_dpid'],
                                                    info['old_port']))
    gaps = [g for g in prober.outages(results)
            if g[1] is None or g[1] >= timings['cut'] - 0.2]
    summary = prober.summary(results)
    return {
        'kind': 'announced' if announced else 'unannounced',
        'vm': vm, 'from': info['old_nve'], 'to': to_nve,
        'location_seq': move['location_seq'], 'how': move['how'],
        'lost': sum(g[2] for g in gaps),
        'outage_ms': round(sum(g[3] for g in gaps), 3),
        'longest_gap_ms': summary['longest_gap_ms'],
        'recovered': not gaps or gaps[-1][1] is not None,
        'switch_over_ms': done['switch_over_ms'] if done else None,
        'move_convergence_ms': move['convergence_ms'],
        'decided_after_cut_ms': round((move['time'] - timings['cut'])
                                      * 1000.0, 3),
        'guest_switch_ms': round((timings['announced'] - timings['cut'])
                                 * 1000.0, 3),
        # Where the losses were: (ms from the cut, probes, ms) per run of
        # lost probes; and when the app saw the VM at its new place.
        'gaps': [[round((g[0] - timings['cut']) * 1000.0, 3), g[2], g[3]]
                 for g in gaps],
        'arrived_after_cut_ms': round((done['arrived'] - timings['cut'])
                                      * 1000.0, 3)
        if done and done.get('arrived') else None,
        'probes_sent': summary['sent'], 'probes_lost_total': summary['lost'],
        'send_lag_max_ms': summary.get('send_lag_max_ms'),
    }


def ours(args):
    _require_root_and_tools()
    lab = Lab(TOPOLOGY, extra_ini=args.extra_ini)
    lab.start()
    rows = []
    try:
        lab.wait_sync(timeout=60)
        got = lab.reach(PROBER_VM, [str(lab.tb.topo.vm(v).vnics[0].ip.ip)
                                    for v, _ in MOVERS])
        if not all(got.values()):
            raise SystemExit('movers not reachable before the benchmark: %s'
                             % got)
        lab.wait_sync()
        where = dict(MOVERS)
        for i in range(2 * args.migrations):
            vm = MOVERS[i % len(MOVERS)][0]
            where[vm] ^= 1
            # Each VM is in turn announced and not.
            announced = (i + i // len(MOVERS)) % 2 == 0
            try:
                row = one_migration(lab, vm, ENDS[where[vm]], announced,
                                    args.interval, args.lead, args.tail)
            except LabError as exc:
                mac = lab.tb.topo.vm(vm).vnics[0].mac
                error = {'migration': i + 1, 'vm': vm, 'announced': announced,
                         'error': str(exc), 'events': [
                             e for kind in ('conflict', 'frozen',
                                            'migration-cancelled',
                                            'migration-timed-out')
                             for e in lab.get('/v1/events?type=%s'
                                              % kind)['events']
                             if e.get('mac') == mac]}
                print('%2d %s: %s' % (i + 1, vm, error), flush=True)
                break
            rows.append(row)
            print('%2d %-11s %-3s %s -> %s  lost %3d  outage %6.1f ms  '
                  'longest gap %5.1f ms  switch-over %s ms'
                  % (i + 1, row['kind'], vm, row['from'], row['to'],
                     row['lost'], row['outage_ms'], row['longest_gap_ms'],
                     row['switch_over_ms']), flush=True)
            lab.wait_sync()
        else:
            error = None
        frozen = lab.get('/v1/events?type=frozen')['events']
        conflicts = lab.get('/v1/events?type=conflict')['events']
    finally:
        problems = lab.stop()
    return rows, {'error': error, 'frozen_events': len(frozen),
                  'conflict_events': len(conflicts),
                  'app_problems': problems}


# -- the OVN anchor ---------------------------------------------------------

MIG_LINE = re.compile(r'^\s*(bbb|mbb)\s+hv(\d)->hv(\d)\s+(\d+)\s+(\d+)\s+'
                      r'(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+([\d.]+)')


def anchor(args):
    """Run the OVN anchor with the same prober interval; parse section 3."""
    script = os.path.join(args.anchor, 'run.sh')
    if not os.path.exists(script):
        raise SystemExit('no anchor script at %s' % script)
    env = dict(os.environ, PING_I=repr(args.interval),
               MOVES=str(args.migrations), MBB_MOVES=str(args.migrations),
               GROW='0')
    log = os.path.join(HERE, 'results', 'migrate-anchor.log')
    t0 = time.monotonic()
    with open(log, 'w', encoding='utf-8') as fh:
        proc = subprocess.run(['bash', script, '3', '2'], env=env,
                              stdout=fh, stderr=subprocess.STDOUT,
                              timeout=args.anchor_timeout, check=False)
    report_path = os.path.join(ANCHOR_OUT, 'results.txt')
    report = open(report_path, encoding='utf-8').read() \
        if os.path.exists(report_path) else ''
    rows = []
    for line in report.splitlines():
        m = MIG_LINE.match(line)
        if m:
            mode, src, dst, lost, outage, gap, bind_reply, unplug_reply, \
                unplug_bind, send_gap = m.groups()
            rows.append({'mode': mode, 'from': 'hv' + src, 'to': 'hv' + dst,
                         'lost': int(lost), 'outage_ms': int(outage),
                         'longest_gap_ms': int(gap),
                         'bind_to_reply_ms': int(bind_reply),
                         'unplug_to_reply_ms': int(unplug_reply),
                         'unplug_to_bind_ms': int(unplug_bind),
                         'send_gap_max_ms': float(send_gap)})
    version = re.search(r'^OVN (\S+), OVS (\S+)', report, re.M)
    return {'returncode': proc.returncode, 'log': os.path.relpath(log, ROOT),
            'elapsed_s': round(time.monotonic() - t0, 1),
            'ovn': version.group(1) if version else None,
            'ovs': version.group(2) if version else None,
            'per_migration': rows,
            'section3': '\n'.join(report.split('\n3. ')[1:]).split(
                '\n4. ')[0] if '\n3. ' in report else ''}


def summarise(rows, key):
    return {'lost': stats([r['lost'] for r in rows]),
            'outage_ms': stats([r['outage_ms'] for r in rows]),
            'longest_gap_ms': stats([r['longest_gap_ms'] for r in rows]),
            'lost_total': sum(r['lost'] for r in rows),
            'with_loss': sum(1 for r in rows if r['lost']),
            key: stats([r.get(key) for r in rows])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--migrations', type=int, default=10,
                    help='migrations of each kind (and of each OVN mode)')
    ap.add_argument('--interval', type=float, default=0.001,
                    help='prober interval (s), also the anchor\'s PING_I')
    ap.add_argument('--lead', type=float, default=0.3,
                    help='probing before each migration (s)')
    ap.add_argument('--tail', type=float, default=0.5,
                    help='probing after each migration (s)')
    ap.add_argument('--extra-ini', default='',
                    help='extra [nvo3] options for the app, e.g. '
                    '"store_fsync = false" (the targets are for the '
                    'defaults)')
    ap.add_argument('--anchor', help='directory of the OVN anchor (run.sh, '
                    'probe.py); without it only this app is measured')
    ap.add_argument('--anchor-timeout', type=float, default=1800.0)
    ap.add_argument('--out', default=DEFAULT_OUT)
    args = ap.parse_args()
    load_start = benchenv.loadavg()
    t0 = time.monotonic()
    rows, extra = ours(args)
    announced = [r for r in rows if r['kind'] == 'announced']
    unannounced = [r for r in rows if r['kind'] == 'unannounced']
    result = {
        'benchmark': 'live migration', 'date': benchenv.now_iso(),
        'command': '.venv/bin/python benchmarks/migrate_bench.py' + (
            ' --migrations %d' % args.migrations
            if args.migrations != 10 else '') + (
            ' --anchor %s' % args.anchor if args.anchor else '') + (
            ' --extra-ini "%s"' % args.extra_ini if args.extra_ini else '') + (
            ' --out %s' % os.path.relpath(args.out, ROOT)
            if args.out != DEFAULT_OUT else ''),
        'topology': os.path.relpath(TOPOLOGY, ROOT),
        'extra_ini': args.extra_ini,
        'prober_interval_ms': args.interval * 1000.0,
        # SCHED_FIFO, as the OVN anchor runs its probe.py (same method).
        'prober_realtime': prober.realtime_allowed(),
        'announced': summarise(announced, 'switch_over_ms'),
        'unannounced': summarise(unannounced, 'move_convergence_ms'),
        'target_announced_lost': 0, 'target_unannounced_outage_ms': 5.0,
        'all_recovered': all(r['recovered'] for r in rows),
        'per_migration': rows,
    }
    result.update(extra)
    if args.anchor:
        if shutil.which('bash') is None:
            raise SystemExit('bash is needed for the anchor')
        ovn = anchor(args)
        for mode in ('bbb', 'mbb'):
            sel = [r for r in ovn['per_migration'] if r['mode'] == mode]
            ovn[mode] = {'lost': stats([r['lost'] for r in sel]),
                         'outage_ms': stats([r['outage_ms'] for r in sel]),
                         'longest_gap_ms': stats([r['longest_gap_ms']
                                                  for r in sel]),
                         'unplug_to_bind_ms': stats([r['unplug_to_bind_ms']
                                                     for r in sel]),
                         'lost_total': sum(r['lost'] for r in sel),
                         'with_loss': sum(1 for r in sel if r['lost'])}
        result['ovn'] = ovn
    result.update({'elapsed_s': round(time.monotonic() - t0, 1),
                   'machine': benchenv.machine(),
                   'loadavg': [load_start, benchenv.loadavg()],
                   'percentiles': 'linear interpolation between closest '
                                  'ranks'})
    benchenv.write_json(args.out, result)
    print()
    print('prober every %g ms (fixed schedule), %d migrations of each kind'
          % (result['prober_interval_ms'], args.migrations))
    if result['error']:
        print('stopped early: %s' % result['error']['error'])
    for kind in ('announced', 'unannounced'):
        s = result[kind]
        if s['lost'] is None:
            print('%-12s none measured' % kind)
            continue
        print('%-12s lost per migration p50 %s max %s (total %d, %d with '
              'loss); outage p50 %s ms max %s ms'
              % (kind, s['lost']['p50'], s['lost']['max'], s['lost_total'],
                 s['with_loss'], s['outage_ms']['p50'],
                 s['outage_ms']['max']))
    for mode in ('bbb', 'mbb'):
        s = result.get('ovn', {}).get(mode)
        if s and s['lost']:
            print('OVN %s     lost per migration p50 %s max %s; outage p50 '
                  '%s ms (its testbed\'s unplug->bind p50 %s ms)'
                  % (mode, s['lost']['p50'], s['lost']['max'],
                     s['outage_ms']['p50'], s['unplug_to_bind_ms']['p50']))
    if result['announced']['lost'] and result['unannounced']['lost']:
        print('targets: announced 0 lost: %s; unannounced outage <= 5 ms '
              '(p50): %s' % (
                  'met' if result['announced']['lost_total'] == 0
                  else 'NOT met',
                  'met' if result['unannounced']['outage_ms']['p50'] <= 5.0
                  else 'NOT met'))
    print('written to %s' % os.path.relpath(args.out, ROOT))
    return 0 if result['all_recovered'] and not result['app_problems'] \
        and not result['error'] else 1


if __name__ == '__main__':
    sys.exit(main())
