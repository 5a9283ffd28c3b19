"""This app beside OVN, in one run on one machine: bring-up and migration.

One command runs, one after the other on the same machine:

1. this app's attach benchmark (attach_bench.py: a new VM's first frame
   -> a VM on every other member NVE reaches it; ``--rounds``);
2. this app's migration benchmark (migrate_bench.py, without its own
   anchor run: announced and unannounced live migrations under a 1 ms
   prober from a third NVE; ``--migrations`` of each kind);
3. the OVN anchor script (``bash DIR/run.sh 3 4``, OVN 23.03 on the same
   kind of testbed: namespaces, one ovs-vswitchd per hypervisor, userspace
   datapath), with its bring-up prober and its migration prober at the
   same interval as ours (``PROBE_I``, ``PING_I``), VXLAN like ours
   (``ENCAP=vxlan``), and as many migrations of each of its modes as ours
   (``MOVES``, ``MBB_MOVES``).

It prints, and writes to benchmarks/results/side_by_side.json, the ratios
ours / OVN (below 1: this app is faster or loses less):

* bring-up: our attach-to-reachability p50 against OVN's bring-up p50
  counted from when ovs-vswitchd has the VM's port (``ovs-vsctl add-port``
  returned), the closest OVN figure to ours; OVN's from the bind and its
  total (from ``ovn-nbctl lsp-add``) are shown beside it;
* migration: our unannounced move's outage p50 against OVN's plain
  (break-before-make) and make-before-break outages, and our announced
  migration's probes lost against OVN's make-before-break.

The methods, and where they still differ, are written into the JSON
(``methods``) and benchmarks/README.md ("side by side").  The anchor
directory is not part of this repository: it is an argument, and a
missing one (or one without run.sh) is a clear error before anything runs.

Usage (root): .venv/bin/python benchmarks/side_by_side.py \\
    --anchor /work/shared/anchors/ovn [--rounds 30] [--migrations 10]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import benchenv  # noqa: E402
from migrate_bench import MIG_LINE  # noqa: E402
from nvo3_ryu_app.testbed import prober  # noqa: E402

DEFAULT_OUT = os.path.join(HERE, 'results', 'side_by_side.json')
ANCHOR_OUT = '/tmp/ovnbench/out'   # where the anchor script writes
ANCHOR_LOG = os.path.join(HERE, 'results', 'side_by_side-anchor.log')
# "phase 1 hv2 vm1 -> 192.168.1.11: total 44 ms, from OVS bind 31 ms,
# after bind returned 9 ms" (run.sh's bringup.log)
BRING_LINE = re.compile(r'^phase (\d+) hv(\d+) vm(\d+) -> (\S+): total (\S+) '
                        r'ms, from OVS bind (\S+) ms, after bind returned '
                        r'(\S+) ms')

METHODS = {
    'prober': 'Both sides: ICMP echo from a raw socket on a fixed send '
              'schedule (absolute deadlines), kernel receive timestamps, '
              'run SCHED_FIFO priority 10 (this app: testbed/prober.py; '
              'OVN: the anchor\'s probe.py), the same interval.',
    'bring_up': 'This app: from the new VM\'s first frame on the wire '
                '(its announcement, captured on its NVE\'s access port) to '
                'the first echo reply at the slowest of the probers on the '
                'VN\'s three other NVEs, which probe the new VM. OVN: from '
                'ovs-vsctl add-port returning (ovs-vswitchd has the port; '
                'the VM has been probing since before) to the first echo '
                'reply the new VM gets from a VM on another hypervisor; '
                'its figures from the bind and from lsp-add add its own '
                'command-line and NB steps. Neither counts creating the '
                'VM\'s interface.',
    'migration': 'This app: a live switch-over in the guest (addresses and '
                 'neighbours onto the new vNIC, off the old one, the old '
                 'vNIC down, one gratuitous ARP from the new one; the '
                 'destination port bound beforehand), unannounced (learned) '
                 'or announced (POST .../migrations, flows acknowledged '
                 'before the switch-over). Outage: summed time from the '
                 'first lost probe to the next answered one. OVN: the old '
                 'port unplugged (ovs-vsctl --no-wait del-port) and the old '
                 'NIC down, then a pre-created NIC with the same MAC and IP '
                 'up at the destination (bound there beforehand in '
                 'make-before-break, bound after it in break-before-make); '
                 'no gratuitous ARP (the moved VM re-resolves by ARP); '
                 'outage: lost probes x interval, its testbed\'s own steps '
                 'between unplug and bind included (reported beside it).',
    'differences': 'Still different: OVN\'s bring-up prober sends from the '
                   'new VM, ours probe it from the remote VMs; OVN\'s first '
                   'VM on a chassis costs more (its rows "later VMs" leave '
                   'those out); OVN\'s migration outage includes its '
                   'unplug->bind commands; OVN runs 3 hypervisors x 8 VMs, '
                   'our attach testbed 5 NVEs (4 in the VN) and our '
                   'migration testbed 3 NVEs; each side runs alone, one '
                   'after the other, so the machine\'s load can differ '
                   'between them (recorded for each step).',
}


def anchor_dir(path):
    """The anchor directory's run.sh, or a clear error."""
    if not path:
        raise SystemExit('side_by_side.py needs --anchor DIR: the directory '
                         'of the OVN anchor script (run.sh), which is not '
                         'part of this repository')
    script = os.path.join(path, 'run.sh')
    if not os.path.isdir(path):
        raise SystemExit('--anchor %s: no such directory (the OVN anchor is '
                         'not part of this repository; give the directory '
                         'that holds its run.sh)' % path)
    if not os.path.isfile(script):
        raise SystemExit('--anchor %s: no run.sh in it' % path)
    return script


def stats(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {'p50': round(prober.percentile(values, 0.5), 3),
            'p95': round(prober.percentile(values, 0.95), 3),
            'mean': round(statistics.mean(values), 3),
            'min': round(values[0], 3), 'max': round(values[-1], 3),
            'n': len(values)}


def ratio(ours, theirs):
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 3)


def run_ours(name, cmd, log):
    """One of this app's benchmarks as a subprocess (its own testbed, torn
    down when it ends); returns its JSON and its exit status."""
    print('== %s: %s' % (name, ' '.join(cmd)), flush=True)
    load = benchenv.loadavg()
    t0 = time.monotonic()
    with open(log, 'w', encoding='utf-8') as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh,
                              stderr=subprocess.STDOUT, check=False)
    out = cmd[cmd.index('--out') + 1]
    data = None
    if os.path.exists(out):
        with open(out, encoding='utf-8') as fh:
            data = json.load(fh)
    return data, {'returncode': proc.returncode,
                  'elapsed_s': round(time.monotonic() - t0, 1),
                  'loadavg': [load, benchenv.loadavg()]}


def parse_bringup(text):
    rows = []
    for line in text.splitlines():
        m = BRING_LINE.match(line.strip())
        if not m or m.group(4) == '-':
            continue
        phase, hv, vm, _target, total, bind, after = m.groups()
        try:
            values = [float(total), float(bind), float(after)]
        except ValueError:           # FAIL: no reply in 10 s
            values = [None, None, None]
        rows.append({'phase': int(phase), 'hv': int(hv), 'vm': int(vm),
                     'total_ms': values[0], 'from_bind_ms': values[1],
                     'after_bind_ms': values[2]})
    return rows


def parse_migrations(text):
    rows = []
    for line in text.splitlines():
        m = MIG_LINE.match(line)
        if m:
            mode, _src, _dst, lost, outage, gap, bind_reply, unplug_reply, \
                unplug_bind, _send_gap = m.groups()
            rows.append({'mode': mode, 'lost': int(lost),
                         'outage_ms': int(outage), 'longest_gap_ms': int(gap),
                         'bind_to_reply_ms': int(bind_reply),
                         'unplug_to_reply_ms': int(unplug_reply),
                         'unplug_to_bind_ms': int(unplug_bind)})
    return rows


def anchor_busy():
    """Why the anchor cannot run now, or None: it keeps its state in
    fixed places (its run directory, namespaces ovnb-*), and a second run
    would clean up the first one's processes as leftovers."""
    if os.path.exists(os.path.dirname(ANCHOR_OUT) + '/run'):
        return ('%s/run exists: another OVN anchor run is under way (or '
                'one was killed: remove it once none runs)'
                % os.path.dirname(ANCHOR_OUT))
    try:
        names = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                               text=True, check=False).stdout
    except OSError:
        return None
    if any(line.startswith('ovnb-') for line in names.splitlines()):
        return 'namespaces ovnb-* exist: another OVN anchor run is under way'
    return None


def run_anchor(args, script):
    env = dict(os.environ, PROBE_I=repr(args.interval),
               PING_I=repr(args.interval), MOVES=str(args.migrations),
               MBB_MOVES=str(args.migrations), ENCAP='vxlan',
               GROW=str(args.anchor_vms))
    cmd = ['bash', script, '3', str(args.anchor_vms)]
    print('== OVN anchor: %s (PROBE_I=PING_I=%s, MOVES=MBB_MOVES=%d, '
          'ENCAP=vxlan)' % (' '.join(cmd), env['PING_I'], args.migrations),
          flush=True)
    load = benchenv.loadavg()
    t0 = time.monotonic()
    with open(ANCHOR_LOG, 'w', encoding='utf-8') as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh,
                              stderr=subprocess.STDOUT,
                              timeout=args.anchor_timeout, check=False)

    def read(name):
        path = os.path.join(ANCHOR_OUT, name)
        if not os.path.exists(path):
            return ''
        with open(path, encoding='utf-8') as fh:
            return fh.read()
    report = read('results.txt')
    bring = parse_bringup(read('bringup.log'))
    migs = parse_migrations(report)
    version = re.search(r'^OVN (\S+), OVS (\S+)', report, re.M)
    later = [r for r in bring if r['vm'] > 1]
    out = {'returncode': proc.returncode,
           'log': os.path.relpath(ANCHOR_LOG, ROOT),
           'command': 'PROBE_I=%s PING_I=%s MOVES=%d MBB_MOVES=%d ENCAP=vxlan '
                      'GROW=%d bash %s' % (env['PROBE_I'], env['PING_I'],
                                           args.migrations, args.migrations,
                                           args.anchor_vms, ' '.join(cmd[1:])),
           'elapsed_s': round(time.monotonic() - t0, 1),
           'loadavg': [load, benchenv.loadavg()],
           'ovn': version.group(1) if version else None,
           'ovs': version.group(2) if version else None,
           'bring_up': {
               'all': {k: stats([r[k] for r in bring])
                       for k in ('total_ms', 'from_bind_ms', 'after_bind_ms')},
               'later_vms': {k: stats([r[k] for r in later])
                             for k in ('total_ms', 'from_bind_ms',
                                       'after_bind_ms')},
               'failed': sum(1 for r in bring if r['total_ms'] is None),
               'rows': bring},
           'per_migration': migs}
    for mode in ('bbb', 'mbb'):
        sel = [r for r in migs if r['mode'] == mode]
        out[mode] = {'lost': stats([r['lost'] for r in sel]),
                     'outage_ms': stats([r['outage_ms'] for r in sel]),
                     'longest_gap_ms': stats([r['longest_gap_ms']
                                              for r in sel]),
                     'unplug_to_bind_ms': stats([r['unplug_to_bind_ms']
                                                 for r in sel]),
                     'lost_total': sum(r['lost'] for r in sel)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--anchor', help='directory of the OVN anchor (run.sh, '
                    'probe.py); not part of this repository')
    ap.add_argument('--rounds', type=int, default=30,
                    help='attachments of this app')
    ap.add_argument('--migrations', type=int, default=10,
                    help='migrations of each kind, on each side')
    ap.add_argument('--interval', type=float, default=0.001,
                    help='prober interval (s), both sides')
    ap.add_argument('--anchor-vms', type=int, default=4,
                    help='OVN VMs per hypervisor in each of its two phases')
    ap.add_argument('--anchor-timeout', type=float, default=1800.0)
    ap.add_argument('--out', default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    script = anchor_dir(args.anchor)
    if shutil.which('bash') is None:
        raise SystemExit('bash is needed for the anchor')
    busy = anchor_busy()
    if busy:
        raise SystemExit(busy)
    started = time.monotonic()
    load_start = benchenv.loadavg()
    work = tempfile.mkdtemp(prefix='nvo3-side-')
    py = sys.executable
    attach, attach_run = run_ours('attach', [
        py, 'benchmarks/attach_bench.py', '--rounds', str(args.rounds),
        '--request-rounds', '0', '--interval', repr(args.interval),
        '--out', os.path.join(work, 'attach.json')],
        os.path.join(work, 'attach.log'))
    migrate, migrate_run = run_ours('migrate', [
        py, 'benchmarks/migrate_bench.py', '--migrations',
        str(args.migrations), '--interval', repr(args.interval),
        '--out', os.path.join(work, 'migrate.json')],
        os.path.join(work, 'migrate.log'))
    busy = anchor_busy()
    if busy:                     # started meanwhile by someone else
        raise SystemExit(busy)
    ovn = run_anchor(args, script)

    ours = {'attach': None, 'announced': None, 'unannounced': None}
    if attach:
        s = attach['summary']
        ours['attach'] = {k: s.get(k) for k in (
            'attachments', 'reached', 'attach_to_reach_p50_ms',
            'attach_to_reach_p95_ms', 'attach_to_reach_max_ms',
            'app_convergence_p50_ms', 'event_lag_p50_ms',
            'store_fsync_p50_ms')}
    if migrate:
        for kind in ('announced', 'unannounced'):
            m = migrate[kind]
            ours[kind] = {'lost': m['lost'], 'outage_ms': m['outage_ms'],
                          'longest_gap_ms': m['longest_gap_ms'],
                          'lost_total': m['lost_total']}
    ours['runs'] = {'attach': attach_run, 'migrate': migrate_run}
    ours['errors'] = [x for x in (
        attach and attach.get('app_problems'),
        migrate and migrate.get('error'),
        migrate and migrate.get('app_problems')) if x]

    reach = (ours['attach'] or {}).get('attach_to_reach_p50_ms')
    bring = ovn['bring_up']['all']
    later = ovn['bring_up']['later_vms']
    un = ((ours['unannounced'] or {}).get('outage_ms') or {}).get('p50')
    ann_lost = (ours['announced'] or {}).get('lost_total')

    def p50(block, key):
        return ((block or {}).get(key) or {}).get('p50')
    ratios = {
        'bring_up_vs_ovn_after_bind': ratio(reach, p50(bring, 'after_bind_ms')),
        'bring_up_vs_ovn_after_bind_later_vms': ratio(
            reach, p50(later, 'after_bind_ms')),
        'bring_up_vs_ovn_from_bind': ratio(reach, p50(bring, 'from_bind_ms')),
        'bring_up_vs_ovn_total': ratio(reach, p50(bring, 'total_ms')),
        'unannounced_outage_vs_ovn_bbb': ratio(un, p50(ovn['bbb'],
                                                       'outage_ms')),
        'unannounced_outage_vs_ovn_mbb': ratio(un, p50(ovn['mbb'],
                                                       'outage_ms')),
        'announced_lost_vs_ovn_mbb_lost': ratio(ann_lost,
                                                ovn['mbb']['lost_total']),
    }
    result = {
        'benchmark': 'side by side', 'date': benchenv.now_iso(),
        'command': '.venv/bin/python benchmarks/side_by_side.py --anchor %s'
                   % args.anchor + (' --rounds %d' % args.rounds
                                    if args.rounds != 30 else '') +
                   (' --migrations %d' % args.migrations
                    if args.migrations != 10 else ''),
        'prober_interval_ms': args.interval * 1000.0,
        'ours': ours, 'ovn': ovn, 'ratios': ratios, 'methods': METHODS,
        'target_attach_p50_ms': 10.0,
        'attach_below_ovn': reach is not None and
        p50(bring, 'after_bind_ms') is not None and
        reach < p50(bring, 'after_bind_ms'),
        'loadavg': [load_start, benchenv.loadavg()],
        'machine': benchenv.machine(),
        'elapsed_s': round(time.monotonic() - started, 1),
        'percentiles': 'linear interpolation between closest ranks'}
    benchenv.write_json(args.out, result)
    shutil.rmtree(work, ignore_errors=True)

    print()
    print('prober every %g ms on both sides, SCHED_FIFO' % (
        args.interval * 1000.0))
    b = bring or {}
    print('bring-up p50: ours %s ms; OVN %s ms once ovs-vswitchd has the '
          'port (%s ms later VMs), %s ms from the bind, %s ms in all'
          % (reach, p50(bring, 'after_bind_ms'),
             p50(later, 'after_bind_ms'), p50(b, 'from_bind_ms'),
             p50(b, 'total_ms')))
    print('migration outage p50: ours unannounced %s ms, announced %s probes '
          'lost in all; OVN break-before-make %s ms, make-before-break %s ms '
          '(%s probes lost in all)' % (
              un, ann_lost, p50(ovn['bbb'], 'outage_ms'),
              p50(ovn['mbb'], 'outage_ms'), ovn['mbb']['lost_total']))
    for key, value in ratios.items():
        print('  ratio %-42s %s' % (key, value))
    print('written to %s' % os.path.relpath(args.out, ROOT))
    ok = attach_run['returncode'] == 0 and migrate_run['returncode'] == 0 \
        and ovn['returncode'] == 0
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
