"""Capacity and memory of one authority, against simulated NVEs.

The app (real osken-manager, persistent store with fsync, default options
unless told) is configured with ``--nves`` NVEs in VNs of ``--vn-size``
members; ofswitch_sim.py connects them and attaches ``--tenants`` tenant
systems by packet-ins, keeping at most ``--window`` attachments in flight
(closed loop: the app's own pace; ``--rate`` gives an open-loop schedule
instead).  Meanwhile a client thread queries REST: ``GET
/v1/vns/{vnid}/mappings`` and ``GET /v1/nves/{dpid}`` in turn, every
``--rest-interval`` seconds, over one keep-alive connection.

Figures:

* attachments/s: an attachment is done when every member NVE of its VN
  has its flows and answered the barrier after them (packet-in to flows
  acknowledged); sustained = the middle 80 % of completions over their
  time span;
* flow-mods/s the app sent, and the attach latency p50/p99 (packet-in to
  acknowledged, measured by the simulator);
* packet-in handling latency p50/p99 from the app's own
  ``nvo3_packet_in_seconds`` histogram (bucket upper bounds);
* memory per mapping entry: RSS growth of the osken-manager process over
  the attachment run / entries added (and per flow the app holds), once
  settled: after the heap trim the app makes when its switches go quiet
  (nvo3_ryu_app/heaptrim.py; up to 5 s), and 1 s after the run without
  waiting for it;
* REST latency p50/p99 per query while the attachment load runs.

Targets (2-core machine): >= 2,000 attachments/s sustained with 1,000 NVEs,
<= 2 KB of authority memory per mapping entry, REST p99 < 50 ms.

Usage::

    python benchmarks/capacity_bench.py                 # 1,000 NVEs, 100,000 TS
    python benchmarks/capacity_bench.py --quick         # < 60 s
    python benchmarks/capacity_bench.py --profile 20    # py-spy the app too

Prints a table and writes benchmarks/results/capacity.json (or
capacity-quick.json).
"""

import argparse
import http.client
import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib as B  # noqa: E402
import ofswitch_sim as S  # noqa: E402

TARGETS = {'attach_per_s': 3000.0, 'bytes_per_entry': 1200.0,
           'rest_p99_ms': 50.0}
PROFILE_DIR = '/tmp/nvo3-bench-profiles'


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--nves', type=int, default=1000)
    ap.add_argument('--tenants', type=int, default=100000)
    ap.add_argument('--vn-size', type=int, default=10)
    ap.add_argument('--ports', type=int, default=4)
    ap.add_argument('--window', type=int, default=1000,
                    help='attachments in flight at most (closed loop)')
    ap.add_argument('--rate', type=float, default=0.0,
                    help='packet-ins per second (0: as fast as the window '
                         'lets them go)')
    ap.add_argument('--rest-interval', type=float, default=0.05)
    ap.add_argument('--no-fsync', action='store_true')
    ap.add_argument('--audit-interval', type=float, default=None,
                    help='the app\'s audit_interval (default: its own, 30 s)')
    ap.add_argument('--ini', action='append', default=[],
                    metavar='"OPTION = VALUE"',
                    help='an extra [nvo3] option for the app (repeatable)')
    ap.add_argument('--profile', type=float, default=0.0, metavar='SECONDS',
                    help='py-spy the app for this long during the run')
    ap.add_argument('--quick', action='store_true',
                    help='100 NVEs, 5,000 tenant systems (< 60 s)')
    ap.add_argument('--timeout', type=float, default=3600.0)
    ap.add_argument('--out', default=None, metavar='PATH',
                    help='write the JSON here (default: '
                         'benchmarks/results/capacity.json, or '
                         'capacity-quick.json with --quick)')
    args = ap.parse_args(argv)
    if args.quick:
        args.nves, args.tenants = 100, 5000
        args.window = min(args.window, 500)
    return args


class RestProbe(threading.Thread):
    """GETs the two queries in turn until stopped; keeps their latencies."""

    def __init__(self, port, vnids, dpids, interval):
        super().__init__(daemon=True)
        self.port, self.vnids, self.dpids = port, vnids, dpids
        self.interval = interval
        self.stop_flag = threading.Event()
        self.latency = {'mappings': [], 'nve': []}
        self.errors = 0
        self.bytes = {'mappings': 0, 'nve': 0}

    def run(self):
        rnd = random.Random(7)
        conn = None
        turn = 0
        while not self.stop_flag.is_set():
            kind = ('mappings', 'nve')[turn % 2]
            turn += 1
            path = ('/v1/vns/%d/mappings' % rnd.choice(self.vnids)
                    if kind == 'mappings'
                    else '/v1/nves/%016x' % rnd.choice(self.dpids))
            try:
                if conn is None:
                    conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                                      timeout=60)
                t = time.perf_counter()
                conn.request('GET', path)
                resp = conn.getresponse()
                body = resp.read()
                took = time.perf_counter() - t
                if resp.status != 200:
                    self.errors += 1
                else:
                    self.latency[kind].append(took)
                    self.bytes[kind] += len(body)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            self.stop_flag.wait(self.interval)
        if conn is not None:
            conn.close()


def main(argv=None):
    args = parse_args(argv)
    B.exit_on_sigterm()
    config, vn_of = S.fleet(args.nves, args.vn_size, args.ports)
    extra = []
    if args.no_fsync:
        extra.append('store_fsync = false')
    if args.audit_interval is not None:
        extra.append('audit_interval = %s' % args.audit_interval)
    extra.extend(args.ini)
    r = {'params': dict(vars(args)), 'env': B.env(), 'app_ini': extra,
         'targets': TARGETS}
    t = time.monotonic()
    ctl = B.start_app(config, '\n'.join(extra), timeout=args.timeout)
    r['app_start_s'] = round(time.monotonic() - t, 3)
    sim = None
    try:
        sim = S.SimProcess(ctl.of_port, sorted(vn_of), args.ports)
        t = time.monotonic()
        B.wait_sync(ctl, args.nves, args.timeout, interval=0.2,
                    check=sim.check)
        r['connect_all_s'] = round(time.monotonic() - t, 3)
        _attach_run(ctl, sim, args, vn_of, r)
        r['log_problems'] = ctl.scan_log()
        # Journal compactions stop the event loop while they write.
        r['compactions_ms'] = [
            int(m.group(1)) for m in re.finditer(
                r'compacted \d+ records into a snapshot in (\d+) ms',
                ctl.log_text())]
    finally:
        if sim is not None:
            sim.close()
        ctl.close()
    _report(r)
    name = args.out or ('capacity-quick.json' if args.quick
                        else 'capacity.json')
    print('wrote', B.write_json(name, r))
    return 0


def _settle(ctl, samples, timeout=5.0):
    """Wait for the heap trim the app makes once its switches are quiet
    (nvo3_ryu_app/heaptrim.py): the memory an operator sees after a burst.
    Returns what it gave back, or None if none came (nothing to trim, or
    a C library without malloc_trim)."""
    name = 'nvo3_heap_trims_total'
    before = B.metric(samples, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = B.metrics(ctl)
        if B.metric(now, name) > before:
            return {'mib': round((
                B.metric(now, 'nvo3_heap_trimmed_bytes_total') -
                B.metric(samples, 'nvo3_heap_trimmed_bytes_total')) / 2**20,
                1), 'ms': round(1000 * (
                    B.metric(now, 'nvo3_heap_trim_seconds_total') -
                    B.metric(samples, 'nvo3_heap_trim_seconds_total')), 1)}
        time.sleep(0.25)
    return None


def _attach_run(ctl, sim, args, vn_of, r):
    tenants = S.tenants(args.tenants, vn_of, args.ports)
    time.sleep(1.0)                 # let start-up garbage settle
    rss0 = B.rss_kib(ctl.pid)
    samples0 = B.metrics(ctl)
    cpu_app0, cpu_sim0 = B.cpu_seconds(ctl.pid), B.cpu_seconds(sim.pid)
    barriers0 = sim.status()['counts'].get('barriers', 0)
    probe = RestProbe(ctl.rest_port, sorted(set(vn_of.values())),
                      sorted(vn_of), args.rest_interval)
    prof = {}
    t0 = time.monotonic()
    sim.attach(tenants, args.rate, args.window)
    probe.start()
    progress = []
    profiler = None
    while True:
        time.sleep(1.0)
        status = sim.status()
        elapsed = time.monotonic() - t0
        progress.append((round(elapsed, 1), status['attach_done']))
        if len(progress) % 5 == 0:
            print('  %6.1f s  %7d done  %5d in flight  %d failed' % (
            elapsed, status['attach_done'], status['attach_outstanding'],
            status['attach_failed']), flush=True)
        if args.profile and profiler is None and \
                status['attach_done'] >= 0.1 * args.tenants:
            os.makedirs(PROFILE_DIR, exist_ok=True)
            profiler = threading.Thread(target=lambda: prof.update(
                result=B.profile(ctl.pid, args.profile, os.path.join(
                    PROFILE_DIR, 'capacity-%d' % os.getpid()))))
            profiler.start()
        if status['attach_done'] + status['attach_failed'] >= args.tenants:
            break
        if elapsed > args.timeout:
            raise TimeoutError('attachments not done: %s' % status)
    B.wait_sync(ctl, args.nves, args.timeout, check=sim.check)
    attach_s = time.monotonic() - t0
    probe.stop_flag.set()
    probe.join(60)
    if profiler is not None:
        profiler.join()
    cpu_app = B.cpu_seconds(ctl.pid) - cpu_app0
    cpu_sim = B.cpu_seconds(sim.pid) - cpu_sim0
    samples = B.metrics(ctl)
    time.sleep(1.0)
    rss_busy = B.rss_kib(ctl.pid)
    trim = _settle(ctl, samples)
    rss1 = B.rss_kib(ctl.pid)
    status = sim.status()
    lat = sim.call('latencies')
    done_at = sorted(lat['done_at'])
    n = len(done_at)
    sustained = None
    if n >= 10:
        lo, hi = done_at[int(0.1 * n)], done_at[int(0.9 * n) - 1]
        sustained = (int(0.9 * n) - int(0.1 * n)) / max(1e-9, hi - lo)
    span = (status['last_done'] - status['first_sent']) \
        if status['last_done'] else None
    entries = B.metric_sum(samples, 'nvo3_mapping_entries') - \
        B.metric_sum(samples0, 'nvo3_mapping_entries')
    flows = B.metric_sum(samples, 'nvo3_flows_desired') - \
        B.metric_sum(samples0, 'nvo3_flows_desired')
    flow_mods = B.metric(samples, 'nvo3_flow_mods_sent_total') - \
        B.metric(samples0, 'nvo3_flow_mods_sent_total')
    h0 = B.histogram(samples0, 'nvo3_packet_in_seconds')
    h1 = B.histogram(samples, 'nvo3_packet_in_seconds')
    grown = (rss1 - rss0) * 1024
    rest = {}
    for kind, values in probe.latency.items():
        rest[kind] = {'count': len(values),
                      'p50_ms': B.ms(B.percentile(values, 0.5)),
                      'p99_ms': B.ms(B.percentile(values, 0.99)),
                      'max_ms': B.ms(max(values) if values else None),
                      'mean_bytes': round(probe.bytes[kind]
                                          / max(1, len(values)))}
    both = probe.latency['mappings'] + probe.latency['nve']
    rest['all'] = {'count': len(both),
                   'p50_ms': B.ms(B.percentile(both, 0.5)),
                   'p99_ms': B.ms(B.percentile(both, 0.99)),
                   'errors': probe.errors}
    r['attach'] = {
        'done': status['attach_done'], 'failed': status['attach_failed'],
        'seconds_to_all_in_sync': round(attach_s, 3),
        'span_s': round(span, 3) if span else None,
        'per_s_overall': round(n / span, 1) if span else None,
        'per_s_sustained': round(sustained, 1) if sustained else None,
        'latency_p50_ms': B.ms(B.percentile(lat['latencies'], 0.5)),
        'latency_p99_ms': B.ms(B.percentile(lat['latencies'], 0.99)),
        'progress': progress}
    r['flow_mods'] = {'app_sent': flow_mods,
                      'per_s': round(flow_mods / span, 1) if span else None,
                      'switches_received': status['counts']['flow_mods'],
                      'switch_flows_total': status['flows'],
                      # batches: each closed by one barrier
                      'barriers_per_attach': round(
                          (status['counts'].get('barriers', 0) - barriers0)
                          / max(1, n), 2)}
    r['packet_in'] = {
        'count': B.metric(samples, 'nvo3_packet_in_seconds_count')
        - B.metric(samples0, 'nvo3_packet_in_seconds_count'),
        'p50_ms_bucket': B.ms(B.histogram_quantile(h0, h1, 0.5)),
        'p99_ms_bucket': B.ms(B.histogram_quantile(h0, h1, 0.99)),
        'mean_ms': B.ms((B.metric(samples, 'nvo3_packet_in_seconds_sum')
                         - B.metric(samples0, 'nvo3_packet_in_seconds_sum'))
                        / max(1, n))}
    r['memory'] = {'rss_before_mib': round(rss0 / 1024, 1),
                   'rss_after_mib': round(rss1 / 1024, 1),
                   # 1 s after the run, before the settling heap trim
                   'rss_unsettled_mib': round(rss_busy / 1024, 1),
                   'bytes_per_entry_unsettled': round(
                       (rss_busy - rss0) * 1024 / max(1, entries)),
                   'heap_trim': trim,
                   'entries_added': entries, 'flows_added': flows,
                   'bytes_per_entry': round(grown / max(1, entries)),
                   'bytes_per_flow': round(grown / max(1, flows))}
    r['cpu'] = {'app_s': round(cpu_app, 2), 'sim_s': round(cpu_sim, 2),
                'app_busy': round(cpu_app / max(1e-9, attach_s), 3),
                'app_ms_per_attach': round(1000.0 * cpu_app / max(1, n), 3)}
    r['rest'] = rest
    # What REST waits for: the event loop's lateness, and full collections.
    lag0 = B.histogram(samples0, 'nvo3_event_loop_lag_seconds')
    lag1 = B.histogram(samples, 'nvo3_event_loop_lag_seconds')
    full = 'nvo3_gc_pause_seconds'
    gc0 = B.histogram(samples0, full, 'generation=2')
    gc1 = B.histogram(samples, full, 'generation=2')
    r['stalls'] = {
        'loop_lag_p50_ms_bucket': B.ms(B.histogram_quantile(lag0, lag1, 0.5)),
        'loop_lag_p99_ms_bucket': B.ms(B.histogram_quantile(lag0, lag1,
                                                            0.99)),
        'full_gcs': (gc1[-1][1] - dict(gc0).get(gc1[-1][0], 0.0))
        if gc1 else 0,
        'full_gc_max_ms_bucket': B.ms(B.histogram_quantile(gc0, gc1, 1.0)),
        'young_gc_max_ms_bucket': {
            gen: B.ms(B.histogram_quantile(
                B.histogram(samples0, full, 'generation=%d' % gen),
                B.histogram(samples, full, 'generation=%d' % gen), 1.0))
            for gen in (0, 1)},
        'young_gcs_over_25ms': sum(
            _over(B.histogram(samples0, full, 'generation=%d' % gen),
                  B.histogram(samples, full, 'generation=%d' % gen), 0.025)
            for gen in (0, 1)),
        'young_gcs': sum(
            _over(B.histogram(samples0, full, 'generation=%d' % gen),
                  B.histogram(samples, full, 'generation=%d' % gen), 0.0)
            for gen in (0, 1)),
        'full_gc_seconds': round(
            samples.get(full + '_sum{generation=2}', 0.0)
            - samples0.get(full + '_sum{generation=2}', 0.0), 3)}
    if prof.get('result'):
        raw, own, total, count = prof['result']
        r['profile'] = {'raw': raw, 'samples': count, 'top_own': own,
                        'top_total': total}


def _over(before, after, bound):
    """Observations above ``bound`` (a bucket edge) between two scrapes."""
    old = dict(before)
    total = after[-1][1] - old.get(after[-1][0], 0.0) if after else 0.0
    below = sum(c - old.get(b, 0.0) for b, c in after if b == bound)
    return int(total - below) if bound else int(total)


def _verdict(value, target, lower_is_better):
    if value is None:
        return 'n/a'
    ok = value <= target if lower_is_better else value >= target
    return 'meets' if ok else 'MISSES'


def _report(r):
    p, a, f = r['params'], r['attach'], r['flow_mods']
    m, rest, pi = r['memory'], r['rest'], r['packet_in']
    rows = [
        ('NVEs / tenant systems / VN size', '%d / %d / %d' % (
            p['nves'], p['tenants'], p['vn_size'])),
        ('app start / all NVEs in sync', '%.1f s / %.1f s' % (
            r['app_start_s'], r['connect_all_s'])),
        ('attachments done / failed', '%d / %d' % (a['done'], a['failed'])),
        ('attachments/s sustained (overall)', '%s (%s)  [target >= %d: %s]'
         % (a['per_s_sustained'], a['per_s_overall'],
            TARGETS['attach_per_s'], _verdict(a['per_s_sustained'],
                                              TARGETS['attach_per_s'],
                                              False))),
        ('attach latency p50 / p99', '%s / %s ms' % (
            a['latency_p50_ms'], a['latency_p99_ms'])),
        ('flow-mods sent (per s)', '%d (%s/s)' % (f['app_sent'], f['per_s'])),
        ('barriers per attachment', f.get('barriers_per_attach')),
        ('packet-in handling p50 / p99 (bucket)', '<= %s / <= %s ms (mean '
         '%s ms)' % (pi['p50_ms_bucket'], pi['p99_ms_bucket'],
                     pi['mean_ms'])),
        ('app CPU per attachment', '%s ms (busy %.0f %%)' % (
            r['cpu']['app_ms_per_attach'], 100 * r['cpu']['app_busy'])),
        ('RSS before / after (1 s after the run)', '%.1f / %.1f MiB '
         '(%.1f MiB)' % (m['rss_before_mib'], m['rss_after_mib'],
                         m.get('rss_unsettled_mib', m['rss_after_mib']))),
        ('heap trim when quiet (given back, time)', '%s MiB, %s ms' % (
            (m.get('heap_trim') or {}).get('mib'),
            (m.get('heap_trim') or {}).get('ms'))),
        ('memory per mapping entry, settled (1 s after the run)',
         '%d bytes (%s)  [target <= %d: %s]' % (
            m['bytes_per_entry'], m.get('bytes_per_entry_unsettled'),
            TARGETS['bytes_per_entry'],
            _verdict(m['bytes_per_entry'], TARGETS['bytes_per_entry'],
                     True))),
        ('memory per flow held', '%d bytes (%d flows)' % (
            m['bytes_per_flow'], m['flows_added'])),
    ]
    for kind in ('mappings', 'nve'):
        x = rest[kind]
        rows.append(('REST %s p50 / p99 (n, bytes)' % kind,
                     '%s / %s ms (%d, %d)' % (x['p50_ms'], x['p99_ms'],
                                              x['count'], x['mean_bytes'])))
    rows.append(('REST all p99', '%s ms  [target < %d: %s], %d errors' % (
        rest['all']['p99_ms'], TARGETS['rest_p99_ms'],
        _verdict(rest['all']['p99_ms'], TARGETS['rest_p99_ms'], True),
        rest['all']['errors'])))
    st = r['stalls']
    rows.append(('event-loop lag p50 / p99 (bucket)', '<= %s / <= %s ms' % (
        st['loop_lag_p50_ms_bucket'], st['loop_lag_p99_ms_bucket'])))
    rows.append(('full GCs (longest, total)', '%d (<= %s ms, %s s)' % (
        st['full_gcs'], st['full_gc_max_ms_bucket'],
        st['full_gc_seconds'])))
    rows.append(('young GCs (over 25 ms; longest gen 0 / 1)',
                 '%d (%d; <= %s / <= %s ms)' % (
                     st['young_gcs'], st['young_gcs_over_25ms'],
                     st['young_gc_max_ms_bucket'][0],
                     st['young_gc_max_ms_bucket'][1])))
    comp = r.get('compactions_ms') or []
    rows.append(('journal compactions (longest)', '%d (%s ms)' % (
        len(comp), max(comp) if comp else '-')))
    rows.append(('controller log problems', len(r['log_problems'])))
    B.table(rows, 'capacity benchmark')
    if r.get('profile'):
        print('py-spy: %d samples (%s); top frames by own time:' % (
            r['profile']['samples'], r['profile']['raw']))
        for pct, frame in r['profile']['top_own'][:12]:
            print('  %5.1f %%  %s' % (pct, frame))
        print('top frames by total time:')
        for pct, frame in r['profile']['top_total'][:15]:
            print('  %5.1f %%  %s' % (pct, frame))


if __name__ == '__main__':
    sys.exit(main())
