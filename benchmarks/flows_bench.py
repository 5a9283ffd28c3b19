"""Flows per NVE as the fleet, VNs and tenant systems grow.

Pure computation, no Mininet, no switch: the app's own MappingDB, Planner and
Authority (with an in-memory store) compute what every NVE must hold, exactly
as the running app does before it sends the differences.

Fleet layout (every fleet size): each VN spans ``--vn-size`` NVEs (default 4),
each NVE is in ``--vns-per-nve`` VNs (default 2; consecutive VNs overlap by
half), each NVE has ``--ts`` tenant systems (default 4) in each of its VNs,
one access port each.  So every NVE sees the same own memberships whatever
the fleet size; only the fleet grows.

Five sweeps:

1. fleet 10 -> 1,000 NVEs: flows per NVE (min / median / max) must stay flat;
2. one NVE (in the 1,000-NVE fleet) joins more VNs (each VN of the same
   shape): its flows grow with its own memberships; an NVE outside those VNs
   does not change;
3. more tenant systems per NVE per VN (fleet of 100): flows grow with the
   tenant systems of the NVE's own VNs;
4. planner cost, 1,000-NVE fleet: one incremental attach (learn + commit:
   persist to the memory store + plan, as every commit does; and the
   planner's part alone) against a full recompute of one NVE and of the
   whole fleet.

Prints tables and writes benchmarks/results/flows.json.

Usage: .venv/bin/python benchmarks/flows_bench.py [--quick]
(--quick: smaller sweeps, written to results/flows-quick.json)
"""

import argparse
import os
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nvo3_ryu_app.authority import pipeline as P  # noqa: E402
from nvo3_ryu_app.authority.authority import Authority  # noqa: E402
from nvo3_ryu_app.settings import Settings  # noqa: E402
from nvo3_ryu_app.storage.store import MemoryStore  # noqa: E402
from nvo3_ryu_app.southbound.flowtable import FlowTables  # noqa: E402

sys.path.insert(0, HERE)
import benchenv  # noqa: E402

RESULTS = os.path.join(HERE, 'results', 'flows.json')


def vtep(dpid):
    return '10.%d.%d.%d' % (dpid >> 16 & 255, dpid >> 8 & 255, dpid & 255)


class Fleet:
    """An Authority whose database holds a regular fleet (see module doc)."""

    def __init__(self, nves, vn_size=4, vns_per_nve=2, ts=4):
        if vn_size % vns_per_nve:
            raise SystemExit('--vn-size must be a multiple of --vns-per-nve')
        stride = vn_size // vns_per_nve
        if nves % stride or nves < vn_size:
            raise SystemExit('fleet size %d must be a multiple of %d and at '
                             'least %d' % (nves, stride, vn_size))
        self.auth = Authority(FlowTables(), Settings(), MemoryStore())
        self.db = self.auth.db
        self.n, self.vn_size, self.ts = nves, vn_size, ts
        self.next_vnid = 1
        self.next_mac = 0
        self.ports = {d: 0 for d in range(1, nves + 1)}
        t0 = time.perf_counter()
        for dpid in range(1, nves + 1):
            self.db.register_nve(dpid, vtep(dpid))
        # VN v spans NVEs stride*v .. stride*v + vn_size - 1 (mod n).
        self.vn_members = {}
        for v in range(nves // stride):
            members = [(stride * v + k) % nves + 1 for k in range(vn_size)]
            self.add_vn(members, commit=False)
        self.connect_all()
        self.auth.commit(0.0)
        self.build_s = time.perf_counter() - t0

    def connect_all(self):
        for dpid in range(1, self.n + 1):
            self._connect(dpid)

    def _connect(self, dpid):
        nve = self.db.nves[dpid]
        ports = {'vxlan0': 1000, 'gre0': 1001}
        ports.update({name: i + 1 for i, name in enumerate(sorted(
            nve.bindings, key=lambda s: int(s[1:])))})
        self.db.nve_connected(dpid, ports, '02:ff:00:%02x:%02x:%02x' % (
            dpid >> 16 & 255, dpid >> 8 & 255, dpid & 255), 0.0)

    def new_mac(self):
        self.next_mac += 1
        n = self.next_mac
        return '02:00:%02x:%02x:%02x:%02x' % (n >> 24 & 255, n >> 16 & 255,
                                              n >> 8 & 255, n & 255)

    @staticmethod
    def ip_of(mac):
        """Every tenant system has one IPv4 address (in 100.64.0.0/10)."""
        n = int(mac.replace(':', '')[4:], 16)
        return '100.%d.%d.%d' % (64 + (n >> 16 & 63), n >> 8 & 255, n & 255)

    def add_vn(self, members, commit=True, ts=None):
        """A VN over ``members``, ``ts`` tenant systems on each."""
        vnid = self.next_vnid
        self.next_vnid += 1
        self.db.create_vn(vnid, 'vn%d' % vnid)
        self.vn_members[vnid] = list(members)
        for dpid in members:
            for _ in range(self.ts if ts is None else ts):
                self.attach(dpid, vnid, learn=False)
        if commit:
            for dpid in members:      # the new ports appear on the switch
                self._connect(dpid)
            for dpid in members:
                self._learn_pending(dpid)
            self.auth.commit(0.0)
        return vnid

    def attach(self, dpid, vnid, learn=True):
        """Bind a fresh port of ``dpid`` to ``vnid``; a fresh MAC on it."""
        self.ports[dpid] += 1
        port = 'p%d' % self.ports[dpid]
        self.db.bind_port(dpid, port, vnid=vnid)
        mac = self.new_mac()
        self._pending = getattr(self, '_pending', {})
        self._pending.setdefault(dpid, []).append((port, mac))
        if learn:
            self._learn_pending(dpid)
        return port, mac

    def _learn_pending(self, dpid):
        for port, mac in self._pending.pop(dpid, []):
            self.db.learn(dpid, port, None, mac, self.ip_of(mac), 1.0)

    def learn_all(self):
        for dpid in list(getattr(self, '_pending', {})):
            self._learn_pending(dpid)
        self.auth.commit(1.0)

    def flows(self, dpid):
        """(flows, meters) NVE ``dpid`` must hold."""
        table = self.auth.planner.tables.get(dpid)
        items = table.desired.values() if table else ()
        meters = sum(1 for i in items if isinstance(i, P.Meter))
        return len(table.desired) - meters if table else 0, meters

    def visible_ts(self, dpid):
        return sum(len(self.db.attachments_in(v))
                   for v in self.db.flow_vns_of(dpid))


def build(nves, args, ts=None):
    fleet = Fleet(nves, args.vn_size, args.vns_per_nve,
                  args.ts if ts is None else ts)
    fleet.learn_all()
    return fleet


def sweep_fleet(args):
    rows = []
    for n in args.fleet:
        fleet = build(n, args)
        counts = [fleet.flows(d)[0] for d in range(1, n + 1)]
        rows.append({
            'nves': n, 'vns': len(fleet.db.vns),
            'tenant_systems': len(fleet.db.attachments),
            'flows_per_nve_min': min(counts),
            'flows_per_nve_median': statistics.median(counts),
            'flows_per_nve_max': max(counts),
            'meters_per_nve': fleet.flows(1)[1],
            'fleet_flows': sum(counts),
            'own_vns': len(fleet.db.flow_vns_of(1)),
            'visible_ts': fleet.visible_ts(1),
            'build_s': round(fleet.build_s, 3)})
    return rows


def sweep_own_vns(args):
    n = max(args.fleet)
    fleet = build(n, args)
    probe = 1
    # A bystander: in no VN that ``probe`` joins below.
    bystander = n // 2 + 1
    rows = []
    extra = 0
    for target in args.extra_vns:
        while extra < target:
            # The probe NVE plus vn_size - 1 others, never the bystander.
            others, k = [], 0
            while len(others) < fleet.vn_size - 1:
                d = (probe + 3 * extra + k) % n + 1
                k += 1
                if d not in (probe, bystander) and d not in others:
                    others.append(d)
            fleet.add_vn([probe] + others)
            extra += 1
        rows.append({
            'nves': n, 'probe_vns': len(fleet.db.flow_vns_of(probe)),
            'probe_visible_ts': fleet.visible_ts(probe),
            'probe_local_ts': len(fleet.db.attachments_at(probe)),
            'probe_flows': fleet.flows(probe)[0],
            'bystander_flows': fleet.flows(bystander)[0],
            'fleet_vns': len(fleet.db.vns)})
    return rows


def sweep_ts(args):
    n = min(100, max(args.fleet))
    rows = []
    for ts in args.ts_sweep:
        fleet = build(n, args, ts=ts)
        counts = [fleet.flows(d)[0] for d in range(1, n + 1)]
        rows.append({'nves': n, 'ts_per_nve_per_vn': ts,
                     'visible_ts': fleet.visible_ts(1),
                     'flows_per_nve_median': statistics.median(counts),
                     'flows_per_nve_max': max(counts)})
    return rows


def _ms(samples):
    samples = sorted(samples)
    return {'p50_ms': round(statistics.median(samples) * 1000, 3),
            'p95_ms': round(samples[int(0.95 * (len(samples) - 1))] * 1000, 3)}


def planner_cost(args):
    n = max(args.fleet)
    fleet = build(n, args)
    auth, db, planner = fleet.auth, fleet.db, fleet.auth.planner
    for table in planner.tables.values():
        table.take_changes()
    commit_times, plan_times, touched, mods = [], [], [], []
    for i in range(args.attaches):
        dpid = (i * 37) % n + 1
        vnid = sorted(db.flow_vns_of(dpid))[0]
        port = sorted(p for p, b in db.nves[dpid].bindings.items()
                      if b.vnid == vnid)[0]
        mac = fleet.new_mac()
        # What Authority.packet_in does for a new source: learn, commit.
        t0 = time.perf_counter()
        db.learn(dpid, port, None, mac, fleet.ip_of(mac), 2.0 + i)
        changed = auth.commit(2.0 + i)
        commit_times.append(time.perf_counter() - t0)
        touched.append(len(changed))
        mods.append(sum(len(planner.tables[d].take_changes())
                        for d in changed))
        # The planner alone: the same kind of change, timed around plan().
        mac = fleet.new_mac()
        db.learn(dpid, port, None, mac, fleet.ip_of(mac), 2.0 + i)
        db.take_changed_records()
        t0 = time.perf_counter()
        changed = planner.plan()
        plan_times.append(time.perf_counter() - t0)
        for d in changed:
            planner.tables[d].take_changes()
    one = []
    for dpid in range(1, min(n, 200) + 1):
        t0 = time.perf_counter()
        planner.full_recompute(dpid)
        one.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for dpid in range(1, n + 1):
        planner.full_recompute(dpid)
    fleet_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for dpid in range(1, n + 1):
        planner.expected(dpid)
    expected_s = time.perf_counter() - t0
    return {
        'nves': n, 'attaches': args.attaches,
        'attach_commit': _ms(commit_times),
        'attach_plan': _ms(plan_times),
        'attach_nves_changed_median': statistics.median(touched),
        'attach_flow_mods_median': statistics.median(mods),
        'full_recompute_one_nve': _ms(one),
        'full_recompute_fleet_ms': round(fleet_s * 1000, 1),
        'expected_fleet_ms': round(expected_s * 1000, 1),
        'speedup_attach_vs_fleet_recompute': round(
            fleet_s / statistics.median(commit_times), 0)}


#: Flows per chassis br-int counted by the OVN anchor (3 HV, geneve),
#: by total VMs: the reference this layout is compared with.
OVN_FLOWS_PER_CHASSIS = {0: 13, 12: 261, 24: 393}


def sweep_ovn_layout():
    """Flows per NVE on the OVN anchor's layout (see module doc, sweep 5)."""
    fleet = Fleet(3, vn_size=3, vns_per_nve=1, ts=0)
    vnid = min(fleet.vn_members)
    rows = []
    for per_nve in (0, 4, 8):
        for dpid in range(1, 4):
            while sum(1 for b in fleet.db.nves[dpid].bindings.values()
                      if b.vnid == vnid) < per_nve:
                fleet.attach(dpid, vnid, learn=False)
        fleet.connect_all()
        fleet.learn_all()
        counts = [fleet.flows(d)[0] for d in range(1, 4)]
        total = 3 * per_nve
        rows.append({'vms': total, 'vms_per_nve': per_nve,
                     'flows_per_nve_min': min(counts),
                     'flows_per_nve_max': max(counts),
                     'ovn_flows_per_chassis': OVN_FLOWS_PER_CHASSIS[total]})
    return rows


def print_table(title, rows, cols):
    print('\n' + title)
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print('  '.join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print('  '.join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true',
                    help='smaller sweeps (a smoke run, not for the README)')
    ap.add_argument('--vn-size', type=int, default=4)
    ap.add_argument('--vns-per-nve', type=int, default=2)
    ap.add_argument('--ts', type=int, default=4)
    ap.add_argument('--out', default=None,
                    help='default: results/flows.json (flows-quick.json '
                         'with --quick)')
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = RESULTS.replace('.json', '-quick.json') if args.quick \
            else RESULTS
    args.fleet = [10, 30, 100] if args.quick else [10, 30, 100, 300, 1000]
    args.extra_vns = [0, 1, 2, 4, 8] if args.quick else [0, 1, 2, 4, 8, 16, 32]
    args.ts_sweep = [1, 2, 4, 8] if args.quick else [1, 2, 4, 8, 16, 32]
    args.attaches = 50 if args.quick else 300

    t0 = time.time()
    fleet_rows = sweep_fleet(args)
    print_table('Flows per NVE as the fleet grows (each NVE: %d VNs of %d NVEs,'
                ' %d tenant systems per VN)' % (args.vns_per_nve, args.vn_size,
                                                args.ts),
                fleet_rows, ['nves', 'vns', 'tenant_systems',
                             'flows_per_nve_min', 'flows_per_nve_median',
                             'flows_per_nve_max', 'meters_per_nve',
                             'visible_ts', 'fleet_flows'])
    own_rows = sweep_own_vns(args)
    print_table('One NVE joins more VNs (fleet of %d)' % max(args.fleet),
                own_rows, ['probe_vns', 'probe_local_ts', 'probe_visible_ts',
                           'probe_flows', 'bystander_flows', 'fleet_vns'])
    ts_rows = sweep_ts(args)
    print_table('More tenant systems per NVE per VN (fleet of %d)'
                % ts_rows[0]['nves'], ts_rows,
                ['ts_per_nve_per_vn', 'visible_ts', 'flows_per_nve_median',
                 'flows_per_nve_max'])
    cost = planner_cost(args)
    print('\nPlanner cost, fleet of %d NVEs (%d attaches)' % (
        cost['nves'], cost['attaches']))
    print('  incremental attach (learn + commit + plan): p50 %.3f ms, '
          'p95 %.3f ms; %s NVEs changed, %s flow mods (median)' % (
              cost['attach_commit']['p50_ms'], cost['attach_commit']['p95_ms'],
              cost['attach_nves_changed_median'],
              cost['attach_flow_mods_median']))
    print('  planner.plan() alone per attach: p50 %.3f ms, p95 %.3f ms' % (
        cost['attach_plan']['p50_ms'], cost['attach_plan']['p95_ms']))
    print('  full recompute of one NVE: p50 %.3f ms; of the whole fleet: '
          '%.1f ms (%.0fx an attach)' % (
              cost['full_recompute_one_nve']['p50_ms'],
              cost['full_recompute_fleet_ms'],
              cost['speedup_attach_vs_fleet_recompute']))

    ovn_rows = sweep_ovn_layout()
    print_table("OVN's anchor layout: 3 NVEs, one VN (OVN: flows per chassis "
                "br-int, counted by the OVN anchor)", ovn_rows,
                ['vms', 'vms_per_nve', 'flows_per_nve_min',
                 'flows_per_nve_max', 'ovn_flows_per_chassis'])

    flat = len({r['flows_per_nve_max'] for r in fleet_rows}) == 1
    result = {
        'benchmark': 'flows', 'date': benchenv.now_iso(),
        'command': shlex.join(['.venv/bin/python', 'benchmarks/flows_bench.py']
                              + (argv if argv is not None else sys.argv[1:])),
        'machine': benchenv.machine(), 'quick': args.quick, 'code': benchenv.code(),
        'layout': {'vn_size': args.vn_size, 'vns_per_nve': args.vns_per_nve,
                   'ts_per_nve_per_vn': args.ts},
        'fleet_sweep': fleet_rows, 'own_vns_sweep': own_rows,
        'ts_sweep': ts_rows, 'planner': cost, 'ovn_layout': ovn_rows,
        'flat_across_fleet': flat,
        'runtime_s': round(time.time() - t0, 1)}
    print('\nflows per NVE flat across fleet sizes %s: %s' % (
        args.fleet, 'yes' if flat else 'NO'))
    benchenv.write_json(args.out, result)
    print('wrote %s' % os.path.relpath(args.out))
    return 0 if flat else 1


if __name__ == '__main__':
    sys.exit(main())
