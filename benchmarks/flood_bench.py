"""Underlay frames per ARP resolution and per broadcast, app vs flooding.

The same topology (default: topologies/figure1.yaml, six NVEs, three VNs,
VXLAN and GRE) is built twice in one run:

* ``app``: the mapping authority (osken-manager + this app) programs every
  NVE (ARP answered by the ingress NVE, BUM replicated to member NVEs);
* ``baseline``: flood-and-learn (``Testbed(standalone=True)``): standalone
  OVS NVEs, a full mesh of VXLAN/GRE tunnels per VN between its member
  NVEs, MAC learning (NORMAL), split horizon between tunnels.

For each (source VM, target VM) pair, ``--reps`` times: the target is made
known first (one ping both ways, and in app mode every NVE in sync), the
source's neighbour cache is flushed, then ``arping -c 1`` resolves the
target once.  Per broadcast: ``arping -c 1`` for an address nobody has
(one broadcast ARP request from one VM).  tcpdump runs on every NVE's
underlay link; a tunnelled frame is counted once, on its sender's link
(outer source = that NVE's VTEP), when it is the resolution's ARP request
or its reply (or the broadcast ARP request for the unused address); other
ARP about the target (its own neighbour refresh) is counted apart.  "Per remote VTEP" divides by the VN's member NVEs
other than the source's.

Prints a comparison table and writes benchmarks/results/flood.json.

Usage: sudo .venv/bin/python benchmarks/flood_bench.py [--reps 5]
"""

import argparse
import os
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import benchenv  # noqa: E402

RESULTS = os.path.join(HERE, 'results', 'flood.json')
TOPOLOGY = os.path.join(ROOT, 'topologies', 'figure1.yaml')
BPF = 'udp port 4789 or ip proto 47'


def pick_pairs(topo, limit):
    """Per VN: its first VM towards the first VM on every other member NVE."""
    pairs = []
    for vn in topo.vns:
        firsts = []
        for n in topo.nves_of(vn.vnid):
            vms = [(vm, v, n) for vm in topo.vms_on(n.name) for v in vm.vnics
                   if v.vnid == vn.vnid and v.ip is not None]
            if vms:
                firsts.append(vms[0])
        pairs += [(firsts[0], dst) for dst in firsts[1:]]
    return pairs[:limit]


def unused_ip(topo, vnic):
    """An address of the vNIC's subnet that no vNIC has."""
    taken = {str(v.ip.ip) for v in topo.vnics if v.ip is not None}
    for host in reversed(list(vnic.ip.network.hosts())):
        if str(host) not in taken:
            return str(host)
    raise RuntimeError('no free address in %s' % vnic.ip.network)


class Mode:
    """One build of the topology: the app (Lab) or the baseline (Testbed)."""

    def __init__(self, name, topology):
        self.name = name
        self.topology = topology
        self.lab = self.tb = None

    def __enter__(self):
        from nvo3_ryu_app.testbed.builder import Testbed
        from nvo3_ryu_app.testbed.lab import Lab
        if self.name == 'app':
            self.lab = Lab(self.topology).start()
            self.tb = self.lab.tb
            self.lab.wait_sync()
        else:
            self.tb = Testbed(self.topology, standalone=True).start()
        for vm in self.tb.topo.vms:   # quiet VMs: no IPv6 chatter
            self.tb.vm_run(vm.name, 'sysctl', '-q', '-w',
                           'net.ipv6.conf.all.disable_ipv6=1',
                           'net.ipv6.conf.default.disable_ipv6=1')
        return self

    def __exit__(self, *exc):
        self.problems = []
        if self.lab is not None:
            self.problems = self.lab.stop()
        elif self.tb is not None:
            self.tb.stop()

    def settle(self):
        if self.lab is not None:
            self.lab.wait_sync()
        time.sleep(0.3)

    def packet_ins(self):
        if self.lab is None:
            return None
        return self.lab.metric_sum('nvo3_packet_ins_received_total')


def count_frames(mode, caps, src_ip, dst_ip):
    """Tunnelled frames of the ARP exchange ``src_ip`` -> ``dst_ip`` (the
    request, and the reply back), each counted once (on its sender's
    underlay link); other ARP about ``dst_ip`` (the target's own neighbour
    refresh, say) and every tunnelled frame are counted apart."""
    topo = mode.tb.topo
    vtep = {n.name: str(n.vtep_ip) for n in topo.nves}
    kinds = {'request': 0, 'reply': 0, 'other_arp': 0, 'all': 0}
    for nve, cap in caps.items():
        for pkt in cap.stop():
            outer = pkt.first('ipv4')
            if pkt.tunnel_key is None or outer is None or \
                    outer.src != vtep[nve]:
                continue
            kinds['all'] += 1
            arp = pkt.first('arp', inner=True)
            if arp is None:
                continue
            if arp.opcode == 1 and arp.dst_ip == dst_ip and \
                    arp.src_ip == src_ip:
                kinds['request'] += 1
            elif arp.opcode == 2 and arp.src_ip == dst_ip and \
                    arp.dst_ip == src_ip:
                kinds['reply'] += 1
            elif dst_ip in (arp.src_ip, arp.dst_ip):
                kinds['other_arp'] += 1
    return kinds


def capture_all(mode):
    return {n.name: mode.tb.start_capture(n.name, BPF)
            for n in mode.tb.topo.nves}


def arp_resolution(mode, src, dst, reps):
    (svm, sv, snve), (dvm, dv, dnve) = src, dst
    tb = mode.tb
    sip, dip = str(sv.ip.ip), str(dv.ip.ip)
    # Make each known to the other (and, in app mode, to the authority).
    assert tb.ping(svm.name, dip, count=1, timeout=2), (svm.name, dip)
    assert tb.ping(dvm.name, sip, count=1, timeout=2), (dvm.name, sip)
    mode.settle()
    pins0 = mode.packet_ins()
    caps = capture_all(mode)
    answered = 0
    for _ in range(reps):
        tb.vm_run(svm.name, 'ip', 'neigh', 'flush', 'all')
        out = tb.vm_run(svm.name, 'arping', '-c', '1', '-w', '1', '-i',
                        sv.vm_ifname, dip, check=False)
        answered += dv.mac.lower() in out.lower()
        time.sleep(0.2)
    time.sleep(0.3)
    kinds = count_frames(mode, caps, sip, dip)
    about = kinds['request'] + kinds['reply']
    pins = mode.packet_ins()
    remote = len(tb.topo.nves_of(sv.vnid)) - 1
    return {
        'src': svm.name, 'dst': dvm.name, 'vn': tb.topo.vn(sv.vnid).name,
        'encap': tb.topo.vn(sv.vnid).encap, 'src_nve': snve.name,
        'dst_nve': dnve.name, 'remote_vteps': remote, 'reps': reps,
        'answered': answered,
        'frames_per_resolution': round(about / reps, 2),
        'requests_per_resolution': round(kinds['request'] / reps, 2),
        'replies_per_resolution': round(kinds['reply'] / reps, 2),
        'frames_per_resolution_per_remote_vtep': round(
            about / reps / remote, 2),
        'other_arp_frames_per_resolution': round(kinds['other_arp'] / reps,
                                                 2),
        'all_tunnel_frames': kinds['all'],
        'packet_ins': None if pins is None else pins - pins0}


def broadcast(mode, src, reps):
    svm, sv, snve = src
    tb = mode.tb
    ghost = unused_ip(tb.topo, sv)
    mode.settle()
    caps = capture_all(mode)
    for _ in range(reps):
        tb.vm_run(svm.name, 'arping', '-c', '1', '-w', '0.3', '-i',
                  sv.vm_ifname, ghost, check=False)
        time.sleep(0.2)
    time.sleep(0.3)
    kinds = count_frames(mode, caps, str(sv.ip.ip), ghost)
    about, total = kinds['request'], kinds['all']
    remote = len(tb.topo.nves_of(sv.vnid)) - 1
    return {'src': svm.name, 'vn': tb.topo.vn(sv.vnid).name,
            'encap': tb.topo.vn(sv.vnid).encap, 'target': ghost,
            'remote_vteps': remote, 'fleet_nves': len(tb.topo.nves),
            'reps': reps,
            'frames_per_broadcast': round(about / reps, 2),
            'frames_per_broadcast_per_remote_vtep': round(
                about / reps / remote, 2),
            'all_tunnel_frames': total}


def run_mode(name, args):
    from nvo3_ryu_app.testbed import load_topology
    topo = load_topology(args.topology)
    pairs = pick_pairs(topo, args.pairs)
    out = {'mode': name, 'arp': [], 'broadcast': []}
    t0 = time.time()
    with Mode(name, args.topology) as mode:
        for src, dst in pairs:
            row = arp_resolution(mode, src, dst, args.reps)
            out['arp'].append(row)
            print('  [%s] ARP %s -> %s (%s, %d remote VTEPs): %.2f frames '
                  '(%.2f requests, %.2f replies; other ARP %.2f), answered '
                  '%d/%d, packet-ins %s' % (
                      name, row['src'], row['dst'], row['vn'],
                      row['remote_vteps'], row['frames_per_resolution'],
                      row['requests_per_resolution'],
                      row['replies_per_resolution'],
                      row['other_arp_frames_per_resolution'], row['answered'],
                      row['reps'], row['packet_ins']), flush=True)
        srcs = {}
        for src, _dst in pairs:
            srcs.setdefault(src[0].name, src)
        for src in srcs.values():
            row = broadcast(mode, src, args.reps)
            out['broadcast'].append(row)
            print('  [%s] broadcast from %s (%s, %d remote VTEPs of %d NVEs):'
                  ' %.2f frames' % (name, row['src'], row['vn'],
                                    row['remote_vteps'], row['fleet_nves'],
                                    row['frames_per_broadcast']), flush=True)
    out['problems'] = getattr(mode, 'problems', [])
    out['runtime_s'] = round(time.time() - t0, 1)
    return out


def mean(rows, key):
    return round(statistics.mean(r[key] for r in rows), 2) if rows else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--topology', default=TOPOLOGY)
    ap.add_argument('--reps', type=int, default=5,
                    help='ARP resolutions (and broadcasts) per pair')
    ap.add_argument('--pairs', type=int, default=6)
    ap.add_argument('--out', default=RESULTS)
    args = ap.parse_args(argv)
    from nvo3_ryu_app.testbed.builder import _require_root_and_tools
    _require_root_and_tools()
    started = time.time()
    modes = {}
    for name in ('app', 'baseline'):
        print('%s:' % ('mapping authority (this app)' if name == 'app'
                       else 'flood-and-learn baseline (standalone OVS)'))
        modes[name] = run_mode(name, args)

    print('\n%-16s %-5s %6s | %10s | %10s %8s %8s %9s' % (
        'ARP resolution', 'VN', 'remote', 'app', 'baseline', 'requests',
        'replies', 'req/VTEP'))
    for a, b in zip(modes['app']['arp'], modes['baseline']['arp']):
        print('%-16s %-5s %6d | %10.2f | %10.2f %8.2f %8.2f %9.2f' % (
            '%s -> %s' % (a['src'], a['dst']), a['vn'], a['remote_vteps'],
            a['frames_per_resolution'], b['frames_per_resolution'],
            b['requests_per_resolution'], b['replies_per_resolution'],
            b['requests_per_resolution'] / b['remote_vteps']))
    print('\n%-16s %-5s %6s | %10s | %10s' % (
        'one broadcast', 'VN', 'remote', 'app', 'baseline'))
    for a, b in zip(modes['app']['broadcast'], modes['baseline']['broadcast']):
        print('%-16s %-5s %6d | %10.2f | %10.2f' % (
            'from %s' % a['src'], a['vn'], a['remote_vteps'],
            a['frames_per_broadcast'], b['frames_per_broadcast']))
    print('(underlay frames, each counted once on its sender\'s link; '
          '"remote" = member NVEs of the VN other than the sender\'s)')
    summary = {}
    for name, res in modes.items():
        summary[name] = {
            'arp_frames_per_resolution_mean': mean(
                res['arp'], 'frames_per_resolution'),
            'arp_frames_per_remote_vtep_mean': mean(
                res['arp'], 'frames_per_resolution_per_remote_vtep'),
            'arp_requests_per_remote_vtep_mean': round(statistics.mean(
                r['requests_per_resolution'] / r['remote_vteps']
                for r in res['arp']), 2) if res['arp'] else None,
            'arp_packet_ins': (sum(r['packet_ins'] for r in res['arp'])
                               if name == 'app' else None),
            'arp_answered': sum(r['answered'] for r in res['arp']),
            'arp_resolutions': sum(r['reps'] for r in res['arp']),
            'broadcast_frames_mean': mean(
                res['broadcast'], 'frames_per_broadcast'),
            'broadcast_frames_per_remote_vtep_mean': mean(
                res['broadcast'], 'frames_per_broadcast_per_remote_vtep')}
    target_ok = (summary['app']['arp_frames_per_resolution_mean'] == 0
                 and summary['app']['arp_answered']
                 == summary['app']['arp_resolutions'])
    print('\nknown-target ARP: app %.2f frames/resolution, baseline %.2f '
          '(%.2f requests per remote VTEP); target "zero underlay frames": %s'
          % (summary['app']['arp_frames_per_resolution_mean'],
             summary['baseline']['arp_frames_per_resolution_mean'],
             summary['baseline']['arp_requests_per_remote_vtep_mean'],
              'met' if target_ok else 'MISSED'))
    result = {
        'benchmark': 'flood', 'date': benchenv.now_iso(),
        'machine': benchenv.machine(), 'code': benchenv.code(),
        'command': shlex.join(['.venv/bin/python',
                               'benchmarks/flood_bench.py']
                              + (argv if argv is not None else sys.argv[1:])),
        'topology': os.path.relpath(args.topology, ROOT),
        'summary': summary, 'target_met': target_ok, 'modes': modes,
        'runtime_s': round(time.time() - started, 1)}
    benchenv.write_json(args.out, result)
    print('wrote %s' % args.out)
    problems = modes['app'].get('problems') or []
    return 0 if target_ok and not problems else 1


if __name__ == '__main__':
    sys.exit(main())
