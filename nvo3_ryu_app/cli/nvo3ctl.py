"""nvo3ctl: the mapping authority's REST API (docs/contracts.md, REST API) from a shell.

    nvo3ctl [--url http://127.0.0.1:8080] [--json] COMMAND ...

Reads print aligned tables (``--json`` prints the API's JSON instead);
writes print what the API answered, or with ``--dry-run`` what they would
do (the flow-mods each NVE would receive, the mapping entries that would
change) with nothing done.  ``events --follow`` long-polls ``/v1/events``
and prints events as they happen.  ``trace`` explains a frame's fate and,
with ``--ofproto-trace``, asks the switches too; ``audit`` and ``cookie``
read what is on the switches.  Exit status: 0 on success, 1 when the API
refused the request (the error and its field go to stderr), 2 for usage
errors, 3 when the app cannot be reached, 4 when the switches do not hold
what the authority says (a trace they disagree with, audit differences,
an unknown or stale cookie).  Where the app checks who asks
(docs/contracts.md, authentication), give a token: ``--token`` or the
environment variable ``NVO3_TOKEN`` (better: it stays out of the process
list); ``--cacert`` names the CA of an https URL's certificate.

Only the standard library (urllib), so it runs on any hypervisor or
operator box without installing the app's dependencies.
"""

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = 'http://127.0.0.1:8080'
API_ERROR, CONNECTION_ERROR, DIFFERS = 1, 3, 4


class ApiError(Exception):
    """The REST API refused a request (its status, code, message and field)."""

    def __init__(self, status, code, message, field=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = (
            status, code, message, field)

    def __str__(self):
        where = ' (field %s)' % self.field if self.field else ''
        return 'error: %s %s: %s%s' % (self.status, self.code, self.message,
                                       where)


class Unreachable(Exception):
    """The REST API could not be reached."""


class Api:
    """A tiny JSON client of the REST API."""

    def __init__(self, url, timeout=10.0, token=None, cafile=None):
        self.url = url.rstrip('/')
        self.timeout = timeout
        self.token = token
        self.context = None
        if cafile:
            self.context = ssl.create_default_context(cafile=cafile)

    def call(self, method, path, body=None, query=None, timeout=None):
        """One request; returns the decoded JSON answer (None when empty), or
        raises ApiError or Unreachable."""
        url = self.url + path
        if query:
            url += ('&' if '?' in url else '?') + urllib.parse.urlencode(
                [(k, v) for k, v in query.items() if v is not None],
                doseq=True)
        data = None
        headers = {'Accept': 'application/json'}
        if self.token:
            headers['Authorization'] = 'Bearer ' + self.token
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        req = urllib.request.Request(url, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(
                    req, timeout=timeout or self.timeout,
                    context=self.context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, 'reason', exc)
            raise Unreachable('cannot reach %s: %s' % (self.url, reason)) \
                from None
        return json.loads(raw) if raw.strip() else None


def _api_error(exc):
    try:
        err = json.loads(exc.read())['error']
        return ApiError(exc.code, err.get('code'), err.get('message'),
                        err.get('field'))
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, 'http-error', exc.reason)


# --- tables -----------------------------------------------------------------

def cell(value):
    """A value as table text (None: -, booleans: yes/no, lists and maps
    joined)."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (list, tuple)):
        return ','.join(cell(v) for v in value) or '-'
    if isinstance(value, dict):
        return ','.join('%s=%s' % (k, cell(v)) for k, v in value.items()) \
            or '-'
    return str(value)


def table(rows, columns):
    """Rows (dicts) as aligned text; ``columns`` are (header, key-or-func)."""
    cells = [[h.upper() for h, _ in columns]]
    for row in rows:
        cells.append([cell(key(row) if callable(key) else row.get(key))
                      for _, key in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths))
                     .rstrip() for r in cells)


VN_COLS = [('vnid', 'vnid'), ('name', 'name'), ('service', 'service'),
           ('encap', 'encap'), ('gateway', lambda r: _gateway(r)),
           ('nves', 'nves'), ('ts', 'tenant_systems'), ('origin', 'origin')]
MEMBER_COLS = [('nve', 'nve'), ('vtep ip', 'vtep_ip'),
               ('tenant systems', 'tenant_systems')]
MAPPING_COLS = [('vnid', 'vnid'), ('mac', 'mac'), ('ip', 'ip'),
                ('bid', 'bid'), ('vlan', 'vlan'), ('nve', 'nve'),
                ('nve name', 'nve_name'), ('nve ip', 'nve_ip'), ('nve mac', 'nve_mac'),
                ('port', 'port'), ('tunnel-if-id', 'tunnel_if_id'),
                ('origin', 'origin')]
NVE_COLS = [('dpid', 'dpid'), ('name', 'name'), ('vtep ip', 'vtep_ip'),
            ('connected', 'connected'), ('in sync', 'in_sync'),
            ('vns', 'vns'), ('ports', lambda r: sorted(r.get('ports') or {})),
            ('flows', 'flows_desired'), ('pending', 'pending'),
            ('origin', 'origin'), ('role', 'role')]
PORT_COLS = [('port', 'port'), ('ofport', 'ofport'),
             ('binding', lambda r: r.get('vnid') or r.get('vlans')),
             ('origin', 'origin')]
EVENT_COLS = [('seq', 'seq'), ('time', lambda r: _time(r.get('time'))),
              ('type', 'type'), ('details', lambda r: _details(r))]


def _gateway(vn):
    gw = vn.get('gateway') or {}
    if not gw.get('mac'):
        return None
    return '%s %s' % (gw['mac'], ','.join(gw.get('ips') or []))


def _time(stamp):
    if not isinstance(stamp, (int, float)):
        return None
    return time.strftime('%H:%M:%S', time.localtime(stamp)) + \
        ('%.3f' % (stamp % 1))[1:]


def _details(event):
    return ' '.join('%s=%s' % (k, cell(v)) for k, v in event.items()
                    if k not in ('seq', 'time', 'type'))


def fields(obj, keys):
    """The keys of ``obj`` and their values, one per line."""
    width = max(len(k) for k in keys)
    return '\n'.join('%s  %s' % (k.ljust(width), cell(obj.get(k)))
                     for k in keys)


# --- commands ----------------------------------------------------------------

def _part(value):
    """One path segment, quoted: an argument cannot reach another URL."""
    return urllib.parse.quote(str(value), safe='')


def cmd_vns(api, args, out):
    """nvo3ctl vns: every VN."""
    return api.call('GET', '/v1/vns'), lambda d: table(d, VN_COLS)


def cmd_vn(api, args, out):
    """nvo3ctl vn <vnid>: one VN."""
    vn = api.call('GET', '/v1/vns/%s' % _part(args.vnid))
    return vn, lambda d: fields(dict(d, gateway=_gateway(d)), [
        'vnid', 'name', 'service', 'encap', 'gateway', 'nves',
        'tenant_systems', 'origin'])


def cmd_members(api, args, out):
    """nvo3ctl members <vnid>: the VN's member NVEs."""
    return (api.call('GET', '/v1/vns/%s/members' % _part(args.vnid)),
            lambda d: table(d, MEMBER_COLS))


def cmd_mappings(api, args, out):
    """nvo3ctl mappings <vnid>: the VN's mapping table entries."""
    return (api.call('GET', '/v1/vns/%s/mappings' % _part(args.vnid)),
            lambda d: table(_with_nve_names(api, d), MAPPING_COLS))


def cmd_lookup(api, args, out):
    """nvo3ctl lookup --mac/--ip: mapping entries of any VN."""
    return (api.call('GET', '/v1/mappings',
                     query={'mac': args.mac, 'ip': args.ip}),
            lambda d: table(_with_nve_names(api, d), MAPPING_COLS))


def _with_nve_names(api, rows):
    """Rows with ``nve_name`` beside their ``nve`` (a dpid)."""
    if not rows:
        return rows
    names = {n['dpid']: n.get('name') for n in api.call('GET', '/v1/nves')}
    return [dict(r, nve_name=names.get(r.get('nve'))) for r in rows]


def cmd_tesid(api, args, out):
    """nvo3ctl tesid <vnid> <mac>: a tenant system's TESID."""
    data = api.call('GET', '/v1/tesid',
                    query={'vnid': args.vnid, 'mac': args.mac})
    return data, lambda d: '<%s, %s, %s>' % (d['vnid'], d['nve'], d['ts'])


def cmd_nves(api, args, out):
    """nvo3ctl nves: every NVE."""
    return api.call('GET', '/v1/nves'), lambda d: table(d, NVE_COLS)


def _nve_text(nve):
    ports = [dict(b, port=name) for name, b in sorted(
        (nve.get('ports') or {}).items())]
    return fields(nve, ['dpid', 'name', 'role', 'vtep_ip', 'nve_mac',
                        'connected',
                        'in_sync', 'vns', 'flows_desired', 'pending',
                        'applied_seq', 'requested_seq', 'origin']) + \
        '\n\n' + table(ports, PORT_COLS)


def cmd_nve(api, args, out):
    """nvo3ctl nve <dpid>: one NVE and its ports."""
    return api.call('GET', '/v1/nves/%s' % _part(args.dpid)), _nve_text


def _write(api, args, method, path, body, render):
    """A write, or with ``--dry-run`` what it would do."""
    if getattr(args, 'dry_run', False):
        return (api.call(method, path, body, query={'dry_run': 'true'}),
                dry_run_text)
    return api.call(method, path, body), render


def dry_run_text(report):
    """What a write would do, as text."""
    lines = ['dry run of %s: nothing was changed' % report['command']]
    for nve in report['nves']:
        lines.append('%s: %d flow-mod(s)' % (_nve_label(nve),
                                              len(nve['flow_mods'])))
        lines += ['  ' + line for line in nve['flow_mods']]
    if not report['nves']:
        lines.append('no flow-mod for any NVE')
    maps = report['mappings']
    for sign, key in (('+', 'added'), ('-', 'removed')):
        for entry in maps.get(key) or ():
            lines.append('%s mapping entry %s' % (sign, _entry_text(entry)))
    for change in maps.get('changed') or ():
        lines.append('~ mapping entry %s (was %s)' % (
            _entry_text(change['after']), _entry_text(change['before'])))
    for rec in report['records']:
        lines.append('record %s %s: %s' % (
            rec['kind'], rec['key'], 'new' if rec['before'] is None else
            'removed' if rec['after'] is None else 'changed'))
    if report['events']:
        lines.append('events it would record:')
        lines += ['  %s %s' % (e['type'], _details(e))
                  for e in report['events']]
    return '\n'.join(lines)


def _nve_label(nve):
    return '%s (%s)' % (nve['name'], nve['nve']) if nve.get('name') \
        else nve['nve']


def _entry_text(entry):
    return '%s %s in VN %s at %s port %s (%s)' % (
        entry['mac'], entry.get('ip') or '-', entry['vnid'], entry['nve'],
        entry['port'], entry.get('tunnel_if_id') or 'no tunnel')


def _evpn_args(args, body):
    if args.evpn is not None:
        body['evpn'] = args.evpn
    if args.route_target:
        body['route_targets'] = args.route_target


def cmd_create_vn(api, args, out):
    """nvo3ctl create-vn: create a VN."""
    body = {'vnid': args.vnid, 'name': args.name, 'service': args.service,
            'encap': args.encap}
    _evpn_args(args, body)
    if args.gateway_mac or args.gateway_ip:
        body['gateway'] = {'mac': args.gateway_mac,
                           'ips': args.gateway_ip or []}
    return _write(api, args, 'POST', '/v1/vns', body,
                  lambda d: table([d], VN_COLS))


def cmd_update_vn(api, args, out):
    """nvo3ctl update-vn: change a VN."""
    body = {k: v for k, v in (('name', args.name), ('service', args.service),
                              ('encap', args.encap)) if v is not None}
    _evpn_args(args, body)
    if args.gateway_mac or args.gateway_ip:
        body['gateway'] = {'mac': args.gateway_mac,
                           'ips': args.gateway_ip or []}
    elif args.no_gateway:
        body['gateway'] = None
    return _write(api, args, 'PATCH', '/v1/vns/%s' % _part(args.vnid), body,
                  lambda d: table([d], VN_COLS))


def cmd_delete_vn(api, args, out):
    """nvo3ctl delete-vn: delete a VN."""
    return _write(api, args, 'DELETE', '/v1/vns/%s' % _part(args.vnid),
                  None, lambda d: 'deleted VN %s' % args.vnid)


def cmd_register_nve(api, args, out):
    """nvo3ctl register-nve: register an NVE or change it."""
    body = {k: v for k, v in (('vtep_ip', args.vtep_ip), ('name', args.name),
                              ('role', args.role)) if v is not None}
    return _write(api, args, 'PUT', '/v1/nves/%s' % _part(args.dpid), body,
                  lambda d: table([d], NVE_COLS))


def cmd_delete_nve(api, args, out):
    """nvo3ctl delete-nve: forget an NVE (disconnecting its switch)."""
    return _write(api, args, 'DELETE', '/v1/nves/%s' % _part(args.dpid),
                  None, lambda d: 'deleted NVE %s' % args.dpid)


def cmd_bind(api, args, out):
    """nvo3ctl bind: bind an access port to a VN (or VLANs to VNs)."""
    if (args.vnid is None) == (not args.vlan):
        raise UsageError('bind: give either --vnid or --vlan VLAN=VNID')
    if args.vnid is not None:
        body = {'vnid': args.vnid}
    else:
        vlans = {}
        for item in args.vlan:
            vlan, sep, vnid = item.partition('=')
            if not sep or not vnid.isdigit():
                raise UsageError('bind: --vlan takes VLAN=VNID, not %r'
                                 % item)
            vlans[vlan] = int(vnid)
        body = {'vlans': vlans}
    path = '/v1/nves/%s/ports/%s' % (_part(args.dpid), _part(args.port))
    if args.override:
        path += '?override=true'
    return _write(api, args, 'PUT', path, body,
                  lambda d: table([d], [('nve', 'nve')] + PORT_COLS))


def cmd_unbind(api, args, out):
    """nvo3ctl unbind: remove an access port's binding."""
    return _write(api, args, 'DELETE', '/v1/nves/%s/ports/%s' % (
        _part(args.dpid), _part(args.port)), None,
        lambda d: 'unbound port %s of NVE %s' % (args.port, args.dpid))


def cmd_sync(api, args, out):
    """nvo3ctl sync: whether every connected NVE acknowledged its flows."""
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        data = api.call('GET', '/v1/sync')
        if data['in_sync'] or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    states = data.get('states') or {}
    names = data.get('names') or {}
    rows = [dict(s, nve=dpid, name=names.get(dpid),
                 state=states.get(dpid)) for dpid, s in
            sorted(data['nves'].items())]

    def text(d):
        head = 'in sync' if d['in_sync'] else 'NOT in sync'
        if d.get('reason'):
            head += ': ' + d['reason']
        return head + '\n\n' + \
            table(rows, [('nve', 'nve'), ('name', 'name'),
                         ('state', 'state'), ('connected', 'connected'),
                         ('in sync', 'in_sync'), ('pending', 'pending'),
                         ('applied', 'applied_seq'),
                         ('requested', 'requested_seq')])

    if args.wait and not data['in_sync']:
        raise ApiError('timeout', 'not-in-sync',
                       'NVEs not in sync after %gs%s' % (
                           args.wait, ': ' + data['reason']
                           if data.get('reason') else ''))
    if not data.get('connected', 1):
        # Nothing can become in sync: not a report of progress.
        return data, text, API_ERROR
    return data, text


BGP_COLS = [('neighbor', 'address'), ('remote as', 'remote_as'),
            ('state', 'state'), ('router id', 'router_id')]


def cmd_bgp(api, args, out):
    """nvo3ctl bgp: the BGP EVPN speaker, its sessions and routes."""
    def text(d):
        routes = ', '.join('%s %s' % (k, v) for k, v in d['routes'].items())
        return 'AS %s, router id %s; routes: %s\n\n%s' % (
            d['as'], d['router_id'], routes, table(d['neighbors'], BGP_COLS))
    return api.call('GET', '/v1/bgp'), text


def cmd_events(api, args, out):
    """nvo3ctl events: recent events, or with --follow as they happen."""
    query = {'limit': args.limit, 'type': args.type or None}
    if args.since is not None:
        query['since'] = args.since
    page = api.call('GET', '/v1/events', query=query)
    if not args.follow:
        return page, lambda d: table(d['events'], EVENT_COLS)
    return _follow(api, args, page, out)


def _follow(api, args, page, out):
    """Print events as they happen (long-poll), until interrupted."""
    shown = 0
    if not args.json:
        out.write(_event_line({'seq': 'SEQ', 'time': 'TIME', 'type': 'TYPE',
                               'details': 'DETAILS'}) + '\n')
    while True:
        for event in page['events']:
            if args.json:
                out.write(json.dumps(event) + '\n')
            else:
                out.write(_event_line(dict(
                    seq=event['seq'], time=_time(event.get('time')),
                    type=event.get('type'), details=_details(event))) + '\n')
            shown += 1
            if args.count and shown >= args.count:
                out.flush()
                return None, None
        out.flush()
        page = api.call('GET', '/v1/events', timeout=args.wait + 15, query={
            'since': page['next_since'], 'wait': args.wait,
            'type': args.type or None})


def _event_line(row):
    """Fixed columns, so lines printed one by one still line up."""
    return ('%-7s %-12s %-16s %s' % (row['seq'], cell(row['time']),
                                     row['type'], row['details'])).rstrip()


# --- operators' questions ----------------------------------------------------

def cmd_trace(api, args, out):
    """nvo3ctl trace <vn> <src> <dst>: a frame's fate, in the draft's terms;
    with --ofproto-trace, the switches' own answer beside it."""
    data = api.call('GET', '/v1/trace', query={
        'vn': args.vn, 'src': args.src, 'dst': args.dst, 'kind': args.kind,
        'at': args.at})
    status = 0
    if args.ofproto_trace:
        for hop in data['hops']:
            hop['switch'] = ofproto_compare(args.ofproto_trace, args.bridge,
                                            hop, args.timeout)
            if not hop['switch']['agree']:
                status = DIFFERS
    return data, trace_text, status


def trace_text(data):
    """A trace as text."""
    vn = data['vn']
    lines = ['VN %d (%s, %s/%s): %s frame' % (
        vn['vnid'], vn['name'], vn['service'], vn['encap'], data['kind'])]
    src = data['source']
    lines.append('source: %s' % (_att_text(src) if 'nve' in src else
                                 '%s (%s)' % (src['mac'], src['note'])))
    if data.get('destination'):
        lines.append('destination: %s' % _att_text(data['destination']))
    lines.append('VN membership: %s' % (', '.join(
        '%s (%s)' % (m['name'], m['vtep_ip'] or 'no VTEP')
        for m in data['membership']) or 'no NVE'))
    for note in data['notes']:
        lines.append('note: %s' % note)
    for hop in data['hops']:
        lines.append('')
        lines.append('%s (%s), from %s' % (hop['name'], hop['nve'],
                                          hop['arrived']))
        for step in hop['tables']:
            if 'note' in step:
                lines.append('  table %d %-16s %s' % (
                    step['table'], step['table_name'], step['note']))
                continue
            lines.append('  table %d %-16s %-13s %s' % (
                step['table'], step['table_name'], step['tier'],
                step['owner']))
        for output in hop['outputs']:
            lines.append('  -> %s' % output)
        switch = hop.get('switch')
        if switch is not None:
            lines.append('  ofproto/trace: %s' % switch['text'])
    lines.append('')
    lines.append('verdict:')
    lines += ['  ' + v for v in data['verdicts']]
    checked = [h['switch'] for h in data['hops'] if 'switch' in h]
    if checked:
        lines.append('the switches %s' % (
            'agree' if all(c['agree'] for c in checked) else
            'DISAGREE with the authority'))
    return '\n'.join(lines)


def _att_text(entry):
    return '%s %s at %s port %s%s (%s)' % (
        entry['mac'], ','.join(entry['ips']) or '-', entry['nve'],
        entry['port'], ' VLAN %d' % entry['vlan'] if entry.get('vlan')
        else '', entry.get('tunnel_if_id') or 'no tunnel-if-id')


def ofproto_compare(template, bridge, hop, timeout=10.0):
    """Run ``ofproto/trace`` on the hop's NVE through ``template`` (a shell
    command with ``{host}``, ``{nve}``, ``{dpid}``, ``{bridge}`` and
    ``{flow}``) and compare the flows it hits with the authority's."""
    import shlex
    import subprocess
    values = {'host': hop['name'], 'nve': hop['name'], 'dpid': hop['nve'],
              'bridge': bridge, 'flow': hop['ofproto_trace']['flow']}
    try:
        command = template.format(**{k: shlex.quote(str(v))
                                     for k, v in values.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError('--ofproto-trace: bad template (%s); it may use '
                         '{host} {nve} {dpid} {bridge} {flow}' % exc) \
            from None
    try:
        run = subprocess.run(['sh', '-c', command], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {'agree': False, 'command': command,
                'text': 'no answer from %r in %gs' % (command, timeout)}
    if run.returncode != 0:
        return {'agree': False, 'command': command,
                'text': 'failed (%d): %s' % (run.returncode,
                                             run.stderr.strip()[-300:])}
    hits = parse_ofproto_trace(run.stdout)
    want = [(e['table'], e['priority'], int(e['cookie'], 16))
            for e in hop['ofproto_trace']['expect']]
    got = [(t, p, c) for t, p, c in hits]
    result = {'agree': got == want, 'command': command,
              'switch': [{'table': t, 'priority': p, 'cookie': '0x%016x' % c
                          if c is not None else None} for t, p, c in got]}
    if got == want:
        result['text'] = 'agrees (%d tables)' % len(want)
        return result
    for i, (mine, theirs) in enumerate(zip(want + [None] * len(got),
                                           got + [None] * len(want))):
        if mine != theirs:
            result['text'] = 'DISAGREES at step %d: the authority expects %s,'\
                ' the switch %s' % (i + 1, _hit_text(mine), _hit_text(theirs))
            break
    return result


def _hit_text(hit):
    if hit is None:
        return 'nothing more'
    table_id, priority, cookie = hit
    if priority is None:
        return 'no match in table %d' % table_id
    return 'table %d priority %d cookie %s' % (
        table_id, priority, '0x%016x' % cookie if cookie is not None else '-')


def parse_ofproto_trace(text):
    """``[(table, priority or None, cookie or None)]`` of the flows the top
    bridge of an ``ovs-appctl ofproto/trace`` output hits, in order (None
    priority: no match)."""
    import re
    hits = []
    bridges = 0
    for line in text.splitlines():
        if line.startswith('bridge("'):
            bridges += 1
            if bridges > 1:
                break
            continue
        found = re.match(r'^ (\d+)\. (.*)$', line)
        if not found:
            continue
        table_id, rest = int(found.group(1)), found.group(2)
        if rest.startswith('No match'):
            hits.append((table_id, None, None))
            continue
        prio = re.search(r'(?:^|, )priority (\d+)', rest)
        cookie = re.search(r', cookie (0x[0-9a-fA-F]+)', rest)
        hits.append((table_id, int(prio.group(1)) if prio else None,
                     int(cookie.group(1), 16) if cookie else 0))
    return hits


def cmd_audit(api, args, out):
    """nvo3ctl audit [nve]: dump NVEs now and show how they differ from
    what the authority says, in ovs-ofctl syntax (the audit repairs it)."""
    if args.nve:
        targets = [args.nve]
    else:
        targets = [n['dpid'] for n in api.call('GET', '/v1/nves')
                   if n['connected']]
    reports = [api.call('GET', '/v1/nves/%s/audit' % _part(nve),
                        timeout=args.timeout + 10) for nve in targets]
    status = DIFFERS if any(r['differences'] for r in reports) else 0
    return reports, audit_text, status


def audit_text(reports):
    """Audit reports as text."""
    lines = []
    for report in reports:
        diffs = report['differences']
        lines.append('%s: %d installed, %d desired, %s' % (
            report['nve'], report['installed'], report['desired'],
            '%d difference(s) (repaired now)' % len(diffs) if diffs
            else 'no difference'))
        for diff in diffs:
            lines.append('  %-9s %s' % (diff['change'], diff['flow']))
            if diff.get('want'):
                lines.append('  %-9s %s' % ('wanted', diff['want']))
    return '\n'.join(lines) or 'no NVE connected'


def cmd_cookie(api, args, out):
    """nvo3ctl cookie 0x4e56...: which owner (VN, NVE, tenant system) a
    flow cookie names."""
    data = api.call('GET', '/v1/cookies/%s' % _part(args.cookie))
    return data, lambda d: '%s: %s' % (d['cookie'], d['text']), (
        0 if data['known'] else DIFFERS)


def cmd_check_config(api, args, out):
    """nvo3ctl check-config [FILE]: check an ini (and its declarative file)
    as the app would at start, with the app's own code."""
    import subprocess
    run = subprocess.run([sys.executable, '-m', 'nvo3_ryu_app.checkconfig',
                          args.file], check=False)
    if run.returncode not in (0, 2):
        raise UsageError('check-config needs the app installed beside '
                         'nvo3ctl (python -m nvo3_ryu_app.checkconfig)')
    return None, None, run.returncode


def cmd_completion(api, args, out):
    """nvo3ctl completion bash: a bash completion script for nvo3ctl."""
    return None, lambda d: bash_completion(parser()), 0


def bash_completion(top):
    """A bash completion script, generated from the argparse tree: the
    commands, and each command's options."""
    subs = next(a for a in top._actions
                if isinstance(a, argparse._SubParsersAction))
    globals_ = sorted(o for a in top._actions for o in a.option_strings)
    cases = []
    for name, sub in sorted(subs.choices.items()):
        opts = sorted(o for a in sub._actions for o in a.option_strings
                      if a.help is not argparse.SUPPRESS)
        cases.append('        %s) opts="%s" ;;' % (name, ' '.join(opts)))
    return '\n'.join([
        '# bash completion for nvo3ctl (generated by `nvo3ctl completion '
        'bash` from its argument parser)',
        '_nvo3ctl() {',
        '    local cur cmd i opts',
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    cmd=""',
        '    for ((i = 1; i < COMP_CWORD; i++)); do',
        '        case "${COMP_WORDS[i]}" in',
        '            --url|--timeout) ((i++)) ;;',
        '            -*) ;;',
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        '        esac',
        '    done',
        '    if [ -z "$cmd" ]; then',
        '        COMPREPLY=($(compgen -W "%s %s" -- "$cur"))' % (
            ' '.join(sorted(subs.choices)), ' '.join(globals_)),
        '        return',
        '    fi',
        '    case "$cmd" in',
        *cases,
        '        *) opts="" ;;',
        '    esac',
        '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        '}',
        'complete -o default -F _nvo3ctl nvo3ctl',
    ])


class UsageError(Exception):
    """A command line that cannot be run."""


def parser():
    """The command-line parser of nvo3ctl."""
    top = argparse.ArgumentParser(
        prog='nvo3ctl', description='Query and configure the NVO3 mapping '
        'authority over its REST API.')
    top.add_argument('--url', default=DEFAULT_URL,
                     help='the app\'s REST URL (default %(default)s)')
    top.add_argument('--json', action='store_true',
                     help='print the API\'s JSON instead of tables')
    top.add_argument('--timeout', type=float, default=10.0,
                     help='seconds to wait for an answer')
    top.add_argument('--token', default=os.environ.get('NVO3_TOKEN'),
                     help='bearer token (default: $NVO3_TOKEN)')
    top.add_argument('--cacert',
                     help='CA certificate of an https URL\'s server')
    sub = top.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    def add(name, func, helptext):
        cmd = sub.add_parser(name, help=helptext, description=helptext)
        cmd.set_defaults(func=func)
        return cmd

    def dry_run(cmd):
        cmd.add_argument('--dry-run', action='store_true',
                         help='say what it would do (flow-mods per NVE, '
                              'mapping entries, events) and do nothing')

    add('vns', cmd_vns, 'list VNs')
    add('vn', cmd_vn, 'show one VN').add_argument('vnid')
    add('members', cmd_members, 'NVEs of a VN').add_argument('vnid')
    add('mappings', cmd_mappings, 'mapping table of a VN').add_argument(
        'vnid')
    cmd = add('lookup', cmd_lookup, 'find a tenant system across VNs')
    cmd.add_argument('--mac')
    cmd.add_argument('--ip')
    cmd = add('tesid', cmd_tesid, 'TESID of a tenant system')
    cmd.add_argument('vnid')
    cmd.add_argument('mac')
    add('nves', cmd_nves, 'list NVEs')
    add('nve', cmd_nve, 'show one NVE and its ports').add_argument(
        'dpid', help='datapath id or name')
    for name, func, helptext in (('create-vn', cmd_create_vn, 'create a VN'),
                                 ('update-vn', cmd_update_vn,
                                  'change a VN')):
        cmd = add(name, func, helptext)
        cmd.add_argument('vnid', type=int)
        if name == 'create-vn':
            cmd.add_argument('name')
            cmd.add_argument('--service', default='l2',
                             choices=('l2', 'l3'))
            cmd.add_argument('--encap', default='vxlan',
                             choices=('vxlan', 'gre', 'geneve'))
        else:
            cmd.add_argument('--name')
            cmd.add_argument('--service', choices=('l2', 'l3'))
            cmd.add_argument('--encap', choices=('vxlan', 'gre', 'geneve'))
            cmd.add_argument('--no-gateway', action='store_true')
        cmd.add_argument('--evpn', action='store_true', default=None,
                         help='share the VN over BGP EVPN')
        cmd.add_argument('--no-evpn', dest='evpn', action='store_false')
        cmd.add_argument('--route-target', action='append',
                         help='BGP route target, e.g. 65001:5001 (repeat '
                              'for more; default <AS>:<vnid>)')
        cmd.add_argument('--gateway-mac')
        cmd.add_argument('--gateway-ip', action='append',
                         help='gateway address with prefix, e.g. '
                              '192.168.10.1/24 (repeat for more)')
        dry_run(cmd)
    cmd = add('delete-vn', cmd_delete_vn, 'delete a VN')
    cmd.add_argument('vnid')
    dry_run(cmd)
    cmd = add('register-nve', cmd_register_nve,
              'register an NVE or change its VTEP address or name')
    cmd.add_argument('dpid', help='datapath id (or the name of a known NVE)')
    cmd.add_argument('--vtep-ip')
    cmd.add_argument('--name')
    cmd.add_argument('--role', choices=('nve', 'gateway'))
    dry_run(cmd)
    cmd = add('delete-nve', cmd_delete_nve, 'forget an NVE: its bindings '
              'and tenant systems go, its switch is disconnected')
    cmd.add_argument('dpid', help='the NVE: datapath id or name')
    dry_run(cmd)
    cmd = add('bind', cmd_bind,
              'bind an access port to a VN, or VLANs on it to VNs')
    cmd.add_argument('dpid', help='the NVE: datapath id or name')
    cmd.add_argument('port')
    cmd.add_argument('--vnid', type=int)
    cmd.add_argument('--vlan', action='append', metavar='VLAN=VNID')
    cmd.add_argument('--override', action='store_true',
                     help='bind over a binding of the configuration file '
                          '(it comes back when this one is unbound)')
    dry_run(cmd)
    cmd = add('unbind', cmd_unbind, 'unbind an access port (an override '
              'gives way to the configuration file\'s binding)')
    cmd.add_argument('dpid', help='the NVE: datapath id or name')
    cmd.add_argument('port')
    dry_run(cmd)
    add('bgp', cmd_bgp, 'the BGP EVPN speaker: sessions and routes')
    cmd = add('sync', cmd_sync, 'flow sync status of the NVEs')
    cmd.add_argument('--wait', type=float, default=0,
                     help='wait up to this many seconds for in-sync '
                          '(exit 1 if not)')
    cmd = add('trace', cmd_trace, 'explain what happens to a frame: the '
              'mapping entries and VN membership that decide, the NVEs and '
              'tunnels it takes, where it is answered, replicated or '
              'dropped and why')
    cmd.add_argument('vn', help='the VN: VNID or name')
    cmd.add_argument('src', help='the sending tenant system: MAC or IP')
    cmd.add_argument('dst', help='MAC, IP or broadcast')
    cmd.add_argument('--kind', default='auto',
                     choices=('auto', 'ip', 'arp', 'eth', 'broadcast'),
                     help='auto: an IP packet, or an ARP request when the '
                          'destination\'s MAC is unknown')
    cmd.add_argument('--at', metavar='NVE:PORT',
                     help='send from this port (a source the authority '
                          'does not know there)')
    cmd.add_argument('--ofproto-trace', metavar='TEMPLATE',
                     help='also run ofproto/trace on each NVE the frame '
                          'reaches, e.g. \'ssh {host} ovs-appctl '
                          'ofproto/trace {bridge} {flow}\', and say whether '
                          'the switch agrees (exit 4 if not)')
    cmd.add_argument('--bridge', default='br-int',
                     help='the NVEs\' bridge for {bridge} (default '
                          '%(default)s)')
    cmd = add('audit', cmd_audit, 'compare NVEs\' flows with what the '
              'authority says, in ovs-ofctl syntax (exit 4 on differences)')
    cmd.add_argument('nve', nargs='?', help='one NVE (name or dpid); all '
                     'connected ones by default')
    cmd = add('cookie', cmd_cookie, 'which VN, NVE or tenant system a flow '
              'cookie names (exit 4 when unknown / stale)')
    cmd.add_argument('cookie', help='e.g. 0x4e56030035ef07e7')
    cmd = add('check-config', cmd_check_config, 'check an ini file (every '
              'option of [nvo3], and its declarative file) as the app would '
              'at start; exit 0 when it can start, 2 otherwise')
    cmd.add_argument('file', nargs='?', default='/etc/nvo3/nvo3.conf')
    cmd = add('completion', cmd_completion, 'print a bash completion script '
              '(source it, or put it in /etc/bash_completion.d/nvo3ctl)')
    cmd.add_argument('shell', choices=('bash',))
    cmd = add('events', cmd_events, 'recent events; --follow to keep '
              'printing them as they happen')
    cmd.add_argument('--since', type=int)
    cmd.add_argument('--limit', type=int, default=50)
    cmd.add_argument('--type', action='append',
                     help='only this event type (repeatable)')
    cmd.add_argument('--follow', '-f', action='store_true')
    cmd.add_argument('--wait', type=float, default=25.0,
                     help=argparse.SUPPRESS)
    cmd.add_argument('--count', type=int, default=0,
                     help='with --follow: stop after this many events')
    from . import gateways       # its commands use this module's helpers
    gateways.add_commands(add, dry_run)
    return top


def main(argv=None, out=None, err=None):
    """Run nvo3ctl; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code
    api = Api(args.url, args.timeout, token=args.token, cafile=args.cacert)
    try:
        answer = args.func(api, args, out)
        data, render = answer[:2]
        status = answer[2] if len(answer) > 2 else 0
    except UsageError as exc:
        err.write('nvo3ctl: %s\n' % exc)
        return 2
    except ApiError as exc:
        err.write('%s\n' % exc)
        return API_ERROR
    except Unreachable as exc:
        err.write('error: %s\n' % exc)
        return CONNECTION_ERROR
    except KeyboardInterrupt:
        return 0
    if render is None:
        return status
    if args.json:
        out.write(json.dumps(data, indent=2) + '\n')
    else:
        out.write(render(data) + '\n')
    return status


if __name__ == '__main__':
    sys.exit(main())
