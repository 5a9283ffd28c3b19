#!/usr/bin/env python3
"""The main job: the mapping authority on the draft's Figure 1, end to end.

    make demo                      # run the scenario, print a summary, tear down
    .venv/bin/python mininet/demo.py --cli   # keep it up in the Mininet CLI

Starts the app under osken-manager, builds Figure 1 of
draft-wu-nvo3-nve2nve-02 (six NVEs, each its own Open vSwitch in a network
namespace; VN1, VN2 and VN3; TS4/edge4 in both VN2 and VN3), and shows:
who reaches whom in each VN and that nothing crosses VNs, that ARP for a
known tenant system is answered by the ingress NVE with nothing on the
underlay, that a broadcast reaches member NVEs only, what the REST API
reports, and that REST writes need an admin token (a generated auth
file).  Everything it started is torn down at the end, also on failure or
Ctrl-C.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nvo3_ryu_app.testbed.lab import Lab  # noqa: E402

FIGURE1 = os.path.join(ROOT, 'topologies', 'figure1.yaml')


def table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = '  '.join('%-*s' % (w, h) for w, h in zip(widths, header))
    print('  ' + line)
    print('  ' + '  '.join('-' * w for w in widths))
    for row in rows:
        print('  ' + '  '.join('%-*s' % (w, x) for w, x in zip(widths, row)))


def step(text):
    print('\n== %s' % text, flush=True)


def reachability(lab):
    vnics = [(vm.name, v) for vm in lab.tb.topo.vms for v in vm.vnics]
    for vm in lab.tb.topo.vms:
        # Try every tenant address on-link, so cross-VN attempts are real.
        lab.tb.vm_run(vm.name, 'ip', 'route', 'add', '192.168.0.0/16', 'dev',
                      vm.vnics[0].vm_ifname)
    per_vn = {}
    leaks = []
    for src, mine in vnics:
        targets = {str(v.ip.ip): v for name, v in vnics if name != src}
        for ip, ok in lab.reach(src, sorted(targets)).items():
            same = targets[ip].vnid == mine.vnid
            stats = per_vn.setdefault(mine.vn, [0, 0, 0])
            if same:
                stats[0] += 1
                stats[1] += ok
            elif ok:
                leaks.append((src, ip))
            else:
                stats[2] += 1
    rows = [(vn, '%d/%d' % (s[1], s[0]), s[2]) for vn, s in sorted(
        per_vn.items())]
    table(rows, ('VN', 'reached in VN', 'refused across VNs'))
    return all(s[0] == s[1] for s in per_vn.values()) and not leaks


def arp_suppression(lab):
    caps = {n.name: lab.tb.start_capture(n.name) for n in lab.tb.topo.nves}
    before = lab.metric_sum('nvo3_packet_ins_received_total')
    out = lab.tb.vm_run('vm1', 'arping', '-c', '3', '-w', '3', '-I', 'eth0',
                        '192.168.1.4', check=False)
    pair = {'192.168.1.1', '192.168.1.4'}
    frames = 0
    for cap in caps.values():
        for pkt in cap.stop():
            arp = pkt.first('arp', inner=True)
            if arp is not None and {arp.src_ip, arp.dst_ip} == pair:
                frames += 1
    pins = lab.metric_sum('nvo3_packet_ins_received_total') - before
    answers = out.lower().count('02:00:00:00:01:04')
    print('  vm1 arping 192.168.1.4 (vm4 on edge2): %d answers, %d ARP frames '
          'on the underlay, %d packet-ins' % (answers, frames, pins))
    return answers >= 3 and frames == 0


def broadcast_scope(lab):
    caps = {n.name: lab.tb.start_capture(n.name) for n in lab.tb.topo.nves}
    lab.tb.vm_run('vmh', 'arping', '-c', '1', '-w', '1', '-I', 'eth0',
                  '192.168.3.200', check=False)
    seen = {}
    for name, cap in caps.items():
        seen[name] = len([p for p in cap.stop() if p.tunnel_key is not None
                          and p.first('arp', inner=True) is not None
                          and p.first('arp', inner=True).dst_ip
                          == '192.168.3.200'])
    table([(n, c) for n, c in sorted(seen.items())],
          ('underlay link', 'VN3 broadcast copies'))
    return all(seen[n] == 0 for n in ('edge1', 'edge2', 'edge3', 'edge5')) \
        and seen['edge4'] > 0


def rest_view(lab):
    vns = lab.get('/v1/vns')
    table([(v['vnid'], v['name'], v['service'], v['encap'],
            ' '.join(n[-1] for n in v.get('nves', [])) or '-')
           for v in vns], ('VNID', 'name', 'service', 'encap',
                           'member NVEs (edge#)'))
    print()
    rows = []
    for entry in lab.get('/v1/vns/1003/mappings'):
        rows.append((entry['mac'], entry['ip'] or '-', entry['nve'][-1],
                     entry['port'], entry['tunnel_if_id'] or '-'))
    print('  GET /v1/vns/1003/mappings (VN3):')
    table(rows, ('TS MAC', 'TS IP', 'NVE', 'port', 'tunnel-if-id'))
    tesid = lab.get('/v1/tesid?vnid=1003&mac=02:00:00:00:03:01')
    print('\n  TESID of vmc: <VNID %s, NVE %s, TS %s>' % (
        tesid['vnid'], tesid['nve'], tesid['ts']))
    events = lab.get('/v1/events')
    kinds = {}
    for event in events.get('events', events) if isinstance(events, dict) \
            else events:
        kinds[event['type']] = kinds.get(event['type'], 0) + 1
    print('  events so far: %s' % ', '.join(
        '%s %d' % kv for kv in sorted(kinds.items())))


def who_may(lab):
    """A write without a token, and one with the reader's, are refused."""
    body = {'vnid': 1099, 'name': 'demo'}
    rows = []
    for label, token in (('no token', None), ('reader token', 'viewer'),
                         ('admin token', 'ops')):
        status, _ = lab.request('POST', '/v1/vns', body,
                                token=lab.tokens.get(token))
        rows.append((label, status))
    table(rows, ('POST /v1/vns with', 'HTTP status'))
    lab.request('DELETE', '/v1/vns/1099')
    return [s for _, s in rows] == [401, 403, 201]


def connections(lab):
    """How often each NVE connected: once, unless something went away."""
    ups, downs = {}, {}
    for kind, seen in (('nve-up', ups), ('nve-down', downs)):
        for event in lab.get('/v1/events?type=%s&limit=1000' % kind)['events']:
            seen[event['nve']] = seen.get(event['nve'], 0) + 1
    names = {n.dpid: n.name for n in lab.tb.topo.nves}
    print('  connections: %s; disconnections: %d' % (', '.join(
        '%s %d' % (names.get(d, d), ups.get(d, 0)) for d in sorted(names)),
        sum(downs.values())))
    return not downs and all(ups.get(d) == 1 for d in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cli', action='store_true',
                        help='after the scenario, open the Mininet CLI')
    parser.add_argument('--topology', default=FIGURE1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit('demo: run as root (namespaces, Open vSwitch)')
    t0 = time.monotonic()
    results = {}
    # A generated auth file (admin token "ops", reader token "viewer"):
    # the demo shows REST as an operator sees it where auth is on.
    lab = Lab(args.topology, auth=True)
    try:
        step('starting osken-manager with nvo3_ryu_app.app and building %s'
             % os.path.basename(args.topology))
        lab.start()
        print(lab.tb.summary())
        print('  run prefixes: testbed %s, controller %s' % (
            lab.tb.prefix, lab.ctl.manifest.prefix), flush=True)
        took = lab.wait_sync()
        print('  all %d NVEs connected and in sync after %.2fs (REST %s)' % (
            len(lab.tb.topo.nves), took, lab.url('/')))
        print('  auth file %s: admin token (ops) %s, reader token (viewer) %s'
              % (lab.ctl.auth_path, lab.tokens['ops'], lab.tokens['viewer']))
        results['every NVE connected once'] = connections(lab)
        if args.topology == FIGURE1:
            step('reachability: every VM pings every other VM')
            results['reachability and isolation'] = reachability(lab)
            lab.wait_sync()
            step('ARP for a known tenant system (law 2)')
            results['ARP answered by the ingress NVE'] = arp_suppression(lab)
            step('a broadcast in VN3 (law 3)')
            results['BUM only to member NVEs'] = broadcast_scope(lab)
            step('what the REST API reports')
            rest_view(lab)
            step('who may change the network')
            results['writes need an admin token'] = who_may(lab)
        if args.cli:
            from mininet.cli import CLI
            step('Mininet CLI (NVE shells have OVS_RUNDIR set; exit to tear '
                 'down)')
            CLI(lab.tb.net)
    except KeyboardInterrupt:
        print('\ninterrupted')
        results['completed'] = False
    finally:
        step('tearing down')
        problems = lab.stop(report=False)
    step('summary (%.1fs)' % (time.monotonic() - t0))
    results['app logged no error'] = not problems
    for what, ok in results.items():
        print('  %-34s %s' % (what, 'yes' if ok else 'NO'))
    for problem in problems:          # whole, traceback included
        print('  app problem: %s' % problem.replace('\n', '\n    '))
    if lab.kept:
        print('  run directories kept for reading: %s' % ', '.join(lab.kept))
    return 0 if all(results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
