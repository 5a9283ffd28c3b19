"""Attach-to-reachability: a new VM's first frame to its reachability.

From a new VM's first frame until a VM on every other member NVE of its VN
reaches it, on the real testbed (osken-manager + one OVS per NVE namespace).

What one attachment is
----------------------
The target VM ``tgt`` (benchmarks/topologies/attach.yaml: VN blue on nve1..
nve4, tgt on nve1) is turned into a new VM before every round:

1. it is silenced (its IPv4 address removed; IPv6 is off in every VM of the
   VN so that no router/neighbour solicitation leaks out) and its access
   port is moved to another VN and back over REST (an override of the
   configuration file's binding, then deleting the override), which
   withdraws the previous attachment everywhere (the app has no "detach"
   call; what deleting a VM's port does);
2. its vNIC gets a fresh MAC, and every VM's neighbour cache is flushed, so
   nothing anywhere knows the new VM;
3. a capture on the NVE side of its access port (``tgt-0`` in nve1's
   namespace, ``ether src <new MAC>``) records its frames, and one
   fixed-schedule prober (nvo3_ryu_app/testbed/prober.py, raw ICMP, kernel
   timestamps) per other member NVE starts probing its IP every
   ``--interval`` (1 ms): the probers' kernels hold the echo requests while
   they try to resolve the IP;
4. the VM comes up: ``ip addr add`` and one unsolicited ARP reply
   (``arping -A -c 1``), the announcement a booting or migrated VM sends;
   a second phase announces with an ARP request instead (RFC 5227,
   ``arping -U``), which the NVEs flood in the VN just the same.

"First frame" = the kernel timestamp of the first frame from the new MAC
captured on the NVE side of its access port: the moment the NVE could first
know of it (whatever that frame is; the JSON records its kind).  A remote
NVE "reaches" the VM when the first echo reply arrives at the prober on it
(SO_TIMESTAMPNS, same clock).  Attach-to-reachability of one attachment =
the slowest remote NVE.  Kernel ARP behaviour decides how the remote VMs
learn the MAC: the announcement (flooded in the VN by the NVE) resolves
their pending neighbour entries; their queued echo requests then leave at
once.  The figure is therefore end to end: packet-in, learning, flows on
all member NVEs, the re-injected announcement, the remote kernels, the
echo and the new VM's own ARP for the prober (answered by its NVE).

App-side time: the ``attach`` event the app records carries
``convergence_ms``: from the packet-in's arrival in the app to the last
barrier reply of the member NVEs the attachment changed.  The JSON also
keeps ``event_lag_ms``: first frame on the wire -> the app's event time
(the control channel: OVS, the socat relay, the app's event loop).

Prints a table and writes benchmarks/results/attach.json.

Usage: sudo .venv/bin/python benchmarks/attach_bench.py [--rounds 30]
"""

import argparse
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import benchenv  # noqa: E402
from nvo3_ryu_app.testbed import prober  # noqa: E402

RESULTS = os.path.join(HERE, 'results', 'attach.json')
TARGET_P50_MS = 10.0             # issue 18 (15 ms before it)
TOPOLOGY = os.path.join(HERE, 'topologies', 'attach.yaml')
PACKET_INS = 'nvo3_packet_ins_received_total'


def pct(values, q):
    return None if not values else round(benchenv.percentile(values, q), 3)


def access_capture(tb, nve, port, bpf):
    """tcpdump on the NVE side of an access port (inside the NVE's netns)."""
    from nvo3_ryu_app.testbed.capture import Capture
    path = os.path.join(tb.rundir, 'captures', '%s-%s-%d.pcap' % (
        nve, port, int(time.time() * 1000)))
    cap = Capture(tb.nve(nve).pid, port, path, bpf).start()
    tb.captures.append(cap)                       # stopped by tb.stop()
    tb.manifest.add_pid(cap.proc.pid, 'tcpdump %s %s' % (nve, port))
    return cap


class Bench:
    def __init__(self, lab, args):
        self.prober = prober
        self.lab, self.tb, self.args = lab, lab.tb, args
        topo = self.tb.topo
        self.target = topo.vm(args.target)
        self.vnic = self.target.vnics[0]
        self.vn = topo.vn(self.vnic.vnid)
        self.nve = self.vnic_nve = next(
            n for n in topo.nves if any(v.mac == self.vnic.mac
                                        for v in topo.vnics_on(n.name)))
        # One prober VM on every other member NVE (and a neighbour on the
        # same NVE, reported apart).
        self.remote, self.local = {}, None
        for vm in topo.vms:
            for v in vm.vnics:
                if v.vnid != self.vn.vnid or vm.name == self.target.name:
                    continue
                nve = next(n.name for n in topo.nves
                           if v in topo.vnics_on(n.name))
                if nve == self.nve.name:
                    self.local = self.local or (vm.name, v)
                else:
                    self.remote.setdefault(nve, (vm.name, v))
        self.ip = str(self.vnic.ip.ip)
        self.prefixlen = self.vnic.ip.network.prefixlen
        self.events_seen = 0

    def vn_vms(self):
        return sorted({vm.name for vm in self.tb.topo.vms
                       if any(v.vnid == self.vn.vnid for v in vm.vnics)})

    def prepare(self):
        lab, tb = self.lab, self.tb
        lab.wait_sync()
        for vm in self.vn_vms():
            tb.vm_run(vm, 'sysctl', '-q', '-w',
                      'net.ipv6.conf.all.disable_ipv6=1',
                      'net.ipv6.conf.default.disable_ipv6=1')
            if self.args.unres_qlen:
                # While an address resolves the kernel queues the prober's
                # echo requests (about 100 by default) and releases them
                # at once: a burst only a 1 ms prober makes.  Keep a few.
                for v in self.tb.topo.vm(vm).vnics:
                    tb.vm_run(vm, 'sysctl', '-q', '-w',
                              'net.ipv4.neigh.%s.unres_qlen=%d' % (
                                  v.vm_ifname, self.args.unres_qlen))
        # Everyone known (the probers above all), then quiet.
        for nve, (vm, _v) in sorted(self.remote.items()):
            assert tb.ping(vm, self.ip, count=1, timeout=2), (vm, self.ip)
        if self.local:
            assert tb.ping(self.local[0], self.ip, count=1, timeout=2)
        lab.wait_sync()
        self.events_seen = lab.get('/v1/events?limit=1')['seq']

    def fresh_mac(self, i):
        return '02:00:00:ab:%02x:%02x' % (i >> 8 & 255, i & 255)

    def reset(self, mac):
        """Make ``tgt`` a VM nobody knows, with MAC ``mac``, silent."""
        lab, tb, port = self.lab, self.tb, self.vnic.port
        dpid = self.nve.dpid
        tb.vm_run(self.target.name, 'ip', 'addr', 'flush', 'dev',
                  self.vnic.vm_ifname)
        # The configuration file binds the port (REST cannot remove that
        # binding): an override into another VN withdraws the attachment
        # on every NVE, as deleting a VM's port would, and deleting the
        # override puts the file's binding back.
        other = next(vn.vnid for vn in tb.topo.vns
                     if vn.vnid != self.vn.vnid)
        status, body = lab.request('PUT', '/v1/nves/%s/ports/%s?override='
                                   'true' % (dpid, port), {'vnid': other})
        assert status in (200, 201), (status, body)
        status, body = lab.request('DELETE', '/v1/nves/%s/ports/%s' % (
            dpid, port))
        assert status == 204, (status, body)
        tb.vm_run(self.target.name, 'ip', 'link', 'set', 'dev',
                  self.vnic.vm_ifname, 'address', mac)
        for vm in self.vn_vms():
            tb.vm_run(vm, 'ip', 'neigh', 'flush', 'all')
        lab.wait_sync()
        assert not lab.get('/v1/mappings?mac=%s' % mac)

    def round(self, i, announce='reply', window=None):
        args, tb = self.args, self.tb
        window = window or args.window
        mac = self.fresh_mac(i)
        self.reset(mac)
        time.sleep(args.settle)
        cap = access_capture(tb, self.nve.name, self.vnic.port,
                             'ether src %s' % mac)
        punted = self.lab.metric_sum(PACKET_INS)
        probers = {}
        who = dict(self.remote)
        if self.local:
            who['local'] = self.local
        try:
            for nve, (vm, _v) in sorted(who.items()):
                out = os.path.join(tb.rundir, 'probe-%d-%s.json' % (i, nve))
                probers[nve] = self.prober.start(
                    tb.vm(vm).pid, self.ip, out, interval=args.interval,
                    duration=window, linger=0.3, realtime=True)
            time.sleep(args.lead)
            ifname = self.vnic.vm_ifname
            tb.vm_run(self.target.name, 'sh', '-c',
                      'ip addr add %s/%d dev %s && arping -q -U %s-c 1 -i %s '
                      '-S %s %s' % (self.ip, self.prefixlen, ifname,
                                    '-P ' if announce == 'reply' else '',
                                    ifname, self.ip, self.ip), check=False)
            results = {nve: p.wait(timeout=window + 10)
                       for nve, p in probers.items()}
        finally:
            for p in probers.values():
                p.kill()
            frames = cap.stop()
        if not frames:
            return {'round': i, 'mac': mac, 'error': 'no frame captured'}
        first = frames[0]
        t0 = first.ts
        reach = {}
        for nve, res in results.items():
            arrivals = [p['sent'] + p['rtt_ms'] / 1000.0
                        for p in res['probes'] if p['rtt_ms'] is not None]
            reach[nve] = round((min(arrivals) - t0) * 1000.0, 3) \
                if arrivals else None
        remote = [reach[n] for n in self.remote]
        event = self.attach_event(mac)
        punted = self.lab.metric_sum(PACKET_INS) - punted
        fsync_s = self.lab.metrics().get('nvo3_store_last_fsync_seconds{}')
        fsync_ms = None if fsync_s is None else fsync_s * 1000.0
        row = {
            'round': i, 'mac': mac, 'announce': announce,
            'first_frame': describe(first),
            'reach_ms': reach,
            'attach_to_reach_ms': (max(remote) if None not in remote
                                   else None),
            'event_lag_ms': (round((event['time'] - t0) * 1000.0, 3)
                             if event else None),
            'app_convergence_ms': event.get('convergence_ms') if event
            else None,
            'store_last_fsync_ms': fsync_ms,
            'packet_ins': int(punted),
        }
        return row

    def attach_event(self, mac, timeout=5.0):
        """The app's attach event for ``mac`` once its convergence is in."""
        deadline = time.monotonic() + timeout
        found = None
        while time.monotonic() < deadline:
            page = self.lab.get('/v1/events?since=%d&type=attach&limit=1000'
                                % self.events_seen)
            found = next((e for e in page['events'] if e.get('mac') == mac),
                         None)
            if found is not None and 'convergence_ms' in found:
                return found
            time.sleep(0.05)
        return found


def describe(pkt):
    arp = pkt.first('arp')
    if arp is not None:
        return 'arp %s %s -> %s' % ({1: 'request', 2: 'reply'}.get(
            arp.opcode, arp.opcode), arp.src_ip, arp.dst_ip)
    return '/'.join(pkt.names())


def summarize(rows, remote_nves):
    ok = [r for r in rows if r.get('attach_to_reach_ms') is not None]
    e2e = [r['attach_to_reach_ms'] for r in ok]
    per_nve = [r['reach_ms'][n] for r in ok for n in remote_nves]
    local = [r['reach_ms'].get('local') for r in ok
             if r['reach_ms'].get('local') is not None]
    app = [r['app_convergence_ms'] for r in rows
           if r.get('app_convergence_ms') is not None]
    lag = [r['event_lag_ms'] for r in rows if r.get('event_lag_ms') is not None]
    fsync = [r['store_last_fsync_ms'] for r in rows
             if r.get('store_last_fsync_ms')]
    punts = [r['packet_ins'] for r in rows if r.get('packet_ins') is not None]
    kinds = {}
    for r in rows:
        k = r.get('first_frame', 'none').split(' ->')[0]
        kinds[k] = kinds.get(k, 0) + 1
    return {
        'attachments': len(rows), 'reached': len(ok),
        'attach_to_reach_p50_ms': pct(e2e, 50),
        'attach_to_reach_p95_ms': pct(e2e, 95),
        'attach_to_reach_max_ms': pct(e2e, 100),
        'per_remote_nve_p50_ms': pct(per_nve, 50),
        'per_remote_nve_p95_ms': pct(per_nve, 95),
        'local_neighbour_p50_ms': pct(local, 50),
        'app_convergence_p50_ms': pct(app, 50),
        'app_convergence_p95_ms': pct(app, 95),
        'event_lag_p50_ms': pct(lag, 50),
        'event_lag_p95_ms': pct(lag, 95),
        'store_fsync_p50_ms': pct(fsync, 50),
        'packet_ins_per_attachment': (round(sum(punts) / len(punts), 2)
                                      if punts else None),
        'first_frame_kinds': kinds,
    }


def start_profile(pid, args):
    import subprocess
    spy = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    if not os.access(spy, os.X_OK):
        print('no py-spy in the venv (pip install py-spy): not profiling')
        return None
    raw = os.path.splitext(args.out)[0] + '-pyspy.txt'
    proc = subprocess.Popen([spy, 'record', '--pid', str(pid), '--rate',
                             '1000', '--format', 'raw', '--output', raw,
                             '--nonblocking'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc, raw


def stop_profile(spy, args):
    import signal
    if spy is None:
        return None
    proc, raw = spy
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except Exception:  # noqa: BLE001 - never leave it running
        proc.kill()
        proc.wait(timeout=5)
    summary = benchenv.profile_summary(raw)
    if summary is not None:
        summary['raw'] = os.path.relpath(raw, os.path.dirname(HERE))
        summary['rate_hz'] = 1000
        summary['packet_in'] = packet_in_breakdown(raw)
    return summary


# Where the app spends its time on an attachment (the packet-in handler,
# and the drain after it that makes the change durable and sends the
# flows), by what the sampled stack is doing (first match wins).
CATEGORIES = (
    ('store: journal write + fsync', ('fsync', 'JournalStore', 'tpool')),
    ('store: encode records', ('save_changes',)),
    ('plan flows', ('Planner', 'flows.py')),
    ('OpenFlow messages: build, serialize, queue, send',
     ('change_msg', 'change_bytes', 'serialize', 'send_msg', 'packet_out',
      'Datapath.send', 'take_changes', '_flush')),
    ('parse frame', ('parse_frame',)),
    ('learn (database)', ('MappingDB',)),
)


def packet_in_breakdown(raw):
    counts, total = {}, 0
    with open(raw, encoding='utf-8', errors='replace') as fh:
        for line in fh:
            stack, _, n = line.rstrip('\n').rpartition(' ')
            if '_packet_in' not in stack and '_drain' not in stack:
                continue
            total += int(n)
            cat = next((name for name, keys in CATEGORIES
                        if any(k in stack for k in keys)), 'other')
            counts[cat] = counts.get(cat, 0) + int(n)
    return {'samples': total, 'share_pct': {
        k: round(100.0 * v / max(1, total), 1)
        for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}}


def run_phase(bench, announce, rounds, window, first_round):
    print('\n-- %d attachments announced by an unsolicited ARP %s --' % (
        rounds, announce))
    print('%5s  %-18s  %s  %10s  %10s  %10s' % (
        'round', 'mac', '  '.join('%8s' % n for n in sorted(bench.remote)),
        'reach_ms', 'app_ms', 'event_lag'))
    rows = []
    for i in range(first_round, first_round + rounds):
        row = bench.round(i, announce, window)
        rows.append(row)
        reach = row.get('reach_ms', {})
        print('%5d  %-18s  %s  %10s  %10s  %10s' % (
            i, row['mac'], '  '.join('%8s' % reach.get(n) for n in sorted(
                bench.remote)), row.get('attach_to_reach_ms'),
            row.get('app_convergence_ms'), row.get('event_lag_ms')),
            flush=True)
    return rows


def print_summary(title, summary):
    print('\n%s: %d attachments, %d reached from every remote NVE' % (
        title, summary['attachments'], summary['reached']))
    print('  attach-to-reachability (slowest remote NVE): p50 %s ms, '
          'p95 %s ms, max %s ms' % (summary['attach_to_reach_p50_ms'],
                                    summary['attach_to_reach_p95_ms'],
                                    summary['attach_to_reach_max_ms']))
    print('  per remote NVE: p50 %s ms, p95 %s ms; neighbour on the same NVE:'
          ' p50 %s ms' % (summary['per_remote_nve_p50_ms'],
                          summary['per_remote_nve_p95_ms'],
                          summary['local_neighbour_p50_ms']))
    print('  app side (packet-in -> last member NVE barrier ack): p50 %s ms, '
          'p95 %s ms' % (summary['app_convergence_p50_ms'],
                         summary['app_convergence_p95_ms']))
    print('  first frame on the wire -> app event: p50 %s ms, p95 %s ms' % (
        summary['event_lag_p50_ms'], summary['event_lag_p95_ms']))
    print('  journal fsync (app metric, after each attach): p50 %s ms' %
          summary['store_fsync_p50_ms'])
    print('  packet-ins per attachment (the first frame, and any frame '
          'OVS still punted after it): %s' %
          summary['packet_ins_per_attachment'])
    print('  first frames: %s' % summary['first_frame_kinds'])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=30,
                    help='attachments announced by an ARP reply (headline)')
    ap.add_argument('--request-rounds', type=int, default=10,
                    help='attachments announced by an ARP request (RFC 5227 '
                         'announcement); 0 skips them')
    ap.add_argument('--topology', default=TOPOLOGY)
    ap.add_argument('--target', default='tgt', help='the VM that attaches')
    ap.add_argument('--interval', type=float, default=0.001,
                    help='prober interval, seconds (default 1 ms)')
    ap.add_argument('--window', type=float, default=0.6,
                    help='seconds each prober runs (bounded); the request '
                         'phase uses 1.6 s, so that an announcement that '
                         'does not reach the guests shows as their 1 s ARP '
                         'retry')
    ap.add_argument('--lead', type=float, default=0.1,
                    help='seconds the probers run before the VM comes up')
    ap.add_argument('--settle', type=float, default=0.2,
                    help='quiet seconds before each attachment')
    ap.add_argument('--unres-qlen', type=int, default=3,
                    help='echo requests a prober VM queues while resolving '
                         'the new VM (0: kernel default, about 100)')
    ap.add_argument('--extra-ini', default='',
                    help='extra [nvo3] options for the app, e.g. '
                         '"store_fsync = false"')
    ap.add_argument('--profile', action='store_true',
                    help='py-spy the app during the headline attachments '
                         '(raw stacks next to the JSON, top frames in it)')
    ap.add_argument('--out', default=RESULTS)
    args = ap.parse_args(argv)

    from nvo3_ryu_app.testbed.builder import _require_root_and_tools
    from nvo3_ryu_app.testbed.lab import Lab
    _require_root_and_tools()
    started = time.time()
    lab = Lab(args.topology, extra_ini=args.extra_ini).start()
    rows, req_rows, problems, remote = [], [], [], []
    profile = None
    load_start = benchenv.loadavg()
    try:
        bench = Bench(lab, args)
        bench.prepare()
        remote = sorted(bench.remote)
        print('target %s on %s (VN %s), probers: %s; prober interval %.1f ms'
              % (bench.target.name, bench.nve.name, bench.vn.name,
                 ', '.join('%s on %s' % (vm, nve) for nve, (vm, _v)
                           in sorted(bench.remote.items())),
                 args.interval * 1000))
        spy = start_profile(lab.ctl.pid, args) if args.profile else None
        try:
            rows = run_phase(bench, 'reply', args.rounds, args.window, 1)
        finally:
            profile = stop_profile(spy, args)
        if args.request_rounds:
            req_rows = run_phase(bench, 'request', args.request_rounds,
                                 max(args.window, 1.6), args.rounds + 1)
    finally:
        problems = lab.stop()
    summary = summarize(rows, remote)
    print_summary('Announced by an unsolicited ARP reply (headline)', summary)
    req_summary = summarize(req_rows, remote) if req_rows else None
    if req_summary:
        print_summary('Announced by an ARP request (RFC 5227)', req_summary)
    target_ok = (summary['attach_to_reach_p50_ms'] is not None
                 and summary['attach_to_reach_p50_ms'] <= TARGET_P50_MS)
    print('\ntarget p50 <= %g ms: %s' % (TARGET_P50_MS,
                                         'met' if target_ok else 'MISSED'))
    if problems:
        print('app log problems: %s' % problems[:5])
    result = {
        'benchmark': 'attach', 'date': benchenv.now_iso(),
        'machine': benchenv.machine(), 'code': benchenv.code(),
        'command': shlex.join(['.venv/bin/python',
                               'benchmarks/attach_bench.py']
                              + (argv if argv is not None else sys.argv[1:])),
        'topology': os.path.relpath(args.topology, os.path.dirname(HERE)),
        'interval_ms': args.interval * 1000, 'extra_ini': args.extra_ini,
        'prober_realtime': prober.realtime_allowed(),
        'summary': summary, 'request_summary': req_summary,
        'target_p50_ms': TARGET_P50_MS, 'target_met': target_ok,
        'app_problems': problems, 'rounds': rows + req_rows,
        'loadavg': [load_start, benchenv.loadavg()],
        'profile': profile,
        'runtime_s': round(time.time() - started, 1)}
    benchenv.write_json(args.out, result)
    print('wrote %s' % args.out)
    return 0 if rows and not problems else 1


if __name__ == '__main__':
    sys.exit(main())
