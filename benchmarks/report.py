"""Render the figures section of benchmarks/README.md from results/*.json.

Figures are never typed by hand: every benchmark writes its JSON into
benchmarks/results/, and this script rewrites the part of the README
between the ``figures:begin`` and ``figures:end`` markers (or prints it
with ``--print``).  A benchmark whose JSON is missing is listed as "not run
yet"; a JSON this script has no renderer for (or whose shape changed) is
shown as its scalar fields, so nothing is silently dropped.

Usage: .venv/bin/python benchmarks/report.py [--print]
"""

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'results')
README = os.path.join(HERE, 'README.md')
BEGIN = '<!-- figures:begin -->'
END = '<!-- figures:end -->'

sys.path.insert(0, HERE)
import benchenv  # noqa: E402

# (results file, benchmark script, what it measures) in README order.
BENCHMARKS = [
    ('attach.json', 'attach_bench.py', 'attach-to-reachability'),
    ('attach-nofsync.json', 'attach_bench.py', 'attach-to-reachability, '
     'store_fsync = false'),
    ('flood.json', 'flood_bench.py', 'underlay frames per ARP / broadcast'),
    ('flows.json', 'flows_bench.py', 'flows per NVE vs fleet and memberships'),
    ('move.json', 'move_bench.py', 'move outage and convergence'),
    ('migrate.json', 'migrate_bench.py', 'live migration, announced and '
     'not, beside OVN'),
    ('migrate-nofsync.json', 'migrate_bench.py', 'live migration, '
     'store_fsync = false'),
    ('side_by_side.json', 'side_by_side.py', 'side by side with OVN, one '
     'run'),
    ('capacity.json', 'capacity_bench.py', 'capacity (simulated NVEs)'),
    ('decision.json', 'decision_bench.py',
     'decisions alone (no os-ken, no sockets)'),
    ('reconcile.json', 'reconcile_bench.py', 'restart reconciliation'),
    ('reconcile-100k.json', 'reconcile_bench.py', 'restart reconciliation, '
     '100,000 tenant systems'),
    ('store.json', 'store_bench.py', 'mapping store'),
    ('guard.json', 'guard_bench.py', 'checking switch messages before '
     'os-ken parses them'),
    ('auth.json', 'auth_bench.py', 'who may: token checks and TLS '
     'handshakes'),
    ('gateway.json', 'gateway_bench.py', 'through a gateway vs within a VN'),
    ('cluster.json', 'cluster_bench.py', 'a cluster of authorities on etcd'),
    ('evpn.json', 'evpn_bench.py', 'BGP EVPN against FRR'),
]


def load(name, quick_fallback=False):
    """A results file; with ``quick_fallback``, ``<name>-quick.json`` when
    only the smoke run exists (marked ``_quick``)."""
    path = os.path.join(RESULTS, name)
    quick = False
    if not os.path.exists(path) and quick_fallback:
        path = path[:-len('.json')] + '-quick.json'
        quick = True
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as fh:
        data = json.load(fh)
    data.setdefault('_mtime', os.path.getmtime(path))
    data['_quick'] = quick
    data['_file'] = os.path.basename(path)
    return data


def when(data):
    if data.get('date'):
        return data['date'][:16].replace('T', ' ')
    stamp = datetime.datetime.fromtimestamp(data['_mtime'])
    return stamp.strftime('%Y-%m-%d %H:%M') + ' (file time)'


def fmt(value, unit=''):
    if value is None:
        return 'n/a'
    if isinstance(value, float):
        text = ('%.3f' % value).rstrip('0').rstrip('.') if abs(value) < 10 \
            else ('%.1f' % value).rstrip('0').rstrip('.')
    else:
        text = str(value)
    return text + unit


def table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(' --- ' for _ in header) + '|']
    out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return out


def met(flag):
    return {True: 'met', False: '**missed**'}.get(flag, 'n/a')


# --- one renderer per benchmark: (headline rows, detail lines) -------------

def r_attach(d):
    s = d['summary']
    q = d.get('request_summary') or {}
    variant = bool(d.get('extra_ini'))     # the target is for defaults
    head = [('attach-to-reachability p50 / p95 (ms)',
             '%s / %s' % (fmt(s['attach_to_reach_p50_ms']),
                          fmt(s['attach_to_reach_p95_ms'])),
             '' if variant else 'p50 <= %s ms' % fmt(
                 d.get('target_p50_ms') or 15.0),
             '(variant)' if variant else met(d.get('target_met')))]
    rows = [
        ('attachments (reached from every remote NVE)',
         '%d (%d)' % (s['attachments'], s['reached'])),
        ('prober interval', fmt(d.get('interval_ms'), ' ms')),
        ('attach-to-reachability, slowest remote NVE: p50 / p95 / max',
         '%s / %s / %s ms' % (fmt(s['attach_to_reach_p50_ms']),
                              fmt(s['attach_to_reach_p95_ms']),
                              fmt(s['attach_to_reach_max_ms']))),
        ('per remote NVE: p50 / p95', '%s / %s ms' % (
            fmt(s['per_remote_nve_p50_ms']), fmt(s['per_remote_nve_p95_ms']))),
        ('neighbour on the same NVE: p50',
         fmt(s['local_neighbour_p50_ms'], ' ms')),
        ('app side, packet-in -> last member NVE barrier ack: p50 / p95',
         '%s / %s ms' % (fmt(s['app_convergence_p50_ms']),
                         fmt(s['app_convergence_p95_ms']))),
        ('first frame on the wire -> app event: p50 / p95',
         '%s / %s ms' % (fmt(s['event_lag_p50_ms']),
                         fmt(s['event_lag_p95_ms']))),
        ('journal fsync of the app (last one after each attachment): p50',
         fmt(s.get('store_fsync_p50_ms'), ' ms')),
        ('packet-ins per attachment (its first frame, and any OVS punted '
         'after it)', fmt(s.get('packet_ins_per_attachment'))),
        ('first frames seen', ', '.join('%s x%d' % kv for kv in sorted(
            s['first_frame_kinds'].items())))]
    if q:
        rows.append(('announced by an ARP *request* instead (RFC 5227): '
                     'p50 / p95, app side p50',
                     '%s / %s ms, %s ms' % (
                         fmt(q['attach_to_reach_p50_ms']),
                         fmt(q['attach_to_reach_p95_ms']),
                         fmt(q['app_convergence_p50_ms']))))
    if d.get('extra_ini'):
        rows.append(('app options', '`%s`' % d['extra_ini']))
    if d.get('loadavg') and all(d['loadavg']):
        rows.append(('1-minute load average at start / end (the machine is '
                     'shared)', ' / '.join('%.2f' % x[0]
                                           for x in d['loadavg'])))
    lines = table(['figure', 'value'], rows)
    prof = d.get('profile') or {}
    pin = prof.get('packet_in') or {}
    if pin.get('samples'):
        per = 1000.0 / prof.get('rate_hz', 1000) / max(1, s['attachments'])
        lines += ['', 'Where the app spends its time on an attachment: '
                  'the packet-in handler and the drain after it (fsync, '
                  'then the flows sent) (py-spy, %d samples at %d Hz during '
                  'the attachments, about %s ms per attachment; raw stacks: '
                  '`%s`):' % (pin['samples'], prof.get('rate_hz', 1000),
                              fmt(pin['samples'] * per), prof.get('raw')),
                  '']
        lines += table(['part', 'share of its samples'],
                       [(k, '%s %%' % fmt(v)) for k, v in sorted(
                           pin['share_pct'].items(), key=lambda kv: -kv[1])])
    return head, lines


def r_flood(d):
    s = d['summary']
    app, base = s['app'], s['baseline']
    head = [('underlay frames per ARP of a known TS: app / baseline',
             '%s / %s' % (fmt(app['arp_frames_per_resolution_mean']),
                          fmt(base['arp_frames_per_resolution_mean'])),
             '0 (baseline: 1 request per remote VTEP)',
             met(d.get('target_met')))]
    lines = []
    modes = d['modes']
    rows = []
    for a, b in zip(modes['app']['arp'], modes['baseline']['arp']):
        rows.append(('%s -> %s' % (a['src'], a['dst']), a['vn'],
                     a.get('encap', ''), a['remote_vteps'],
                     fmt(a['frames_per_resolution']),
                     '%d/%d' % (a['answered'], a['reps']),
                     fmt(a.get('packet_ins')),
                     fmt(b['frames_per_resolution']),
                     '%s + %s' % (fmt(b['requests_per_resolution']),
                                  fmt(b['replies_per_resolution'])),
                     '%d/%d' % (b['answered'], b['reps']),
                     '%s / %s' % (
                         fmt(a.get('other_arp_frames_per_resolution')),
                         fmt(b.get('other_arp_frames_per_resolution')))))
    lines += table(['ARP resolution', 'VN', 'encap', 'remote VTEPs',
                    'app frames', 'app answered', 'app packet-ins',
                    'baseline frames', 'baseline requests + replies',
                    'baseline answered',
                    'other ARP about the target, app / baseline'], rows)
    lines.append('')
    rows = []
    for a, b in zip(modes['app']['broadcast'], modes['baseline']['broadcast']):
        rows.append(('from %s' % a['src'], a['vn'], a['remote_vteps'],
                     a.get('fleet_nves', ''), fmt(a['frames_per_broadcast']),
                     fmt(b['frames_per_broadcast'])))
    lines += table(['one broadcast', 'VN', 'remote VTEPs', 'NVEs in fleet',
                    'app frames', 'baseline frames'], rows)
    return head, lines


def r_flows(d):
    fleet = d['fleet_sweep']
    lo, hi = fleet[0], fleet[-1]
    p = d['planner']
    head = [('flows per NVE, fleet %d -> %d NVEs' % (lo['nves'], hi['nves']),
             '%s -> %s' % (fmt(lo['flows_per_nve_max']),
                           fmt(hi['flows_per_nve_max'])),
             'flat (own memberships only)', met(d.get('flat_across_fleet'))),
            ('planner: incremental attach p50 vs full fleet recompute',
             '%s ms vs %s ms' % (fmt(p['attach_commit']['p50_ms']),
                                 fmt(p['full_recompute_fleet_ms'])),
             '', '')]
    lay = d['layout']
    lines = ['Layout: every NVE is in %d VNs of %d NVEs each, with %d '
             'tenant systems per VN (one IPv4 address each).' % (
                 lay['vns_per_nve'], lay['vn_size'], lay['ts_per_nve_per_vn']),
             '']
    lines += table(['NVEs', 'VNs', 'tenant systems', 'flows per NVE '
                    '(min / median / max)', 'meters per NVE',
                    'tenant systems an NVE sees', 'flows in the fleet'],
                   [(r['nves'], r['vns'], r['tenant_systems'],
                     '%s / %s / %s' % (fmt(r['flows_per_nve_min']),
                                       fmt(r['flows_per_nve_median']),
                                       fmt(r['flows_per_nve_max'])),
                     r['meters_per_nve'], r['visible_ts'], r['fleet_flows'])
                    for r in fleet])
    lines.append('')
    own = d['own_vns_sweep']
    lines.append('One NVE joins more VNs (fleet of %d NVEs):' % own[0]['nves'])
    lines.append('')
    lines += table(['its VNs', 'its tenant systems', 'tenant systems it '
                    'sees', 'its flows', 'flows of an NVE outside those VNs'],
                   [(r['probe_vns'], r['probe_local_ts'],
                     r['probe_visible_ts'], r['probe_flows'],
                     r['bystander_flows']) for r in own])
    lines.append('')
    ts = d['ts_sweep']
    lines.append('More tenant systems per NVE per VN (fleet of %d NVEs):'
                 % ts[0]['nves'])
    lines.append('')
    lines += table(['tenant systems per NVE per VN', 'tenant systems an NVE '
                    'sees', 'flows per NVE (median)'],
                   [(r['ts_per_nve_per_vn'], r['visible_ts'],
                     fmt(r['flows_per_nve_median'])) for r in ts])
    lines.append('')
    lines += table(['planner, fleet of %d NVEs' % p['nves'], 'p50', 'p95'], [
        ('attach: learn + commit (memory store) + plan', fmt(
            p['attach_commit']['p50_ms'], ' ms'),
         fmt(p['attach_commit']['p95_ms'], ' ms')),
        ('attach: Planner.plan() alone', fmt(p['attach_plan']['p50_ms'],
                                             ' ms'),
         fmt(p['attach_plan']['p95_ms'], ' ms')),
        ('full recompute of one NVE', fmt(
            p['full_recompute_one_nve']['p50_ms'], ' ms'),
         fmt(p['full_recompute_one_nve']['p95_ms'], ' ms')),
        ('full recompute of the whole fleet', fmt(
            p['full_recompute_fleet_ms'], ' ms'), ''),
        ('NVEs changed / flow changes per attach (median)', '%s / %s' % (
            fmt(p['attach_nves_changed_median']),
            fmt(p['attach_flow_mods_median'])), '')])
    ovn = d.get('ovn_layout')
    if ovn:
        lines.append('')
        lines.append("OVN's anchor layout (3 NVEs or chassis, one VN or "
                     'logical switch; OVN 23.03 counted with ovs-ofctl on '
                     'br-int):')
        lines.append('')
        lines += table(['VMs (per NVE)', 'flows per NVE, ours',
                        'flows per chassis, OVN'],
                       [('%d (%d)' % (r['vms'], r['vms_per_nve']),
                         fmt(r['flows_per_nve_max']),
                         r['ovn_flows_per_chassis']) for r in ovn])
    return head, lines


def r_move(d):
    o, c, lost = d['outage_ms'], d['convergence_ms'], d['lost_probes']
    head = [('move outage p50 / p95 (ms)', '%s / %s' % (fmt(o['p50']),
                                                          fmt(o['p95'])),
             'p50 < %s ms' % fmt(d.get('target_p50_outage_ms')),
             met(o['p50'] < d['target_p50_outage_ms'])
             if d.get('target_p50_outage_ms') and o.get('p50') is not None
             else 'n/a')]
    rows = [('moves (prober interval)', '%s (%s ms)' % (
                d.get('moves'), fmt(d.get('prober_interval_ms')))),
            ('outage p50 / p95 / max', '%s / %s / %s ms' % (
                fmt(o['p50']), fmt(o['p95']), fmt(o['max']))),
            ('probes lost: total, per move p50 / p95 / max',
             '%s, %s / %s / %s' % (lost['total'], fmt(lost['p50']),
                                   fmt(lost['p95']), fmt(lost['max']))),
            ('app convergence (move decided -> every NVE acknowledged) p50 / '
             'p95 / max', '%s / %s / %s ms' % (fmt(c['p50']), fmt(c['p95']),
                                               fmt(c['max']))),
            ('all recovered', d.get('all_recovered'))]
    return head, table(['figure', 'value'], rows)


def r_gateway(d):
    paths = d['paths']
    within = paths[0]
    via = paths[1:]
    head = [('TCP via gateway / within VN (Mbit/s)', '%s / %s' % (
                ', '.join(fmt(p['mbit_median']) for p in via),
                fmt(within['mbit_median'])), '', 'n/a'),
            ('RTT via gateway / within VN (ms)', '%s / %s' % (
                ', '.join(fmt(p['rtt_ms_median']) for p in via),
                fmt(within['rtt_ms_median'])), '', 'n/a'),
            ('PUT -> first packet crossing (ms, median)',
             fmt(d.get('put_to_first_crossing_ms_median')), '', 'n/a')]
    rows = [(p['path'], fmt(p['mbit_median']),
             fmt(p.get('mbit_vs_within')), fmt(p['rtt_ms_median']),
             fmt(p.get('rtt_extra_ms'))) for p in paths]
    lines = table(['path (medians of %s runs, %s s iperf3, %s pings)' % (
        d.get('runs'), d.get('seconds'), d.get('pings')), 'Mbit/s',
        'vs within', 'RTT ms', 'RTT extra ms'], rows)
    f = d['flows']
    rows = [(name, n['gw'], n['n1'], n['n2'])
            for name, n in sorted(f['per_interconnect'].items())]
    lines += [''] + table(['interconnect flows', 'gw', 'n1', 'n2'], rows)
    lines += ['', 'Gateway flows per allowed MAC (l2 + l2): %s; member-NVE '
              'flows per allowed MAC: %s; gateway flows of ab per host of A '
              'and B: %s.' % (fmt(f['gw_flows_per_allowed_mac']),
                              fmt(f['nve_flows_per_allowed_mac']),
                              fmt(f['gw_flows_per_routed_host_ab'])),
              'PUT -> first echo crossing, each rep (ms): %s.' % ', '.join(
                  fmt(c['first_crossing_ms'])
                  for c in d['put_to_first_crossing']),
              'Load average before / after: %s / %s.' % (
                  d.get('load_before'), d.get('load_after'))]
    return head, lines


def _lost_row(label, s, outage_key='outage_ms'):
    lost, out = s['lost'] or {}, s.get(outage_key) or {}
    return (label, '%s (%s of %s)' % (s['lost_total'], s['with_loss'],
                                      lost.get('n', 0)),
            '%s / %s' % (fmt(lost.get('p50')), fmt(lost.get('max'))),
            '%s / %s ms' % (fmt(out.get('p50')), fmt(out.get('max'))),
            '%s / %s ms' % (fmt((s.get('longest_gap_ms') or {}).get('p50')),
                            fmt((s.get('longest_gap_ms') or {}).get('max'))))


def stats_of(rows, kind, key):
    """(p50, max) of ``key`` over the rows of ``kind``, formatted."""
    values = sorted(r[key] for r in rows if r.get('kind') == kind
                    and r.get(key) is not None)
    if not values:
        return None
    mid = len(values) // 2
    p50 = values[mid] if len(values) % 2 else (values[mid - 1]
                                               + values[mid]) / 2.0
    return fmt(round(p50, 3)), fmt(values[-1])


def r_migrate(d):
    a, u = d['announced'], d['unannounced']
    iv = fmt(d.get('prober_interval_ms'), ' ms')
    variant = bool(d.get('extra_ini'))     # the targets are for defaults
    head = [('announced migration: probes lost in total (%s prober)' % iv,
             '%s in %s migrations' % (a['lost_total'], a['lost']['n']),
             '0', '(variant)' if variant else met(a['lost_total'] == 0)),
            ('unannounced move: outage p50 / max (ms)', '%s / %s' % (
                fmt(u['outage_ms']['p50']), fmt(u['outage_ms']['max'])),
             '<= %s ms' % fmt(d.get('target_unannounced_outage_ms')),
             '(variant)' if variant else
             met(u['outage_ms']['p50'] <= d['target_unannounced_outage_ms'])
             if d.get('target_unannounced_outage_ms') is not None
             else 'n/a')]
    rows = [_lost_row('this app, announced (`migrate`)', a),
            _lost_row('this app, unannounced (learned move)', u)]
    ovn = d.get('ovn') or {}
    names = {'bbb': 'OVN %s, break-before-make (plain)',
             'mbb': 'OVN %s, make-before-break (requested-chassis=src,dst)'}
    for mode in ('bbb', 'mbb'):
        if ovn.get(mode) and ovn[mode].get('lost'):
            rows.append(_lost_row(names[mode] % ovn.get('ovn', '?'),
                                  ovn[mode]))
    lines = ['Prober every %s on a fixed schedule from a third NVE (OVN: '
             'its anchor script, `PING_I` the same, from a third '
             'hypervisor), in the same run.  Outage: this app, the summed '
             'time from the first lost probe to the next answered one; OVN, '
             'lost x interval.' % iv, '']
    lines += table(['migrations', 'probes lost: total (migrations with '
                    'loss of all)', 'lost per migration p50 / max',
                    'outage p50 / max', 'longest gap between replies p50 / '
                    'max'], rows)
    lines.append('')
    sw, mc = a.get('switch_over_ms') or {}, u.get('move_convergence_ms') or {}
    extra = [('announced: switch-over (first frame at the new place -> every '
              'NVE acknowledged it alone), p50 / max',
              '%s / %s ms' % (fmt(sw.get('p50')), fmt(sw.get('max')))),
             ('unannounced: move decided -> every NVE acknowledged, p50 / '
              'max', '%s / %s ms' % (fmt(mc.get('p50')), fmt(mc.get('max'))))]
    for mode in ('bbb', 'mbb'):
        ub = (ovn.get(mode) or {}).get('unplug_to_bind_ms')
        if ub:
            extra.append(('OVN %s: its testbed\'s own steps between unplug '
                          'and bind (part of its outage), p50' % mode,
                          fmt(ub.get('p50'), ' ms')))
    if ovn:
        extra.append(('OVN anchor: exit status, log', '%s, `%s`' % (
            ovn.get('returncode'), ovn.get('log'))))
    dec = stats_of(d['per_migration'], 'unannounced',
                   'decided_after_cut_ms')
    if dec:
        extra.append(('unannounced: the guest leaves its old vNIC -> the '
                      'move is decided, p50 / max', '%s / %s ms' % dec))
    if d.get('extra_ini'):
        extra.append(('app options', '`%s`' % d['extra_ini']))
    extra += [('all recovered; frozen / conflict events', '%s; %s / %s' % (
        d.get('all_recovered'), d.get('frozen_events'),
        d.get('conflict_events')))]
    if d.get('loadavg') and all(d['loadavg']):
        extra.append(('1-minute load average at start / end (the machine is '
                      'shared)', ' / '.join('%.2f' % x[0]
                                            for x in d['loadavg'])))
    lines += table(['figure', 'value'], extra)
    return head, lines


def r_reconcile(d):
    rs = d['restarts']
    recon = sorted(x['reconciled_s'] for x in rs)
    params = d.get('params', {})
    head = [('restart: reconciled (median, s), %s NVEs / %s TS' % (
        params.get('nves', '?'), params.get('tenants', '?')),
        fmt(recon[len(recon) // 2]), '', '')]
    a, s = d['attach'], d['store']
    rows = [('attach: done / failed, seconds (rate)', '%s / %s, %s s (%s/s)'
             % (a['done'], a['failed'], fmt(a['seconds']), fmt(a['per_s']))),
            ('flows held by the switches', a.get('switch_flows')),
            ('store bytes per mapping entry', fmt(s['bytes_per_entry']))]
    for i, x in enumerate(rs, 1):
        rows.append(('restart %d: listening / all connected / reconciled' % i,
                     '%s / %s / %s s' % (fmt(x['listening_s']),
                                         fmt(x['all_connected_s']),
                                         fmt(x['reconciled_s']))))
        rows.append(('restart %d: flow-mods (app / switches), repairs, NVEs '
                     'with re-added flows' % i,
                     '%s / %s, %s, %s' % (fmt(x['app_flow_mods']),
                                          fmt(x['switch_flow_mods']),
                                          fmt(x['app_sync_repairs']),
                                          x['nves_with_readded_flows'])))
        if 'stamp_matches' in x:
            rows.append(('restart %d: NVEs in sync by stamp / dumped' % i,
                         '%s / %s' % (fmt(x['stamp_matches']),
                                      fmt(x['stamp_mismatches']))))
            rows.append(('restart %d: every NVE verified by a dump at; '
                         'repairs, flow-mods by then' % i,
                         '%s s; %s, %s' % (fmt(x['verified_s']),
                                           fmt(x['verify_repairs']),
                                           fmt(x['flow_mods_after_verified']))))
    return head, table(['figure', 'value'], rows)


def r_generic(d):
    rows = []

    def walk(prefix, value, depth):
        if isinstance(value, dict) and depth < 2:
            for k in sorted(value):
                if not k.startswith('_'):
                    walk('%s%s' % (prefix + '.' if prefix else '', k),
                         value[k], depth + 1)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            if prefix not in ('date', 'command') and \
                    not prefix.startswith(('machine', 'env')):
                rows.append((prefix, fmt(value)))
    walk('', d, 0)
    return [], table(['field', 'value'], rows[:40])


def r_capacity(d):
    a, m, r = d['attach'], d['memory'], d['rest']['all']
    t = d.get('targets', {})
    p = d.get('params', {})
    head = [
        ('attachments/s sustained, %s NVEs' % p.get('nves', '?'),
         fmt(a['per_s_sustained']),
         '>= %s' % fmt(t.get('attach_per_s')) if t.get('attach_per_s')
         else '', met(a['per_s_sustained'] >= t['attach_per_s'])
         if t.get('attach_per_s') else 'n/a'),
        ('authority memory per mapping entry (bytes)',
         fmt(m['bytes_per_entry']),
         '<= %s' % fmt(t.get('bytes_per_entry')) if t.get('bytes_per_entry')
         else '', met(m['bytes_per_entry'] <= t['bytes_per_entry'])
         if t.get('bytes_per_entry') else 'n/a'),
        ('REST p99 under load (ms)', fmt(r['p99_ms']),
         '< %s' % fmt(t.get('rest_p99_ms')) if t.get('rest_p99_ms') else '',
         met(r['p99_ms'] < t['rest_p99_ms']) if t.get('rest_p99_ms')
         else 'n/a')]
    rows = [('NVEs / tenant systems / VN size', '%s / %s / %s' % (
                p.get('nves'), p.get('tenants'), p.get('vn_size'))),
            ('attachments done / failed', '%s / %s' % (a['done'],
                                                       a['failed'])),
            ('attachments/s sustained (overall)', '%s (%s)' % (
                fmt(a['per_s_sustained']), fmt(a.get('per_s_overall')))),
            ('attach latency, packet-in -> flows acknowledged: p50 / p99',
             '%s / %s ms' % (fmt(a.get('latency_p50_ms')),
                             fmt(a.get('latency_p99_ms')))),
            ('memory per mapping entry / per flow held', '%s / %s bytes' % (
                fmt(m['bytes_per_entry']), fmt(m.get('bytes_per_flow')))),
            ('memory per mapping entry 1 s after the run, before the '
             'quiet-tick heap trim', '%s bytes' % fmt(
                 m.get('bytes_per_entry_unsettled'))),
            ('heap trim after the run: given back, time', '%s MiB, %s ms' % (
                fmt((m.get('heap_trim') or {}).get('mib')),
                fmt((m.get('heap_trim') or {}).get('ms')))),
            ('REST p50 / p99 under load', '%s / %s ms' % (
                fmt(r.get('p50_ms')), fmt(r['p99_ms'])))]
    if d.get('flow_mods'):
        rows.append(('flow-mods/s sent', fmt(d['flow_mods'].get('per_s'))))
        if d['flow_mods'].get('barriers_per_attach') is not None:
            rows.append(('barriers per attachment (one per batch)',
                         fmt(d['flow_mods']['barriers_per_attach'])))
    if d.get('packet_in'):
        rows.append(('packet-in handling mean (p50 / p99 bucket)',
                     '%s ms (%s / %s ms)' % (
                         fmt(d['packet_in'].get('mean_ms')),
                         fmt(d['packet_in'].get('p50_ms_bucket')),
                         fmt(d['packet_in'].get('p99_ms_bucket')))))
    if d.get('cpu'):
        rows.append(('app CPU per attachment (app busy)', '%s (%s %%)' % (
            fmt(d['cpu'].get('app_ms_per_attach'), ' ms'),
            fmt(round(100 * d['cpu'].get('app_busy', 0))))))
    st = d.get('stalls')
    if st:
        rows.append(('event-loop lag p50 / p99 (bucket)', '<= %s / <= %s ms'
                     % (fmt(st.get('loop_lag_p50_ms_bucket')),
                        fmt(st.get('loop_lag_p99_ms_bucket')))))
        rows.append(('full GCs (longest bucket, total)', '%s (<= %s ms, %s s)'
                     % (fmt(st.get('full_gcs')),
                        fmt(st.get('full_gc_max_ms_bucket')),
                        fmt(st.get('full_gc_seconds')))))
        if 'young_gcs' in st:
            rows.append(('young GCs (over 25 ms)', '%s (%s)' % (
                fmt(st['young_gcs']), fmt(st.get('young_gcs_over_25ms')))))
    if 'compactions_ms' in d:
        comp = d['compactions_ms']
        rows.append(('journal compactions (longest)', '%d (%s ms)' % (
            len(comp), max(comp) if comp else '-')))
    if d.get('app_ini'):
        rows.append(('app options', '`%s`' % '; '.join(d['app_ini'])))
    out = table(['figure', 'value'], rows)
    prof = d.get('profile')
    if prof and prof.get('top_total'):
        out += ['', 'py-spy, %s samples of the app during the run (frames '
                'by total time; raw stacks in `%s` on the machine that ran '
                'it):' % (prof.get('samples'), prof.get('raw')), '']
        out += table(['share', 'frame'], [
            ('%.1f %%' % pct, '`%s`' % frame)
            for pct, frame in prof['top_total'][:15]])
    return head, out


def r_decision(d):
    p = d.get('params', {})
    head = [('CPU per attachment (attachments/s on one core)', '%s ms (%s)' % (
        fmt(d['cpu_ms_per_attach']), fmt(d['attach_per_s_one_core'])),
        '', '')]
    rows = [('NVEs / tenant systems / VN size', '%s / %s / %s' % (
                p.get('nves'), p.get('tenants'), p.get('vn_size'))),
            ('CPU per attachment', fmt(d['cpu_ms_per_attach'], ' ms')),
            ('attachments/s on one core', fmt(d['attach_per_s_one_core'])),
            ('flow changes per attachment',
             fmt(d['flow_changes_per_attach']))]
    mem = d.get('memory')
    if mem:
        rows.append(('traced memory per mapping entry (in-memory store)',
                     fmt(mem['bytes_per_entry'], ' bytes')))
        rows += [('  of which %s' % name, fmt(size, ' bytes'))
                 for name, size in mem['top_files_bytes_per_entry']]
    return head, table(['figure', 'value'], rows)


def r_cluster(d):
    head, rows = [], []
    f = d.get('failover')
    if f:
        head += [('kill -9 of a master -> every NVE mastered again, p50 / max',
                  '%s / %s s' % (fmt(f['mastered_p50_s']),
                                 fmt(f['mastered_max_s'])),
                  'a few seconds', ''),
                 ('10 ms probes lost across the kills',
                  '%d of %d' % (f['probes_lost'], f['probes_sent']), '0',
                  met(f['probes_lost'] == 0))]
        rows += [
            ('lease TTL', fmt(f['ttl_s'], ' s')),
            ('kill -9 rounds', len(f['rounds'])),
            ('kill -> every NVE has a confirmed master: p50 / max',
             '%s / %s s' % (fmt(f['mastered_p50_s']), fmt(f['mastered_max_s']))),
            ('kill -> a VM attaching right after is reachable: p50 / max',
             '%s / %s s' % (fmt(f['reachable_p50_s']),
                            fmt(f['reachable_max_s']))),
            ('10 ms probes across the kills: sent / lost / longest gap',
             '%d / %d / %s ms' % (f['probes_sent'], f['probes_lost'],
                                  fmt(f['longest_gap_ms']))),
            ('flow-mods the restarted instance sent while it rejoined',
             f['rejoin_flow_mods'])]
    lines = table(['figure', 'value'], rows) + [''] if rows else []
    reach = d.get('reach') or {}
    if reach:
        lines += table(
            ['attach-to-reachability on OVS, one instance', 'p50 / p95 (ms)',
             'app side p50 / p95 (ms)', 'reached'],
            [(label, '%s / %s' % (fmt(x['attach_to_reach_p50_ms']),
                                  fmt(x['attach_to_reach_p95_ms'])),
              '%s / %s' % (fmt(x['app_convergence_p50_ms']),
                           fmt(x['app_convergence_p95_ms'])),
              '%s of %s' % (x['reached'], x['attachments']))
             for label, x in reach.items()]) + ['']
        if 'journal' in reach and 'etcd' in reach:
            head.append(('attach-to-reachability p50, journal / etcd',
                         '%s / %s ms' % (
                             fmt(reach['journal']['attach_to_reach_p50_ms']),
                             fmt(reach['etcd']['attach_to_reach_p50_ms'])),
                         '', ''))
    runs = d.get('attach') or {}
    if runs:
        lines += table(
            ['run', 'instances', 'attachments/s', 'attach p50 / p99 (ms)',
             'app CPU ms per attachment handled, per instance',
             'app CPU ms per cluster attachment, per instance',
             'etcd CPU ms per attachment'],
            [(label, x['instances'], fmt(x['per_s']),
              '%s / %s' % (fmt(x['latency_p50_ms']), fmt(x['latency_p99_ms'])),
              ', '.join(fmt(c) for c in x['cpu_ms_per_attach_handled']),
              ', '.join(fmt(c) for c in x.get('cpu_ms_per_cluster_attach',
                                              x['cpu_ms_per_attach_handled'])),
              fmt(x['etcd_cpu_ms_per_attach']))
             for label, x in sorted(runs.items(), key=lambda kv: (
                 kv[0] != 'journal', kv[0]))]) + ['']
        proj = (d.get('projection') or {}).get('per_s_core_each')
        if proj:
            lines += [
                'Each instance handles the packet-ins of its own NVEs and '
                'applies every other attachment from its watch; its CPU per '
                'attachment of the whole cluster is what one core of a larger '
                'machine must carry, so with a core per instance (etcd on '
                'cores of its own) the busiest instance bounds the cluster '
                'at about %s attachments/s for %s instances. Derived from '
                'CPU measured on this oversubscribed machine (it errs low), '
                'not a measured throughput.' % (
                    ' / '.join(fmt(v) for v in proj.values()),
                    ' / '.join(str(k) for k in proj)), '']
        if 'journal' in runs and 'etcd-1' in runs:
            head.append(('attachments/s, one instance: journal / etcd',
                         '%s / %s' % (fmt(runs['journal']['per_s']),
                                      fmt(runs['etcd-1']['per_s'])), '', ''))
    b = d.get('etcd_bytes')
    if b:
        head.append(('etcd bytes per mapping entry (keys + values)',
                     fmt(b['bytes_per_entry']), '', ''))
        lines += ['etcd keys and values per record kind: ' + ', '.join(
            '%s %d keys, %s B each' % (k, v['keys'], fmt(v['bytes_per_key']))
            for k, v in b['kinds'].items()) + '.', '']
    return head, lines


RENDERERS = {'cluster.json': r_cluster, 'capacity.json': r_capacity, 'decision.json': r_decision, 'attach.json': r_attach, 'attach-nofsync.json': r_attach,
             'flood.json': r_flood,
             'flows.json': r_flows, 'move.json': r_move,
             'gateway.json': r_gateway,
             'migrate.json': r_migrate, 'migrate-nofsync.json': r_migrate,
             'reconcile.json': r_reconcile,
             'reconcile-100k.json': r_reconcile}


def r_evpn(d):
    c, mo, e = d['new_ts_to_frr_fdb_ms'], d['move_outage_ms'], d['export']
    head = [('new tenant system: first frame -> FRR FDB p50 / p95 (ms)',
             '%s / %s' % (fmt(c['p50']), fmt(c['p95'])), '', '')]
    if e:
        head.append(('routes/s the speaker exports (%d MAC/IP)' % e['routes'],
                     fmt(e['routes_per_s']), '', ''))
    rows = [('new tenant system: rounds (missed), min / max',
             '%s (%s), %s / %s ms' % (c['rounds'], c['missed'], fmt(c['min']),
                                      fmt(c['max'])))]
    for to in ('frr', 'ovs'):
        rows.append(('move to %s under a 10 ms prober: outage p50 / max'
                     % ('FRR' if to == 'frr' else 'OVS'),
                     '%s / %s ms' % (fmt(mo[to]['p50']), fmt(mo[to]['max']))))
    if e:
        rows.append(('export: %d routes to FRR, handed to os-ken, speaker CPU'
                     ' (routes per CPU second)' % e['routes'],
                     '%s s, %s s, %s s (%s)' % (
                         fmt(e['seconds_to_frr']),
                         fmt(e['handed_to_os_ken_s']),
                         fmt(e['speaker_cpu_s']),
                         fmt(e.get('routes_per_cpu_s')))))
    if d.get('loadavg'):
        rows.append(('load average (start, end)', str(d['loadavg'])))
    return head, table(['figure', 'value'], rows)


RENDERERS['evpn.json'] = r_evpn


def r_side_by_side(d):
    ours, ovn, r = d['ours'], d['ovn'], d['ratios']
    att = ours.get('attach') or {}
    un = ours.get('unannounced') or {}
    an = ours.get('announced') or {}
    bring = ovn['bring_up']['all']
    later = ovn['bring_up']['later_vms']
    iv = fmt(d.get('prober_interval_ms'), ' ms')

    def p50(block, key='outage_ms'):
        return ((block or {}).get(key) or {}).get('p50')
    reach = att.get('attach_to_reach_p50_ms')
    ovn_after = p50(bring, 'after_bind_ms')
    head = [('bring-up p50: ours / OVN once ovs-vswitchd has the port (ms), '
             'ratio', '%s / %s, %s' % (fmt(reach), fmt(ovn_after),
                                      fmt(r.get('bring_up_vs_ovn_after_bind'))),
             '<= %s ms and below OVN' % fmt(d.get('target_attach_p50_ms')),
             met(reach is not None and ovn_after is not None
                 and reach <= d.get('target_attach_p50_ms', 10.0)
                 and reach < ovn_after)),
            ('migration outage p50: ours unannounced / OVN mbb / OVN bbb '
             '(ms)', '%s / %s / %s' % (fmt(p50(un)), fmt(p50(ovn.get('mbb'))),
                                      fmt(p50(ovn.get('bbb')))), '', ''),
            ('probes lost: ours announced / OVN mbb (%s prober)' % iv,
             '%s / %s' % (an.get('lost_total'),
                          (ovn.get('mbb') or {}).get('lost_total')), '', '')]
    rows = [
        ('bring-up p50: this app, first frame -> reached from every other '
         'member NVE', fmt(reach, ' ms')),
        ('bring-up p50: OVN, ovs-vswitchd has the port -> first reply '
         '(all / later VMs on a chassis)', '%s / %s ms' % (
             fmt(ovn_after), fmt(p50(later, 'after_bind_ms')))),
        ('bring-up p50: OVN from the bind / from lsp-add', '%s / %s ms' % (
            fmt(p50(bring, 'from_bind_ms')), fmt(p50(bring, 'total_ms')))),
        ('ratio ours / OVN bring-up: once it has the port (later VMs), from '
         'the bind, from lsp-add', '%s (%s), %s, %s' % (
             fmt(r.get('bring_up_vs_ovn_after_bind')),
             fmt(r.get('bring_up_vs_ovn_after_bind_later_vms')),
             fmt(r.get('bring_up_vs_ovn_from_bind')),
             fmt(r.get('bring_up_vs_ovn_total')))),
        ('migration outage p50: this app unannounced / announced',
         '%s / %s ms' % (fmt(p50(un)), fmt(p50(an)))),
        ('migration outage p50: OVN break-before-make / make-before-break',
         '%s / %s ms' % (fmt(p50(ovn.get('bbb'))), fmt(p50(ovn.get('mbb'))))),
        ('ratio ours unannounced / OVN bbb, / OVN mbb', '%s, %s' % (
            fmt(r.get('unannounced_outage_vs_ovn_bbb')),
            fmt(r.get('unannounced_outage_vs_ovn_mbb')))),
        ('probes lost in all: ours announced / OVN mbb', '%s / %s' % (
            an.get('lost_total'), (ovn.get('mbb') or {}).get('lost_total'))),
        ('OVN: its testbed\'s steps between unplug and bind, p50 bbb / mbb '
         '(inside its outage)', '%s / %s ms' % (
             fmt(p50(ovn.get('bbb'), 'unplug_to_bind_ms')),
             fmt(p50(ovn.get('mbb'), 'unplug_to_bind_ms')))),
        ('OVN anchor: version, exit status, log, command', '%s, %s, `%s`, '
         '`%s`' % (ovn.get('ovn'), ovn.get('returncode'), ovn.get('log'),
                   ovn.get('command'))),
    ]
    runs = ours.get('runs') or {}
    for name in ('attach', 'migrate'):
        run = runs.get(name) or {}
        if run.get('loadavg'):
            rows.append(('1-minute load average, this app\'s %s run: start '
                         '/ end' % name, ' / '.join(
                             '%.2f' % x[0] for x in run['loadavg'])))
    if ovn.get('loadavg'):
        rows.append(('1-minute load average, OVN anchor run: start / end',
                     ' / '.join('%.2f' % x[0] for x in ovn['loadavg'])))
    lines = ['Prober every %s on both sides.  How each side is measured, '
             'and where the methods still differ: ' % iv, '']
    lines += ['* %s: %s' % (k, v) for k, v in sorted(
        (d.get('methods') or {}).items())]
    lines.append('')
    lines += table(['figure', 'value'], rows)
    return head, lines


RENDERERS['side_by_side.json'] = r_side_by_side


def machine_facts(found):
    for name in ('attach.json', 'flood.json', 'flows.json'):
        data = found.get(name)
        if data and isinstance(data.get('machine'), dict) and \
                data['machine'].get('cpu_model'):
            return data['machine'], 'as recorded by %s' % name
    return benchenv.machine(), 'read when report.py ran'


def render():
    found = {name: load(name, quick_fallback=True)
             for name, _s, _w in BENCHMARKS}
    extra = sorted(f for f in os.listdir(RESULTS) if f.endswith('.json')
                   and f not in found and not f.endswith('-quick.json')) \
        if os.path.isdir(RESULTS) else []
    for name in extra:
        found[name] = load(name)
    m, source = machine_facts(found)
    lines = [BEGIN, '',
             '_Generated by `benchmarks/report.py` from `benchmarks/results/'
             '*.json`; do not edit by hand._', '',
             '### Machine', '',
             'nproc %s; %s; %s GiB memory; kernel %s; Open vSwitch %s; '
             'Python %s (%s).' % (m.get('nproc'), m.get('cpu_model'),
                                  m.get('mem_gib'), m.get('kernel'),
                                  m.get('ovs'), m.get('python'), source),
             '', '### Last figures', '']
    head_rows, details = [], []
    for name, script, what in BENCHMARKS + [(n, '?', n) for n in extra]:
        data = found.get(name)
        if data is None:
            head_rows.append((what, '`%s`' % script, 'not run yet', '', '',
                              ''))
            continue
        try:
            head, body = RENDERERS.get(name, r_generic)(data)
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            head, body = r_generic(data)
            body = ['_(shape not recognised: raw fields)_', ''] + body
        if not head:
            head = [(what, 'see below', '', '')]
        label = what + (' (quick run only)' if data['_quick'] else '')
        for figure, value, target, verdict in head:
            head_rows.append((label, figure, value, target, verdict,
                              when(data)))
        details += ['#### %s (`%s`, %s)' % (label, data['_file'],
                                            when(data)), '']
        if data['_quick']:
            details += ['Only the `--quick` smoke run has results so far; '
                        'the full run writes `%s`.' % name, '']
        if data.get('command'):
            details += ['Command: `%s`' % data['command'], '']
        if isinstance(data.get('code'), dict) and data['code'].get('git'):
            details += ['Measured on commit %s%s.' % (
                data['code']['git'], ' with uncommitted changes to the app'
                if data['code'].get('app_modified') else ''), '']
        details += body + ['']
    lines += table(['benchmark', 'figure', 'value', 'target', 'verdict',
                    'date'], head_rows)
    lines += [''] + details + [END]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--print', action='store_true',
                    help='print the section instead of rewriting README.md')
    args = ap.parse_args(argv)
    section = render()
    if args.print:
        sys.stdout.write(section)
        return 0
    with open(README, encoding='utf-8') as fh:
        text = fh.read()
    if BEGIN not in text or END not in text:
        raise SystemExit('README.md has no %s ... %s markers' % (BEGIN, END))
    start = text.index(BEGIN)
    end = text.index(END) + len(END)
    new = text[:start] + section.rstrip('\n') + text[end:]
    with open(README, 'w', encoding='utf-8') as fh:
        fh.write(new)
    print('rewrote the figures section of %s' % os.path.relpath(README))
    return 0


if __name__ == '__main__':
    sys.exit(main())
