"""Restart reconciliation at scale, against simulated NVEs.

The app (real osken-manager, persistent store with fsync) is configured
with ``--nves`` NVEs (VTEPs, bound access ports) in VNs of ``--vn-size``
members; ofswitch_sim.py connects them all, attaches ``--tenants`` tenant
systems by packet-ins and waits until every NVE is in sync.  Then, for each
of ``--restarts`` rounds, the app is killed with SIGKILL and started again,
and the benchmark measures:

* time from the start of the new process to its OpenFlow port listening,
  to every NVE connected, and to every NVE reconciled (``/v1/sync``: in
  sync, by its stamp or by a dump compared and all differences
  acknowledged);
* time to every NVE *verified* (dumped in full once by the background
  verification that follows a stamp match, ``stamp_verify_interval``
  apart) and what those dumps repaired (nothing changed: 0);
* NVEs in sync by their stamp, NVEs dumped (stamp missing or different),
  stamp requests and flow dumps the switches answered;
* flow-mods the restart sent (the app's counter and what the simulated
  switches received; nothing changed, so this should be 0) and whether any
  flow in the switches was re-added (its age would restart);
* the store size per mapping entry (bytes in state_dir / entries).

Usage::

    python benchmarks/reconcile_bench.py            # 100 NVEs, 10,000 TS
    python benchmarks/reconcile_bench.py --tenants 100000 \
        --out reconcile-100k.json                   # 100 NVEs, 100,000 TS
    python benchmarks/reconcile_bench.py --quick    # 20 NVEs, 1,000 TS
    python benchmarks/reconcile_bench.py --no-stamps   # every NVE dumped

Prints a table and writes benchmarks/results/reconcile.json (or
reconcile-quick.json, or ``--out``).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib as B  # noqa: E402
import ofswitch_sim as S  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--nves', type=int, default=100)
    ap.add_argument('--tenants', type=int, default=10000)
    ap.add_argument('--vn-size', type=int, default=10)
    ap.add_argument('--ports', type=int, default=4)
    ap.add_argument('--restarts', type=int, default=3)
    ap.add_argument('--window', type=int, default=500,
                    help='attachments outstanding at most while attaching')
    ap.add_argument('--no-fsync', action='store_true',
                    help='store_fsync = false (default: fsync every commit)')
    ap.add_argument('--no-stamps', action='store_true',
                    help='stamp_interval = 0: every NVE is dumped on '
                         'reconnection (what a restart costs without stamps)')
    ap.add_argument('--verify-interval', type=float, default=0.2,
                    help='stamp_verify_interval of the app (seconds between '
                         'two verifying dumps after a restart)')
    ap.add_argument('--out', default=None,
                    help='results file name (default reconcile.json)')
    ap.add_argument('--quick', action='store_true',
                    help='20 NVEs, 1,000 tenant systems, 2 restarts')
    ap.add_argument('--timeout', type=float, default=600.0,
                    help='seconds any one phase may take')
    args = ap.parse_args(argv)
    if args.quick:
        args.nves, args.tenants, args.restarts = 20, 1000, 2
    return args


def main(argv=None):
    args = parse_args(argv)
    B.exit_on_sigterm()
    config, vn_of = S.fleet(args.nves, args.vn_size, args.ports)
    extra = ['audit_interval = 0',
             'stamp_verify_interval = %s' % args.verify_interval]
    if args.no_fsync:
        extra.append('store_fsync = false')
    if args.no_stamps:
        extra.append('stamp_interval = 0')
    result = {'params': {k: v for k, v in vars(args).items()},
              'env': B.env(), 'app_ini': extra}
    t = time.monotonic()
    ctl = B.start_app(config, '\n'.join(extra))
    result['first_start_s'] = round(time.monotonic() - t, 3)
    sim = None
    try:
        sim = S.SimProcess(ctl.of_port, sorted(vn_of), args.ports,
                           reconnect_interval=0.1)
        t = time.monotonic()
        B.wait_sync(ctl, args.nves, args.timeout, check=sim.check)
        result['connect_all_s'] = round(time.monotonic() - t, 3)

        # -- attach every tenant system --
        tenants = S.tenants(args.tenants, vn_of, args.ports)
        samples0 = B.metrics(ctl)
        t = time.monotonic()
        sim.attach(tenants, 0.0, args.window)
        status = sim.wait(lambda s: s['attach_done'] + s['attach_failed']
                          >= args.tenants, args.timeout, 'attachments',
                          interval=0.2)
        B.wait_sync(ctl, args.nves, args.timeout, check=sim.check)
        attach_s = time.monotonic() - t
        samples = B.metrics(ctl)
        entries = B.metric_sum(samples, 'nvo3_mapping_entries')
        result['attach'] = {
            'tenants': args.tenants, 'done': status['attach_done'],
            'failed': status['attach_failed'],
            'seconds': round(attach_s, 3),
            'per_s': round(status['attach_done'] / attach_s, 1),
            'flow_mods': B.metric(samples, 'nvo3_flow_mods_sent_total')
            - B.metric(samples0, 'nvo3_flow_mods_sent_total'),
            'switch_flows': status['flows'], 'mapping_entries': entries}
        files = B.dir_bytes(ctl.state_dir)
        live = sum(v for k, v in files.items()
                   if k in ('snapshot.msgpack', 'journal.msgpack'))
        result['store'] = {
            'files': files, 'entries': entries,
            'bytes_per_entry': round(live / max(1, entries), 1),
            'bytes_per_entry_with_prev': round(
                sum(files.values()) / max(1, entries), 1)}
        result['rss_mib_before_restart'] = round(B.rss_kib(ctl.pid) / 1024,
                                                 1)

        # -- kill and restart --
        rounds = []
        for _ in range(args.restarts):
            _wait_stamped(sim, args)
            rounds.append(_restart(ctl, sim, args))
        result['restarts'] = rounds
        result['log_problems'] = ctl.scan_log()
    finally:
        if sim is not None:
            sim.close()
        ctl.close()
    _report(result)
    name = args.out or ('reconcile-quick.json' if args.quick
                        else 'reconcile.json')
    print('wrote', B.write_json(name, result))
    return 0


def _wait_stamped(sim, args):
    """Before a kill: every NVE carries a stamp, and the last changes had
    ``stamp_interval`` (1 s) and more to be stamped too (a stale stamp
    would only show as NVEs dumped)."""
    if args.no_stamps:
        return
    deadline = time.monotonic() + args.timeout
    while sim.call('stamped') < args.nves:
        if time.monotonic() > deadline:
            raise TimeoutError('NVEs not stamped')
        time.sleep(0.1)
    time.sleep(2.5)


def _restart(ctl, sim, args):
    ages_before = sim.call('flow_ages')
    ctl.kill()
    killed = time.monotonic()
    sim.wait(lambda s: s['up'] == 0, 30, 'all connections dropped',
             interval=0.02)
    sim.call('reset_counts')
    t0 = time.monotonic()
    ctl.start(timeout=args.timeout, wait_for=('of',))
    listening = time.monotonic() - t0
    connected = None
    while True:
        state = B.sync_state(ctl)
        now = time.monotonic() - t0
        if state is not None:
            if connected is None and state[0] >= args.nves:
                connected = now
            if state[1] >= args.nves:
                break
        if now > args.timeout:
            raise TimeoutError('not reconciled after restart: %s' % (state,))
        time.sleep(0.02)
    reconciled = time.monotonic() - t0
    samples = B.metrics(ctl)
    status = sim.status()
    ages_after = sim.call('flow_ages')
    waited = time.monotonic() - killed
    verified = _wait_verified(ctl, args)
    verified_s = None if verified is None else verified - t0
    after = B.metrics(ctl)
    counts_after = sim.status()['counts']
    # A flow re-added during the restart is younger than the restart.
    readded = sum(1 for dpid, (young, _) in ages_after.items()
                  if young < waited - 0.5 and ages_before.get(dpid, (0,))[0]
                  >= 0.5)
    return {
        'listening_s': round(listening, 3),
        'all_connected_s': round(connected if connected is not None
                                 else reconciled, 3),
        'reconciled_s': round(reconciled, 3),
        'app_flow_mods': B.metric(samples, 'nvo3_flow_mods_sent_total'),
        'app_sync_repairs': B.metric(samples, 'nvo3_sync_repairs_total'),
        'switch_flow_mods': status['counts']['flow_mods'],
        'switch_meter_mods': status['counts']['meter_mods'],
        'switch_flow_dumps': status['counts']['flow_stats'],
        'nves_with_readded_flows': readded,
        'switch_flows': status['flows'],
        'stamp_matches': B.metric(samples, 'nvo3_stamp_matches_total'),
        'stamp_mismatches': B.metric(samples,
                                     'nvo3_stamp_mismatches_total'),
        'switch_stamp_requests': status['counts'].get('stamp_requests', 0),
        'verified_s': None if verified_s is None else round(verified_s, 3),
        'verify_audits': B.metric(after, 'nvo3_audits_total'),
        'verify_repairs': B.metric(after, 'nvo3_audit_repairs_total'),
        'flow_mods_after_verified': B.metric(
            after, 'nvo3_flow_mods_sent_total'),
        'switch_flow_dumps_after_verified': counts_after['flow_stats'],
        'rss_mib': round(B.rss_kib(ctl.pid) / 1024, 1)}


def _verified(ctl):
    try:
        nves = B.get(ctl, '/v1/sync', timeout=30)['nves']
    except (OSError, ValueError):
        return False
    return all(s.get('verified', True) for s in nves.values()
               if s['connected'])


def _wait_verified(ctl, args):
    """When every connected NVE was dumped once since the restart (the
    verification of a stamp match); None if it did not happen in time."""
    deadline = time.monotonic() + args.timeout
    while not _verified(ctl):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)
    return time.monotonic()


def _report(r):
    a, s = r['attach'], r['store']
    rows = [('NVEs / tenant systems', '%d / %d' % (r['params']['nves'],
                                                   r['params']['tenants'])),
            ('attach: done / failed', '%d / %d' % (a['done'], a['failed'])),
            ('attach: seconds (rate)', '%.1f s (%.0f/s)' % (a['seconds'],
                                                           a['per_s'])),
            ('flows held by the switches', a['switch_flows']),
            ('store: bytes per mapping entry', '%.1f (%.1f with .prev)' % (
                s['bytes_per_entry'], s['bytes_per_entry_with_prev'])),
            ('store files', s['files']),
            ('app RSS before restart', '%.1f MiB' % r['rss_mib_before_restart'])]
    for i, x in enumerate(r['restarts']):
        rows.append(('restart %d: listen / connected / reconciled' % (i + 1),
                     '%.2f / %.2f / %.2f s' % (x['listening_s'],
                                               x['all_connected_s'],
                                               x['reconciled_s'])))
        rows.append(('restart %d: flow-mods app / switches, repairs' % (i + 1),
                     '%d / %d, %d (re-added on %d NVEs)' % (
                         x['app_flow_mods'], x['switch_flow_mods'],
                         x['app_sync_repairs'],
                         x['nves_with_readded_flows'])))
        rows.append(('restart %d: NVEs by stamp / dumped; stamp requests, '
                     'dumps' % (i + 1), '%d / %d; %d, %d' % (
                         x['stamp_matches'], x['stamp_mismatches'],
                         x['switch_stamp_requests'],
                         x['switch_flow_dumps'])))
        rows.append(('restart %d: verified (all dumped once) at; audits, '
                     'repairs, flow-mods by then' % (i + 1),
                     '%s s; %d, %d, %d' % (
                         x['verified_s'], x['verify_audits'],
                         x['verify_repairs'], x['flow_mods_after_verified'])))
    recon = sorted(x['reconciled_s'] for x in r['restarts'])
    rows.append(('reconciled: median', '%.2f s' % recon[len(recon) // 2]))
    rows.append(('controller log problems', len(r['log_problems'])))
    B.table(rows, 'reconcile benchmark')


if __name__ == '__main__':
    sys.exit(main())
