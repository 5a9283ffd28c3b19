"""Benchmark of move convergence on real OVS.

The three-NVE testbed (topologies/three-nve.yaml) with the app under
osken-manager; VMs ping-pong between nve1 and nve2 (each move: the
destination port is bound through REST, then the vNIC moves and the VM
announces itself with a gratuitous ARP, see nvo3_ryu_app/testbed/migration.py)
while the VM "pr" on nve3 probes the moving VM every 10 ms on a fixed
schedule (nvo3_ryu_app/testbed/prober.py: raw ICMP socket, absolute send
deadlines, kernel receive timestamps).

Per move: the outage seen by the prober (ms, from the first lost probe to
the first answered one after it), the probes lost, and the app's own
``convergence_ms`` (from the move decision until every NVE it changed
acknowledged its flows, a barrier per NVE) from ``GET /v1/events``.

Three movers take turns (8 moves each for the default 24) so that no address
moves more than ``max_moves`` (10) times a minute: the app runs with its
default options.

Usage (root): .venv/bin/python benchmarks/move_bench.py [--moves 24]
Prints a table and writes benchmarks/results/move.json.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import benchenv  # noqa: E402
from nvo3_ryu_app.testbed import migration, prober  # noqa: E402
from nvo3_ryu_app.testbed.builder import _require_root_and_tools  # noqa: E402
from nvo3_ryu_app.testbed.lab import Lab  # noqa: E402

TOPOLOGY = os.path.join(ROOT, 'topologies', 'three-nve.yaml')
MOVERS = ('mv', 'fl', 'vic')       # on nve1 at the start
ENDS = ('nve1', 'nve2')
PROBER_VM = 'pr'                   # on nve3


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values, q):
    value = prober.percentile(values, q)
    return None if value is None else round(value, 3)


def move_event(lab, mac, seq, timeout=10.0):
    """The move event of ``mac`` to location ``seq``, once it has its
    convergence time."""
    def found():
        for e in lab.get('/v1/events?type=move&limit=50')['events']:
            if e['mac'] == mac and e['location_seq'] == seq \
                    and 'convergence_ms' in e:
                return e
        return None
    return lab.wait_for(found, timeout=timeout, what='move event of %s' % mac)


def one_move(lab, vm, to_nve, interval, lead, tail):
    tb = lab.tb
    spec = tb.topo.vm(vm).vnics[0]
    ip, mac = str(spec.ip.ip), spec.mac
    seq = lab.get('/v1/mappings?mac=%s' % mac)[0]['seq']
    out = os.path.join(tb.rundir, 'probe-%s-%d.json' % (vm, seq))
    probe = prober.start(tb.vms[PROBER_VM].pid, ip, out, interval=interval,
                         duration=lead + tail + 10.0, linger=0.3)
    try:
        time.sleep(lead)
        timings = {}
        info = migration.migrate(lab, vm, to_nve, timings=timings)
        # No REST polling while the prober measures: the app is one
        # event loop and would serve the polls during the outage.
        time.sleep(tail)
    finally:
        results = probe.stop()
    event = move_event(lab, mac, seq + 1)
    # The old port's binding goes, as a cloud unbinds the source port.
    lab.request('DELETE', '/v1/nves/%s/ports/%s' % (info['old_dpid'],
                                                    info['old_port']))
    gaps = [g for g in prober.outages(results)
            if g[1] is None or g[1] >= timings['cut'] - 0.2]
    summary = prober.summary(results)
    outage_ms = round(sum(g[3] for g in gaps), 3)
    lost = sum(g[2] for g in gaps)
    return {
        'vm': vm, 'mac': mac, 'from': info['old_nve'], 'to': to_nve,
        'port': info['port'], 'location_seq': event['location_seq'],
        'how': event['how'], 'outage_ms': outage_ms, 'lost': lost,
        'outages': len(gaps), 'convergence_ms': event['convergence_ms'],
        'recovered': bool(gaps) is False or gaps[-1][1] is not None,
        'switch_over_ms': round((timings['announced'] - timings['cut'])
                                * 1000.0, 3),
        'decided_after_cut_ms': round((event['time'] - timings['cut'])
                                      * 1000.0, 3),
        'probes_sent': summary['sent'], 'probes_lost_total': summary['lost'],
        'send_lag_max_ms': summary.get('send_lag_max_ms'),
    }


def run(args):
    _require_root_and_tools()
    load_start = loadavg()
    lab = Lab(TOPOLOGY)
    lab.start()
    rows = []
    t_start = time.monotonic()
    try:
        lab.wait_sync(timeout=60)
        # Every VM speaks once, so the app knows them all.
        got = lab.reach(PROBER_VM, [str(lab.tb.topo.vm(v).vnics[0].ip.ip)
                                    for v in MOVERS])
        if not all(got.values()):
            raise SystemExit('movers not reachable before the benchmark: %s'
                             % got)
        lab.wait_sync()
        where = {vm: 0 for vm in MOVERS}          # index into ENDS
        for i in range(args.moves):
            vm = MOVERS[i % len(MOVERS)]
            where[vm] ^= 1
            row = one_move(lab, vm, ENDS[where[vm]], args.interval,
                           args.lead, args.tail)
            rows.append(row)
            print('move %2d %-3s %s -> %s  outage %6.1f ms  lost %2d  '
                  'convergence %6.1f ms  (%s, decided %.1f ms after the cut)'
                  % (i + 1, vm, row['from'], row['to'], row['outage_ms'],
                     row['lost'], row['convergence_ms'], row['how'],
                     row['decided_after_cut_ms']), flush=True)
            lab.wait_sync()
        frozen = lab.get('/v1/events?type=frozen')['events']
        problems_seen = []
    finally:
        problems_seen = lab.stop()
    elapsed = time.monotonic() - t_start
    outage = [r['outage_ms'] for r in rows]
    lost = [r['lost'] for r in rows]
    conv = [r['convergence_ms'] for r in rows]
    result = {
        'benchmark': 'move convergence', 'date': benchenv.now_iso(),
        'command': '.venv/bin/python benchmarks/move_bench.py' + (
            ' --moves %d' % args.moves if args.moves != 24 else ''),
        'topology': os.path.relpath(TOPOLOGY, ROOT),
        'prober_interval_ms': args.interval * 1000.0,
        'moves': len(rows),
        'outage_ms': {'p50': percentile(outage, 0.5),
                      'p95': percentile(outage, 0.95),
                      'mean': round(statistics.mean(outage), 3),
                      'max': max(outage)},
        'lost_probes': {'total': sum(lost), 'p50': percentile(lost, 0.5),
                        'p95': percentile(lost, 0.95), 'max': max(lost)},
        'convergence_ms': {'p50': percentile(conv, 0.5),
                           'p95': percentile(conv, 0.95),
                           'max': max(conv)},
        'target_p50_outage_ms': 20.0,
        'all_recovered': all(r['recovered'] for r in rows),
        'frozen_events': len(frozen),
        'app_problems': problems_seen,
        'elapsed_s': round(elapsed, 1),
        'machine': benchenv.machine(),
        'loadavg': [load_start, loadavg()],
        'percentiles': 'linear interpolation between closest ranks',
        'per_move': rows,
    }
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--moves', type=int, default=24,
                    help='moves to time (at least 20 for a p95)')
    ap.add_argument('--interval', type=float, default=0.01,
                    help='prober interval (s)')
    ap.add_argument('--lead', type=float, default=0.3,
                    help='probing before each move (s)')
    ap.add_argument('--tail', type=float, default=0.4,
                    help='probing after each move (s)')
    ap.add_argument('--out', default=os.path.join(HERE, 'results',
                                                  'move.json'))
    args = ap.parse_args()
    result = run(args)
    benchenv.write_json(args.out, result)
    o, lo, c = result['outage_ms'], result['lost_probes'], \
        result['convergence_ms']
    print()
    print('moves            %d (prober every %.0f ms, fixed schedule)'
          % (result['moves'], result['prober_interval_ms']))
    print('outage           p50 %.1f ms   p95 %.1f ms   max %.1f ms'
          % (o['p50'], o['p95'], o['max']))
    print('probes lost      total %d   per move p50 %s  p95 %s  max %d'
          % (lo['total'], lo['p50'], lo['p95'], lo['max']))
    print('convergence_ms   p50 %.1f ms   p95 %.1f ms   max %.1f ms  '
          '(app: move decided -> every NVE acknowledged)'
          % (c['p50'], c['p95'], c['max']))
    print('target           p50 outage < 20 ms: %s'
          % ('met' if o['p50'] < 20.0 else 'NOT met'))
    print('frozen events %d, app problems %d, %.0f s; written to %s'
          % (result['frozen_events'], len(result['app_problems']),
             result['elapsed_s'], os.path.relpath(args.out, ROOT)))
    return 0 if result['all_recovered'] and not result['app_problems'] \
        else 1


if __name__ == '__main__':
    sys.exit(main())
