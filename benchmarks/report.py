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
    ('capacity.json', 'capacity_bench.py', 'capacity (simulated NVEs)'),
    ('decision.json', 'decision_bench.py',
     'decisions alone (no os-ken, no sockets)'),
    ('reconcile.json', 'reconcile_bench.py', 'restart reconciliation'),
    ('store.json', 'store_bench.py', 'mapping store'),
    ('guard.json', 'guard_bench.py', 'checking switch messages before '
     'os-ken parses them'),
    ('auth.json', 'auth_bench.py', 'who may: token checks and TLS '
     'handshakes'),
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
             '' if variant else 'p50 < 15 ms',
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
            ('REST p50 / p99 under load', '%s / %s ms' % (
                fmt(r.get('p50_ms')), fmt(r['p99_ms'])))]
    if d.get('flow_mods'):
        rows.append(('flow-mods/s sent', fmt(d['flow_mods'].get('per_s'))))
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


RENDERERS = {'capacity.json': r_capacity, 'decision.json': r_decision, 'attach.json': r_attach, 'attach-nofsync.json': r_attach,
             'flood.json': r_flood,
             'flows.json': r_flows, 'move.json': r_move,
             'reconcile.json': r_reconcile}


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
