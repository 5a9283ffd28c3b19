"""A cluster of authorities on etcd: failover, the etcd write path, division.

Three parts, each optional:

* **failover** (*testbed*): ``topologies/cluster.yaml`` under a 3-member
  etcd and three instances (testbed/cluster.py's ClusterLab), every NVE
  pointed at every instance.  Each round: the VM ``x1`` on nve1 leaves (its
  link goes down and is withdrawn), a 10 ms fixed-schedule prober runs
  from ``a1`` (nve1) to ``b1`` (nve2), nve1's master is killed (SIGKILL),
  and the script measures the time until every NVE has a master the switch
  confirmed (``GET /v1/cluster`` of the survivors, polled every 20 ms) and
  until ``x1``, brought up right after, answers a ping from ``b1``'s
  address (learned by nve1's new master: a VM attaching right after the
  kill); probes lost; then the killed instance is restarted and the script
  counts the flow-mods it sent while it rejoined and took its share back
  (with identical views: none).
* **attach** (*simulated NVEs*, benchmarks/ofswitch_sim.py): the same fleet
  and tenant systems attached by packet-ins, with one instance on its
  journal (fsync on), then with 1, 2 and 3 instances on a 3-member etcd.
  With N instances the VNs are dealt out among them and each instance gets
  a simulator holding its VNs' NVEs, so each NVE has one channel, to the
  instance that masters it, and packet-in handling divides by ownership,
  while every instance still applies every record the others write (its
  live copy).  An attachment is done when every member NVE of its VN has
  its flows and answered the barrier after them.  Figures: attachments per
  second over the whole run, attach latency p50/p99 (packet-in to
  acknowledged, from the simulators), CPU seconds per attachment of each
  instance and of etcd.  On a 2-core machine (instances, simulators and
  three etcd members share it) the total cannot grow with N; the CPU an
  instance spends per attachment it handles, and per attachment it only
  replicates, is what tells what a larger machine would give.
* **reach** (*testbed*): attach-to-reachability on real OVS
  (benchmarks/attach_bench.py, announced by an ARP reply, its topology),
  one instance on its journal against one instance on a 3-member etcd,
  back to back: what the etcd write path adds before a new VM is reachable.
* **etcd bytes per mapping entry**: after the single-instance etcd run,
  the keys and values under the cluster's ``rec/`` prefix, per record kind,
  divided by the mapping entries.

Usage::

    .venv/bin/python benchmarks/cluster_bench.py            # ~8 min
    .venv/bin/python benchmarks/cluster_bench.py --quick    # ~3 min
    .venv/bin/python benchmarks/cluster_bench.py --no-failover

Prints tables and writes benchmarks/results/cluster.json (cluster-quick.json).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib as B  # noqa: E402
import ofswitch_sim as S  # noqa: E402

from nvo3_ryu_app.storage.etcd import EtcdClient  # noqa: E402
from nvo3_ryu_app.testbed import prober as prober_mod  # noqa: E402
from nvo3_ryu_app.testbed.cluster import ClusterLab  # noqa: E402
from nvo3_ryu_app.testbed.etcd import EtcdCluster  # noqa: E402

TOPOLOGY = os.path.join(B.ROOT, 'topologies', 'cluster.yaml')
NVE1 = '0000000000000001'
X1_MAC, X1_IP = '02:00:00:00:80:19', '192.168.80.19'


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rounds', type=int, default=3,
                    help='kill -9 failovers measured')
    ap.add_argument('--ttl', type=int, default=3, help='cluster_lease_ttl')
    ap.add_argument('--nves', type=int, default=60)
    ap.add_argument('--vn-size', type=int, default=10)
    ap.add_argument('--ports', type=int, default=4)
    ap.add_argument('--tenants', type=int, default=6000)
    ap.add_argument('--window', type=int, default=300,
                    help='attachments in flight at most, per simulator')
    ap.add_argument('--instances', default='1,2,3',
                    help='cluster sizes of the attach part')
    ap.add_argument('--no-failover', action='store_true')
    ap.add_argument('--no-attach', action='store_true')
    ap.add_argument('--reach-rounds', type=int, default=15,
                    help='attachments of the reach part, per store (0: skip)')
    ap.add_argument('--quick', action='store_true',
                    help='1 round; 30 NVEs, 1,500 tenant systems')
    ap.add_argument('--timeout', type=float, default=600.0)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.nves, args.tenants = 1, 30, 1500
        args.reach_rounds = min(args.reach_rounds, 5)
    args.instances = [int(n) for n in args.instances.split(',') if n]
    return args


def main(argv=None):
    args = parse_args(argv)
    B.exit_on_sigterm()
    r = {'params': dict(vars(args)), 'env': B.env(),
         'command': ' '.join(['.venv/bin/python', 'benchmarks/cluster_bench.py']
                             + list(argv if argv is not None else sys.argv[1:]))}
    if not args.no_failover:
        r['failover'] = failover(args)
        _report_failover(r['failover'])
    if args.reach_rounds:
        r['reach'] = reach(args)
        _report_reach(r['reach'])
    if not args.no_attach:
        r['attach'], r['etcd_bytes'] = attach(args)
        r['projection'] = _project(r['attach'])
        _report_attach(r['attach'], r['etcd_bytes'], r['projection'])
    name = 'cluster-quick.json' if args.quick else 'cluster.json'
    print('wrote', B.write_json(name, r))
    return 0


# --- failover -----------------------------------------------------------------

def failover(args):
    lab = ClusterLab(TOPOLOGY, instances=3, lease_ttl=args.ttl,
                     extra_ini='port_down_grace = 1.0', etcd_relays=False,
                     log_openflow=False)
    rounds = []
    lab.start()
    try:
        lab.wait_balanced(timeout=60)
        for src, dst in (('a1', '192.168.80.21'), ('b1', '192.168.80.31'),
                         ('c1', '192.168.80.11')):
            if not lab.tb.ping(src, dst, count=2):
                raise RuntimeError('no data plane %s -> %s' % (src, dst))
        lab.wait_sync()
        for i in range(args.rounds):
            rounds.append(_failover_round(lab, i, args))
            print('  round %d: %s' % (i + 1, rounds[-1]), flush=True)
    finally:
        problems = lab.stop(report=False)
    mastered = [x['mastered_s'] for x in rounds]
    reach = [x['x1_reachable_s'] for x in rounds]
    return {
        'ttl_s': args.ttl, 'rounds': rounds,
        'mastered_p50_s': _r(B.percentile(mastered, 0.5)),
        'mastered_max_s': _r(max(mastered)),
        'reachable_p50_s': _r(B.percentile(reach, 0.5)),
        'reachable_max_s': _r(max(reach)),
        'probes_sent': sum(x['probes']['sent'] for x in rounds),
        'probes_lost': sum(x['probes']['lost'] for x in rounds),
        'longest_gap_ms': max(x['probes']['longest_gap_ms'] for x in rounds),
        'rejoin_flow_mods': sum(x['rejoin_flow_mods'] for x in rounds),
        'app_problems': problems}


def _failover_round(lab, i, args):
    victim = lab.masters()[NVE1]
    alive = set(lab.names) - {victim}
    _x1_link(lab, False)
    lab.wait_for(lambda: all(X1_MAC not in _macs(lab, n) for n in lab.names),
                 timeout=20, what='x1 withdrawn')
    lab.wait_sync()
    out = os.path.join(lab.tb.rundir, 'probe-%d.json' % i)
    prober = prober_mod.start(lab.tb.vm('a1').pid, '192.168.80.21', out,
                              interval=0.01, duration=60)
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        lab.kill(victim)
        while True:
            masters = lab.masters(alive)
            if all(masters.values()):
                break
            if time.monotonic() - killed > 60:
                raise RuntimeError('not mastered again: %s' % masters)
            time.sleep(0.02)
        mastered = time.monotonic() - killed
        _x1_link(lab, True)
        while not lab.tb.ping('x1', '192.168.80.21', count=1, timeout=1):
            if time.monotonic() - killed > 60:
                raise RuntimeError('x1 not reachable')
        reachable = time.monotonic() - killed
        time.sleep(1.0)
        summary = prober.stop()['summary']
    finally:
        prober.kill()
    lab.wait_sync()
    restarted = time.monotonic()
    lab.restart(victim)
    lab.wait_balanced(timeout=60)
    lab.wait_sync()
    rejoined = time.monotonic() - restarted
    return {'victim': victim, 'mastered_s': _r(mastered),
            'x1_reachable_s': _r(reachable),
            'probes': {k: summary[k] for k in ('sent', 'lost',
                                               'longest_gap_ms')},
            'rejoin_balanced_s': _r(rejoined),
            'rejoin_flow_mods': lab.counter(victim, 'flow_mods_sent')}


def _x1_link(lab, up):
    vnic = lab.tb.topo.vm('x1').vnics[0]
    lab.tb.vm_run('x1', 'ip', 'link', 'set', vnic.vm_ifname,
                  'up' if up else 'down')


def _macs(lab, name):
    return {e['mac'] for e in lab.get(name, '/v1/vns/5001/mappings')}


# --- reach: attach-to-reachability on OVS, journal vs etcd ------------------

def reach(args):
    import json
    import tempfile
    import attach_bench
    out = {}
    with tempfile.TemporaryDirectory(prefix='nvo3-cluster-bench-') as tmp:
        etcd = None
        try:
            for label in ('journal', 'etcd'):
                ini = ''
                if label == 'etcd':
                    etcd = EtcdCluster(3)
                    etcd.start()
                    ini = '\n'.join([
                        'cluster_backend = etcd',
                        'etcd_endpoints = %s' % etcd.endpoints,
                        'instance_name = a',
                        'cluster_lease_ttl = %d' % args.ttl])
                path = os.path.join(tmp, label + '.json')
                print('reach, %s: %d attachments' % (label, args.reach_rounds),
                      flush=True)
                attach_bench.main(['--rounds', str(args.reach_rounds),
                                   '--request-rounds', '0',
                                   '--extra-ini', ini, '--out', path])
                with open(path, encoding='utf-8') as fh:
                    got = json.load(fh)
                s = got['summary']
                out[label] = {k: s.get(k) for k in (
                    'attachments', 'reached', 'attach_to_reach_p50_ms',
                    'attach_to_reach_p95_ms', 'app_convergence_p50_ms',
                    'app_convergence_p95_ms')}
                out[label]['app_problems'] = got.get('app_problems')
        finally:
            if etcd is not None:
                etcd.stop()
    return out


def _report_reach(runs):
    B.table([(label, 'attach-to-reachability p50 / p95 %s / %s ms; app side '
              'p50 / p95 %s / %s ms (%s of %s reached)' % (
                  x['attach_to_reach_p50_ms'], x['attach_to_reach_p95_ms'],
                  x['app_convergence_p50_ms'], x['app_convergence_p95_ms'],
                  x['reached'], x['attachments']))
             for label, x in runs.items()], title='reach (real OVS)')


# --- attach: journal vs etcd, 1..N instances ---------------------------------

def attach(args):
    config, vn_of = S.fleet(args.nves, args.vn_size, args.ports)
    runs = {}
    etcd_bytes = None
    runs['journal'] = _attach_run(args, config, vn_of, 1, None, 'journal')
    etcd = EtcdCluster(3)
    etcd.start()
    try:
        for n in args.instances:
            label = 'etcd-%d' % n
            runs[label] = _attach_run(args, config, vn_of, n, etcd, label)
            if n == 1:
                etcd_bytes = _etcd_bytes(etcd, '/nvo3/%s/' % label,
                                         runs[label]['done'])
    finally:
        etcd.stop()
    return runs, etcd_bytes


def _project(runs):
    """What a machine with a core per instance (and etcd on cores of its
    own) would give, from CPU rather than from this machine's throughput:
    each instance's CPU per attachment of the whole cluster (it handles its
    share and applies the others' from its watch); the busiest instance
    bounds the cluster at 1000 / that many attachments/s.  CPU per
    operation rises on an oversubscribed machine (smaller batches, more
    wake-ups), so this errs low."""
    out = {}
    for x in runs.values():
        if not x['label'].startswith('etcd'):
            continue
        each = [1000.0 * c / max(1, x['done']) for c in x['cpu_s']]
        x['cpu_ms_per_cluster_attach'] = [round(c, 3) for c in each]
        out[x['instances']] = round(1000.0 / max(each), 1) if max(each) > 0 \
            else None
    return {'per_s_core_each': out} if out else None


def _attach_run(args, config, vn_of, n, etcd, label):
    vns = sorted(set(vn_of.values()))
    part = [sorted(d for d, v in vn_of.items() if vns.index(v) % n == k)
            for k in range(n)]
    per = args.tenants // n
    ctls, sims = [], []
    print('attach, %s: %d instance(s), %d NVEs, %d tenant systems' % (
        label, n, args.nves, per * n), flush=True)
    try:
        for k in range(n):
            ini = []
            if etcd is not None:
                ini = ['cluster_backend = etcd',
                       'etcd_endpoints = %s' % etcd.endpoints,
                       'instance_name = i%d' % k,
                       'etcd_prefix = /nvo3/%s/' % label,
                       'cluster_lease_ttl = %d' % args.ttl]
            ctls.append(B.start_app(config, '\n'.join(ini),
                                    timeout=args.timeout))
        for k in range(n):
            sims.append(S.SimProcess(ctls[k].of_port, part[k], args.ports))
        for k in range(n):
            B.wait_sync(ctls[k], len(part[k]), args.timeout, interval=0.2,
                        check=sims[k].check)
        tenants = [S.tenants(per, {d: vn_of[d] for d in part[k]}, args.ports,
                             offset=k * per) for k in range(n)]
        time.sleep(1.0)
        cpu0 = [B.cpu_seconds(c.pid) for c in ctls]
        etcd0 = _etcd_cpu(etcd)
        t0 = time.monotonic()
        for k in range(n):
            sims[k].attach(tenants[k], 0.0, args.window)
        while True:
            time.sleep(0.5)
            st = [s.status() for s in sims]
            if sum(x['attach_done'] + x['attach_failed'] for x in st) >= per * n:
                break
            if time.monotonic() - t0 > args.timeout:
                raise TimeoutError('attachments not done: %s' % st)
        for k in range(n):
            B.wait_sync(ctls[k], len(part[k]), args.timeout,
                        check=sims[k].check)
        cpu = [B.cpu_seconds(c.pid) - c0 for c, c0 in zip(ctls, cpu0)]
        etcd_cpu = _etcd_cpu(etcd) - etcd0 if etcd is not None else None
        lat = [s.call('latencies') for s in sims]
        latencies = [x for one in lat for x in one['latencies']]
        first = min(x['first_sent'] for x in st)
        last = max(x['last_done'] for x in st if x['last_done'])
        done = sum(x['attach_done'] for x in st)
        problems = [p for c in ctls for p in c.scan_log()]
    finally:
        for sim in sims:
            sim.close()
        for ctl in ctls:
            ctl.close()
    span = last - first
    return {
        'label': label, 'instances': n, 'done': done,
        'failed': sum(x['attach_failed'] for x in st),
        'per_s': round(done / span, 1),
        'latency_p50_ms': B.ms(B.percentile(latencies, 0.5)),
        'latency_p99_ms': B.ms(B.percentile(latencies, 0.99)),
        # Each instance handles the packet-ins of its own NVEs (per) and
        # applies the records of every other attachment (replicated).
        'cpu_s': [round(c, 2) for c in cpu],
        'cpu_ms_per_attach_handled': [round(1000.0 * c / max(1, per), 3)
                                      for c in cpu],
        'cpu_ms_per_attach_total': round(1000.0 * sum(cpu) / max(1, done), 3),
        'etcd_cpu_ms_per_attach': round(1000.0 * etcd_cpu / max(1, done), 3)
        if etcd_cpu is not None else None,
        'log_problems': problems}


def _etcd_cpu(etcd):
    if etcd is None:
        return 0.0
    return sum(B.cpu_seconds(etcd.pid(i)) for i in range(1, etcd.n + 1)
               if etcd.pid(i))


def _etcd_bytes(etcd, prefix, entries):
    client = EtcdClient(etcd.endpoints)
    try:
        kvs, _ = client.range(prefix + 'rec/')
    finally:
        client.close()
    kinds = {}
    for kv in kvs:
        kind = kv['key'][len(prefix) + len('rec/'):].split('/', 1)[0]
        n, size = kinds.get(kind, (0, 0))
        kinds[kind] = (n + 1, size + len(kv['key']) + len(kv['value']))
    total = sum(size for _, size in kinds.values())
    return {'entries': entries, 'keys': len(kvs),
            'bytes_total': total,
            'bytes_per_entry': round(total / max(1, entries), 1),
            'kinds': {k: {'keys': n, 'bytes': size,
                          'bytes_per_key': round(size / max(1, n), 1)}
                      for k, (n, size) in sorted(kinds.items())}}


# --- output -------------------------------------------------------------------

def _r(x):
    return None if x is None else round(x, 3)


def _report_failover(f):
    B.table([
        ('lease TTL', '%d s' % f['ttl_s']),
        ('rounds (kill -9 of nve1\'s master)', len(f['rounds'])),
        ('kill -> every NVE has a confirmed master: p50 / max',
         '%s / %s s' % (f['mastered_p50_s'], f['mastered_max_s'])),
        ('kill -> a VM attaching right after is reachable: p50 / max',
         '%s / %s s' % (f['reachable_p50_s'], f['reachable_max_s'])),
        ('10 ms probes across the kill: sent / lost / longest gap',
         '%d / %d / %s ms' % (f['probes_sent'], f['probes_lost'],
                              f['longest_gap_ms'])),
        ('flow-mods sent by the restarted instance while it rejoined',
         f['rejoin_flow_mods'])], title='failover')


def _report_attach(runs, etcd_bytes, projection=None):
    rows = []
    for label, x in runs.items():
        rows.append((label, '%s/s, p50 %s ms, p99 %s ms, app CPU ms per '
                     'attachment handled %s (all instances: %s), etcd %s' % (
                         x['per_s'], x['latency_p50_ms'], x['latency_p99_ms'],
                         x['cpu_ms_per_attach_handled'],
                         x['cpu_ms_per_attach_total'],
                         x['etcd_cpu_ms_per_attach'])))
    if projection:
        rows.append(('projected attachments/s, a core per instance',
                     ', '.join('%s: %s' % kv for kv in
                               projection['per_s_core_each'].items())))
    if etcd_bytes:
        rows.append(('etcd bytes per mapping entry',
                     '%s (%s)' % (etcd_bytes['bytes_per_entry'], ', '.join(
                         '%s %s B/key' % (k, v['bytes_per_key'])
                         for k, v in etcd_bytes['kinds'].items()))))
    B.table(rows, title='attach (simulated NVEs)')


if __name__ == '__main__':
    sys.exit(main())
