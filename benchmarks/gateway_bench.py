"""Through a gateway against within one VN (draft 4.3), on the testbed.

One run of topologies/gateway.yaml (NVEs n1, n2, gateway gw; every NVE a
userspace-datapath OVS in its namespace, the machine's cores shared by all):

* TCP throughput (iperf3, ``--seconds`` per run) and round-trip time
  (median of ``--pings`` echoes 50 ms apart) for each path, the paths
  interleaved run by run so that the machine's load falls on all alike:
  within VN A (a1 on n1 -> a2 on n2, VXLAN) and through the gateway:
  a1 -> b1 (l3 + l3, VXLAN -> GRE), f1 -> a1 (l2 + l3 router, VXLAN ->
  VXLAN, out of the port it came in by), c1 -> d1 (l2 + l2, Geneve ->
  VXLAN);
* flows: what each interconnect's cookie holds on the gateway and on the
  member NVEs; per routed host (l3 + l3) and per allowed MAC (l2 + l2,
  from the allowed list grown by two MACs);
* time from a ``PUT /v1/interconnects/ab`` (after a DELETE) to the first
  echo crossing it: a prober in a1 pings b1 every 10 ms; the figure is the
  arrival of the first reply to a probe sent after the PUT was sent.

Prints a table and writes benchmarks/results/gateway.json.

Usage: sudo .venv/bin/python benchmarks/gateway_bench.py [--runs 3]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import benchenv  # noqa: E402

from nvo3_ryu_app.authority.owners import IcOwner, cookie_for  # noqa: E402
from nvo3_ryu_app.testbed import migration, procs  # noqa: E402
from nvo3_ryu_app.testbed import prober as prober_mod  # noqa: E402
from nvo3_ryu_app.testbed.lab import Lab  # noqa: E402

RESULTS = os.path.join(HERE, 'results', 'gateway.json')
TOPOLOGY = os.path.join(ROOT, 'topologies', 'gateway.yaml')
GW = '00000000000000ff'
# (label, source VM, destination VM, destination address)
PATHS = [
    ('within VN A (vxlan, n1 -> n2)', 'a1', 'a2', '10.1.0.2'),
    ('via gw, l3+l3 A vxlan -> B gre', 'a1', 'b1', '10.2.0.1'),
    ('via gw, l2+l3 F vxlan -> A vxlan (same port)', 'f1', 'a1', '10.1.0.1'),
    ('via gw, l2+l2 C geneve -> D vxlan', 'c1', 'd1', '10.3.0.11'),
]


def announce_all(lab):
    tb = lab.tb
    for vm in tb.topo.vms:
        tb.gratuitous_arp(vm.name)
    for host in tb.topo.ext_hosts:
        procs.run_in(tb.vms[host.name].pid,
                     ['/usr/bin/python3', '-S', '-c', migration._GARP_PY,
                      'eth0', host.mac, str(host.ip.ip), '1', '0.02'])
    for vm in tb.topo.vms:
        ip = str(vm.vnics[0].ip.ip)
        lab.wait_for(lambda ip=ip: lab.get('/v1/mappings?ip=%s' % ip),
                     timeout=15, what='%s learned' % vm.name)
    lab.wait_sync()


def iperf(lab, src, dst, ip, seconds):
    """TCP throughput src -> dst in Mbit/s (receiver side)."""
    server = subprocess.Popen(
        ['mnexec', '-a', str(lab.tb.vm(dst).pid), 'iperf3', '-s', '-1',
         '-B', ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        out = None
        for _ in range(50):          # until the server listens
            res = procs.run_in(lab.tb.vm(src).pid,
                               ['iperf3', '-c', ip, '-t', str(seconds), '-J'],
                               check=False, timeout=seconds + 30)
            try:
                got = json.loads(res.stdout)
            except ValueError:
                got = {}
            # A client that came before the server listened reports an
            # error (and no sum): try again.
            if res.returncode == 0 and 'sum_received' in got.get('end', {}):
                out = got
                break
            time.sleep(0.1)
        if out is None:
            return None
        return out['end']['sum_received']['bits_per_second'] / 1e6
    finally:
        procs.kill_pid(server.pid, group=True)
        server.wait(timeout=5)


def rtt(lab, src, ip, count):
    out = lab.tb.vm_run(src, 'ping', '-n', '-c', str(count), '-i', '0.05',
                        '-W', '1', ip, check=False, timeout=count + 30)
    times = [float(t) for t in re.findall(r'time=([0-9.]+) ms', out)]
    return (statistics.median(times) if times else None), len(times)


def flows_of(lab, name):
    cookie = 'cookie=0x%x,' % cookie_for(IcOwner(name))
    return {nve: sum(cookie in f for f in lab.dump_flows(nve))
            for nve in ('gw', 'n1', 'n2')}


def put(lab, name, body):
    status, reply = lab.request('PUT', '/v1/interconnects/%s' % name, body)
    assert status in (200, 201), (status, reply)
    lab.wait_sync()


def flow_figures(lab):
    out = {name: flows_of(lab, name) for name in ('ab', 'cd', 'fa')}
    hosts = {name: len(lab.get('/v1/vns/%d/mappings' % vnid))
             for name, vnid in (('A', 2001), ('B', 2002))}
    cd = lab.get('/v1/interconnects/cd')
    body = {'gateway': cd['gateway'], 'vns': cd['vns']}
    grown = dict(body, allowed_macs=cd['allowed_macs'] + [
        '02:00:00:00:0c:02', '02:00:00:00:0d:02'])
    put(lab, 'cd', grown)
    more = flows_of(lab, 'cd')
    put(lab, 'cd', dict(body, allowed_macs=cd['allowed_macs']))
    return {'per_interconnect': out, 'hosts_in_vn': hosts,
            'cd_allowed_2': out['cd'], 'cd_allowed_4': more,
            'gw_flows_per_allowed_mac': (more['gw'] - out['cd']['gw']) / 2.0,
            'nve_flows_per_allowed_mac': (
                more['n1'] + more['n2'] - out['cd']['n1'] - out['cd']['n2'])
            / 2.0,
            'gw_flows_per_routed_host_ab': out['ab']['gw'] / float(
                hosts['A'] + hosts['B'])}


def put_to_first_crossing(lab, reps):
    ab = lab.get('/v1/interconnects/ab')
    body = json.dumps({'gateway': ab['gateway'], 'vns': ab['vns']}).encode()
    out = []
    for i in range(reps):
        status, _ = lab.request('DELETE', '/v1/interconnects/ab')
        assert status == 204
        lab.wait_sync()
        path = os.path.join(lab.tb.rundir, 'probe-put-%d.json' % i)
        prober = prober_mod.start(lab.tb.vm('a1').pid, '10.2.0.1', path,
                                  interval=0.01, duration=15)
        try:
            time.sleep(0.3)                     # lost probes before the PUT
            req = urllib.request.Request(
                lab.url('/v1/interconnects/ab'), data=body, method='PUT',
                headers={'Content-Type': 'application/json'})
            sent = time.time()
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 201
            answered = time.time()
            lab.wait_sync()
            time.sleep(0.3)
            results = prober.stop()
        finally:
            prober.kill()
        first = next((p for p in results['probes']
                      if p['sent'] >= sent and not p['lost']), None)
        before = [p for p in results['probes'] if p['sent'] < sent - 0.05]
        out.append({
            'put_reply_ms': (answered - sent) * 1000,
            'first_crossing_ms': ((first['sent'] + first['rtt_ms'] / 1000.0
                                   - sent) * 1000) if first else None,
            'lost_before_put': sum(p['lost'] for p in before),
            'probes_before_put': len(before)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=3)
    ap.add_argument('--pings', type=int, default=40)
    ap.add_argument('--put-reps', type=int, default=5)
    ap.add_argument('--out', default=RESULTS)
    args = ap.parse_args(argv)
    result = {'benchmark': 'gateway', 'topology': 'topologies/gateway.yaml',
              'runs': args.runs, 'seconds': args.seconds,
              'pings': args.pings, 'load_before': benchenv.loadavg()}
    lab = Lab(TOPOLOGY).start()
    problems = None
    try:
        lab.wait_sync()
        announce_all(lab)
        per_path = {label: {'mbit': [], 'rtt_ms': []}
                    for label, _s, _d, _i in PATHS}
        for run in range(args.runs):
            for label, src, dst, ip in PATHS:
                got = per_path[label]
                median_rtt, _n = rtt(lab, src, ip, args.pings)
                got['rtt_ms'].append(median_rtt)
                got['mbit'].append(iperf(lab, src, dst, ip, args.seconds))
                print('run %d %-45s %s Mbit/s, %s ms' % (
                    run, label, got['mbit'][-1], median_rtt), flush=True)
        result['paths'] = [
            dict(path=label, src=src, dst=dst, **per_path[label],
                 mbit_median=statistics.median(
                     [x for x in per_path[label]['mbit'] if x is not None]
                     or [0]),
                 rtt_ms_median=statistics.median(
                     [x for x in per_path[label]['rtt_ms'] if x is not None]
                     or [0]))
            for label, src, dst, _ip in PATHS]
        result['flows'] = flow_figures(lab)
        result['put_to_first_crossing'] = crossings = put_to_first_crossing(
            lab, args.put_reps)
        firsts = [c['first_crossing_ms'] for c in crossings
                  if c['first_crossing_ms'] is not None]
        result['put_to_first_crossing_ms_median'] = \
            statistics.median(firsts) if firsts else None
    finally:
        problems = lab.stop()
    result['app_problems'] = problems
    result['load_after'] = benchenv.loadavg()
    within = result['paths'][0]
    print('\n%-45s %10s %9s' % ('path', 'Mbit/s', 'RTT ms'))
    for p in result['paths']:
        print('%-45s %10.0f %9.3f' % (p['path'], p['mbit_median'],
                                       p['rtt_ms_median']))
        p['mbit_vs_within'] = p['mbit_median'] / within['mbit_median'] \
            if within['mbit_median'] else None
        p['rtt_extra_ms'] = p['rtt_ms_median'] - within['rtt_ms_median']
    f = result['flows']
    print('flows per interconnect (gw, n1, n2):', f['per_interconnect'])
    print('gateway flows per allowed MAC: %.1f; per routed host (ab): %.2f'
          % (f['gw_flows_per_allowed_mac'], f['gw_flows_per_routed_host_ab']))
    print('PUT -> first packet crossing, median of %d: %s ms' % (
        len(firsts), result['put_to_first_crossing_ms_median']))
    benchenv.write_json(args.out, result)
    return 0 if not problems else 1


if __name__ == '__main__':
    sys.exit(main())
