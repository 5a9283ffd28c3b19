"""The authority's decisions alone: CPU and memory per attachment, no I/O.

capacity_bench.py measures the whole app (os-ken, sockets, the event loop,
the journal's fsync) against simulated NVEs.  This one runs the same
fleet and the same packet-ins in-process, without os-ken or sockets, to
separate the cost of the decisions from the cost of the I/O around them:
for each attachment, ``Authority.packet_in`` (parse, learn, commit to an
in-memory store, plan the flows of every member NVE), then every changed
NVE's ``take_changes`` and the OpenFlow bytes of each change
(``ofwire.encode``), as the app's drain does (the channel's batch and
barrier bookkeeping, service.py and southbound/channel.py, is not part of
it, nor are os-ken and the sockets).

Figures: CPU time per attachment (process time) and what that means in
attachments/s on one core; flow changes per attachment; and, with
tracemalloc, the memory the decision state holds per mapping entry, by
module (bounded caches included, so small runs overstate it).

Usage::

    .venv/bin/python benchmarks/decision_bench.py             # 20,000 TS
    .venv/bin/python benchmarks/decision_bench.py --tenants 5000

Prints a table and writes benchmarks/results/decision.json.
"""

import argparse
import gc
import os
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from nvo3_ryu_app.authority.commands import ApplyConfig  # noqa: E402
from nvo3_ryu_app.authority.authority import Authority  # noqa: E402
from nvo3_ryu_app.settings import Settings  # noqa: E402
from nvo3_ryu_app.southbound import ofwire  # noqa: E402
from nvo3_ryu_app.southbound.channel import FlowChange  # noqa: E402
from nvo3_ryu_app.southbound.flowtable import FlowTables  # noqa: E402
from nvo3_ryu_app.storage.store import MemoryStore  # noqa: E402

import benchenv  # noqa: E402
import ofswitch_sim as S  # noqa: E402

SOURCE_TABLE = 1


class Fleet:
    """An authority whose NVEs are all connected and in sync."""

    def __init__(self, nves, vn_size, ports):
        config, self.vn_of = S.fleet(nves, vn_size, ports)
        self.auth = Authority(FlowTables(), Settings(), MemoryStore())
        self.auth.execute(ApplyConfig(config), 0.0)
        self.changes = 0
        self.auth.listeners.append(self.flush)
        names = {'vxlan0': S.VXLAN_OFPORT, 'gre0': S.GRE_OFPORT}
        names.update({'p%d' % i: i for i in range(1, ports + 1)})
        for dpid in self.vn_of:
            self.auth.switch_connected(dpid, dict(names),
                                       S.int_mac(0x060000000000 | dpid), 1.0)
            self.auth.planner.table(dpid).load_installed([])
            self.flush([dpid])

    def flush(self, dpids, _now=None):
        """What the app's drain does with the changed NVEs."""
        tables = self.auth.planner.tables
        for dpid in dpids:
            for op, item in tables[dpid].take_changes():
                ofwire.encode(FlowChange(1, op, item))
                self.changes += 1


def run(args):
    fleet = Fleet(args.nves, args.vn_size, args.ports)
    frames = [(dpid, port, vnid,
               S.arp_request(mac, ip, '10.255.255.1'))
              for dpid, port, mac, ip, vnid, _ in S.tenants(
                  args.tenants, fleet.vn_of, args.ports)]
    gc.collect()
    fleet.changes = 0
    if args.memory:
        tracemalloc.start()
    traced0 = tracemalloc.take_snapshot() if args.memory else None
    started = time.process_time()
    for i, (dpid, port, vnid, data) in enumerate(frames):
        fleet.auth.packet_in(dpid, SOURCE_TABLE, port, 'p%d' % port,
                             {'reg6': 0, 'metadata': vnid}, data,
                             2.0 + i * 1e-4)
        fleet.auth.take_moves()          # the app hands them out
    cpu = time.process_time() - started
    n = len(frames)
    result = {
        'params': vars(args), 'attachments': n,
        'cpu_ms_per_attach': round(1000.0 * cpu / n, 4),
        'attach_per_s_one_core': round(n / cpu, 1),
        'flow_changes_per_attach': round(fleet.changes / n, 2)}
    if args.memory:
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(traced0, 'filename')
        tracemalloc.stop()
        by_file = {}
        for stat in stats:
            name = stat.traceback[0].filename
            if name.startswith(os.path.dirname(HERE) + os.sep):
                name = os.path.relpath(name, os.path.dirname(HERE))
            if stat.size_diff > 0 and 'decision_bench' not in name:
                by_file[name] = stat.size_diff
        top = sorted(by_file.items(), key=lambda kv: -kv[1])[:12]
        result['memory'] = {
            'bytes_per_entry': round(sum(by_file.values()) / n),
            'top_files_bytes_per_entry': [(f, round(b / n)) for f, b in top]}
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--nves', type=int, default=1000)
    ap.add_argument('--tenants', type=int, default=20000)
    ap.add_argument('--vn-size', type=int, default=10)
    ap.add_argument('--ports', type=int, default=4)
    ap.add_argument('--no-memory', dest='memory', action='store_false',
                    help='skip the (slower) tracemalloc run')
    ap.add_argument('--out', default=os.path.join(HERE, 'results',
                                                  'decision.json'))
    args = ap.parse_args(argv)
    cpu_args = argparse.Namespace(**dict(vars(args), memory=False))
    result = run(cpu_args)               # timed without tracemalloc
    if args.memory:
        result['memory'] = run(args)['memory']
    result['params'] = vars(args)
    print('decisions only (no os-ken, no sockets, in-memory store): '
          '%d NVEs, %d tenant systems, VNs of %d' % (
              args.nves, args.tenants, args.vn_size))
    print('  CPU per attachment          %.3f ms  (%.0f attachments/s on '
          'one core)' % (result['cpu_ms_per_attach'],
                         result['attach_per_s_one_core']))
    print('  flow changes per attachment %.1f' % (
        result['flow_changes_per_attach']))
    if args.memory:
        mem = result['memory']
        print('  traced memory per entry     %d bytes' % (
            mem['bytes_per_entry']))
        for name, size in mem['top_files_bytes_per_entry']:
            print('    %6d  %s' % (size, name))
    benchenv.write_json(args.out, result)
    print('wrote', args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
