"""Benchmark of BGP EVPN against FRR: convergence and export rate.

The testbed of tests/integration/test_evpn_frr.py (topologies/evpn.yaml:
nve1, nve2; an FRR VTEP ``frr1`` with hosts f1 and fmv, see
nvo3_ryu_app/testbed/frr.py), the app under osken-manager.

1. New tenant system: a sender already running in vm1 (nve1) puts one
   gratuitous ARP of a MAC nobody knows on the wire and prints when
   (``time.time()`` right before ``send``); ``bridge monitor fdb`` in FRR's
   namespace timestamps the moment FRR's kernel FDB gets that MAC towards
   nve1's VTEP.  Latency = FDB entry - first frame: the app's packet-in and
   commit, the UPDATE, FRR's bgpd and zebra, the kernel.
2. A move across the boundary under a 10 ms fixed-schedule prober (vm2 ->
   the mover's address, nvo3_ryu_app/testbed/prober.py): to FRR (mv's link
   goes down in its VM, fmv, behind FRR with the same MAC/IP and its
   bridge port up beforehand, announces itself; FRR advertises the next MAC mobility
   sequence number and the app yields) and back (fmv's port down, mv up and
   one gratuitous ARP).  The outage includes the test's own steps (a few
   ip commands, ~10 ms each).
3. Export rate: a second FRR VTEP ``frr2`` peers with a bare speaker
   process (the product's peering/bgp.py with the os-ken fixes, no app),
   which advertises N MAC/IP routes at once; the time until FRR's
   ``show bgp l2vpn evpn summary`` counts N prefixes from it gives routes/s.

Usage (root): .venv/bin/python benchmarks/evpn_bench.py [--rounds 20]
    [--moves 3] [--routes 10000]
Prints a table and writes benchmarks/results/evpn.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

VNID = 5001
APP_AS = FRR_AS = 65001          # iBGP: see testbed/frr.py's config()
ROUTER_ID, RELAY2 = '10.99.0.254', '10.99.0.253'
FRR_VTEP, FRR2_VTEP = '10.99.0.20', '10.99.0.21'
NVE1_VTEP = '10.99.0.1'
MV_MAC, MV_IP = '02:00:00:00:50:05', '192.168.50.5'
F1_MAC, F1_IP = '02:00:00:00:50:21', '192.168.50.21'

GARP_SENDER = r'''
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in sys.stdin:
    mac, ip = line.split()
    m, a = bytes.fromhex(mac.replace(":", "")), socket.inet_aton(ip)
    frame = (b"\xff" * 6 + m + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
             + m + a + b"\x00" * 6 + a)
    t = time.time()
    s.send(frame)
    print(repr(t), flush=True)
'''


def export_worker(args):
    """Run a bare speaker (peering/bgp.py) and advertise ``--routes``
    MAC/IP routes once the session is up; print JSON lines of when."""
    from os_ken.lib import hub
    # osken-manager's order (see docs: a lone thread=True leaves sockets
    # unpatched under eventlet 0.41 and the listener blocks the process).
    hub.patch(thread=False)
    hub.patch(thread=True)
    from nvo3_ryu_app.authority import evpn
    from nvo3_ryu_app.authority.events import Counters
    from nvo3_ryu_app.peering.bgp import Peering
    from nvo3_ryu_app.settings import Settings
    settings = Settings(bgp_as=APP_AS, bgp_router_id=RELAY2,
                        bgp_listen_host='127.0.0.1',
                        bgp_listen_port=args.port,
                        bgp_neighbors=('%s:%d' % (args.alias, FRR_AS),))
    peering = Peering(settings, lambda: peering.take_news(), Counters())
    peering.start()
    while peering.sessions[args.alias]['state'] != 'Established':
        hub.sleep(0.05)
    rd, rts = '%s:%d' % (RELAY2, VNID), ('%d:%d' % (APP_AS, VNID),)
    routes = {}
    for i in range(args.routes):
        mac = '02:10:%02x:%02x:%02x:%02x' % (
            i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255)
        ip = '10.%d.%d.%d' % (i >> 16 & 255, i >> 8 & 255, i & 255)
        routes[i] = evpn.Route(evpn.MAC_IP, rd, VNID, '10.99.0.%d' % (1 + i % 2),
                               mac, ip, 0, rts=rts)
    t0 = time.time()
    print(json.dumps({'start': t0}), flush=True)
    peering.advertise(routes)
    while peering._pending:
        hub.sleep(0.01)
    print(json.dumps({'handed_to_os_ken': time.time(),
                      'advertised': len(peering.advertised)}), flush=True)
    while True:
        hub.sleep(1)


class FdbMonitor:
    """``bridge monitor fdb`` in a namespace, every line timestamped."""

    def __init__(self, netns):
        self.lines = []
        self.proc = subprocess.Popen(
            ['ip', 'netns', 'exec', netns, 'bridge', 'monitor', 'fdb'],
            stdout=subprocess.PIPE, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.time(), line))

    def wait(self, mac, dst, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if line.startswith(mac) and 'dst %s' % dst in line \
                        and not line.startswith('Deleted'):
                    return t
            time.sleep(0.002)
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


def pct(values, q):
    from nvo3_ryu_app.testbed import prober
    value = prober.percentile(values, q)
    return None if value is None else round(value, 2)


def convergence(lab, vtep, rounds):
    from nvo3_ryu_app.testbed import procs
    monitor = FdbMonitor(vtep.netns)
    sender = subprocess.Popen(
        ['mnexec', '-a', str(lab.tb.vms['vm1'].pid), '/usr/bin/python3', '-S',
         '-c', GARP_SENDER, 'eth0'], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, bufsize=1)
    out = []
    try:
        for i in range(rounds):
            mac = '02:00:00:77:%02x:%02x' % (os.getpid() & 255, i)
            sender.stdin.write('%s 192.168.50.%d\n' % (mac, 100 + i))
            sender.stdin.flush()
            sent = float(sender.stdout.readline())
            got = monitor.wait(mac, NVE1_VTEP)
            out.append(None if got is None else round((got - sent) * 1000, 2))
            time.sleep(0.2)
    finally:
        sender.stdin.close()
        procs.kill_pid(sender.pid)
        monitor.stop()
    return out


def one_move(lab, vtep, to_frr, interval=0.01, lead=0.3, tail=2.0):
    from nvo3_ryu_app.testbed import prober
    tb = lab.tb
    out = os.path.join(tb.rundir, 'probe-%d.json' % int(time.time() * 1000))
    if to_frr:
        # fmv's port is made ready first: its carrier comes up to a second
        # late (link watch), which is the testbed's, not the move's.
        vtep.set_host_port('fmv', True)
    probe = prober.start(tb.vms['vm2'].pid, MV_IP, out, interval=interval,
                         duration=lead + tail + 10.0, linger=0.3)
    try:
        time.sleep(lead)
        if to_frr:
            tb.vm_run('mv', 'ip', 'link', 'set', 'eth0', 'down')
            vtep.garp('fmv')
        else:
            vtep.set_host_port('fmv', False)
            tb.vm_run('mv', 'ip', 'link', 'set', 'eth0', 'up')
            tb.gratuitous_arp('mv')
        time.sleep(tail)
    finally:
        results = probe.stop()
    gaps = prober.outages(results)
    summary = prober.summary(results)
    entry = lab.get('/v1/mappings?mac=%s' % MV_MAC)
    return {'to': 'frr' if to_frr else 'ovs',
            'outage_ms': round(sum(g[3] for g in gaps), 2),
            'lost': summary['lost'], 'sent': summary['sent'],
            'now_at': entry[0]['nve_ip'] if entry else None}


def export_rate(lab, routes):
    from nvo3_ryu_app.testbed.controller import free_port
    from nvo3_ryu_app.testbed.frr import FrrVtep, pick_alias
    alias, port = pick_alias(), free_port()
    vtep2 = FrrVtep(lab.tb, 'frr2', FRR2_VTEP, RELAY2, FRR_AS, APP_AS, port,
                    alias, VNID)
    worker = None
    try:
        vtep2.start()
        worker = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--export-worker',
             '--port', str(port), '--alias', alias, '--routes', str(routes)],
            stdout=subprocess.PIPE, text=True, bufsize=1)
        start = json.loads(worker.stdout.readline())['start']
        cpu0 = _cpu(worker.pid)
        handed = {}
        reader = threading.Thread(target=lambda: handed.update(
            json.loads(worker.stdout.readline())), daemon=True)
        reader.start()
        done = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            peers = vtep2.vtysh_json('show bgp l2vpn evpn summary json').get(
                'peers', {})
            if peers.get(RELAY2, {}).get('pfxRcd', 0) >= routes:
                done = time.time()
                break
            time.sleep(0.1)
        reader.join(timeout=5)
        seconds = None if done is None else done - start
        return {'routes': routes,
                'seconds_to_frr': None if seconds is None else round(seconds, 2),
                'routes_per_s': None if not seconds else round(routes / seconds),
                'handed_to_os_ken_s': round(handed['handed_to_os_ken'] - start, 2)
                if 'handed_to_os_ken' in handed else None,
                'speaker_cpu_s': round(_cpu(worker.pid) - cpu0, 2),
                # the rate one free core would give: the machine is shared
                'routes_per_cpu_s': round(routes / max(0.01, _cpu(worker.pid) - cpu0)),
                'loadavg': [round(x, 2) for x in os.getloadavg()]}
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        vtep2.stop()


def _cpu(pid):
    with open('/proc/%d/stat' % pid) as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run(args):
    import benchenv
    from nvo3_ryu_app.testbed.builder import _require_root_and_tools
    from nvo3_ryu_app.testbed.controller import free_port
    from nvo3_ryu_app.testbed.frr import FrrHost, FrrVtep, ns_exec, pick_alias
    from nvo3_ryu_app.testbed.lab import Lab
    _require_root_and_tools()
    alias, port = pick_alias(), free_port()
    extra = ('bgp_as = %d\nbgp_router_id = %s\nbgp_listen_host = 127.0.0.1\n'
             'bgp_listen_port = %d\nbgp_neighbors = %s:%d\n'
             % (APP_AS, ROUTER_ID, port, alias, FRR_AS))
    lab = Lab(os.path.join(ROOT, 'topologies', 'evpn.yaml'),
              extra_ini=extra).start()
    vtep = None
    t_start = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        lab.request('PATCH', '/v1/vns/%d' % VNID, {'evpn': True})
        vtep = FrrVtep(lab.tb, 'frr1', FRR_VTEP, ROUTER_ID, FRR_AS, APP_AS,
                       port, alias, VNID,
                       hosts=[FrrHost('f1', F1_MAC, F1_IP + '/24'),
                              FrrHost('fmv', MV_MAC, MV_IP + '/24')],
                       # moves back and forth are the point here
                       evpn_extra=['dup-addr-detection max-moves 1000 time 1800'])
        vtep.start()
        ns_exec(vtep.netns, 'ip', 'link', 'set', vtep.host_port('fmv'), 'down')
        lab.wait_sync()
        lab.wait_for(vtep.session_up, timeout=30, what='BGP session')
        assert all(lab.reach('vm2', ['192.168.50.1', MV_IP]).values())
        lab.wait_sync()
        conv = convergence(lab, vtep, args.rounds)
        moves = []
        for _ in range(args.moves):
            moves.append(one_move(lab, vtep, True))
            moves.append(one_move(lab, vtep, False))
        export = export_rate(lab, args.routes) if args.routes else None
    finally:
        if vtep is not None:
            vtep.stop()
        problems = lab.stop()
    ok = [c for c in conv if c is not None]
    result = {
        'benchmark': 'evpn',
        'new_ts_to_frr_fdb_ms': {'rounds': len(conv), 'missed': len(conv) - len(ok),
                                 'p50': pct(ok, 0.5), 'p95': pct(ok, 0.95),
                                 'min': min(ok) if ok else None,
                                 'max': max(ok) if ok else None},
        'moves': moves,
        'move_outage_ms': {
            d: {'p50': pct([m['outage_ms'] for m in moves if m['to'] == d], 0.5),
                'max': max([m['outage_ms'] for m in moves if m['to'] == d] or [0])}
            for d in ('frr', 'ovs')},
        'export': export,
        'app_problems': problems,
        'elapsed_s': round(time.monotonic() - t_start, 1),
        'machine': benchenv.machine(), 'code': benchenv.code(),
        'command': ' '.join(['.venv/bin/python', 'benchmarks/evpn_bench.py']
                            + sys.argv[1:]),
        'loadavg': [load_start, [round(x, 2) for x in os.getloadavg()]],
        'per_round_ms': conv,
    }
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rounds', type=int, default=20)
    ap.add_argument('--moves', type=int, default=3,
                    help='moves to FRR and back (each counts two)')
    ap.add_argument('--routes', type=int, default=10000,
                    help='routes to export for the rate (0: skip)')
    ap.add_argument('--out', default=os.path.join(HERE, 'results', 'evpn.json'))
    ap.add_argument('--export-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--port', type=int, help=argparse.SUPPRESS)
    ap.add_argument('--alias', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.export_worker:
        return export_worker(args)
    import benchenv
    result = run(args)
    benchenv.write_json(args.out, result)
    c = result['new_ts_to_frr_fdb_ms']
    print('\nnew tenant system, first frame on nve1 -> FRR kernel FDB entry: '
          'p50 %s ms, p95 %s ms (min %s, max %s; %d rounds, %d missed)'
          % (c['p50'], c['p95'], c['min'], c['max'], c['rounds'], c['missed']))
    for m in result['moves']:
        print('move to %-3s: outage %7.1f ms, %d of %d probes lost, now at %s'
              % (m['to'], m['outage_ms'], m['lost'], m['sent'], m['now_at']))
    e = result['export']
    if e:
        print('export: %d MAC/IP routes -> FRR in %s s = %s routes/s '
              '(handed to os-ken in %s s; speaker CPU %s s = %s routes per '
              'CPU second; load %s)'
              % (e['routes'], e['seconds_to_frr'], e['routes_per_s'],
                 e['handed_to_os_ken_s'], e['speaker_cpu_s'],
                 e['routes_per_cpu_s'], e['loadavg']))
    print('app problems: %d' % len(result['app_problems']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
