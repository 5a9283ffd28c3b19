"""nvo3ctl: the mapping authority's REST API (docs/contracts.md, REST API) from a shell.

    nvo3ctl [--url http://127.0.0.1:8080] [--json] COMMAND ...

Reads print aligned tables (``--json`` prints the API's JSON instead);
writes print what the API answered.  Where the app checks who asks
(docs/contracts.md, authentication), give a token: ``--token`` or the
environment variable ``NVO3_TOKEN`` (better: it stays out of the process
list); ``--cacert`` names the CA of an https URL's certificate.  ``events --follow`` long-polls
``/v1/events`` and prints events as they happen.  Exit status: 0 on
success, 1 when the API refused the request (the error and its field go to
stderr), 2 for usage errors, 3 when the app cannot be reached.

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
API_ERROR, CONNECTION_ERROR = 1, 3


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
            url += '?' + urllib.parse.urlencode(
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
                ('nve ip', 'nve_ip'), ('nve mac', 'nve_mac'),
                ('port', 'port'), ('tunnel-if-id', 'tunnel_if_id'),
                ('origin', 'origin')]
NVE_COLS = [('dpid', 'dpid'), ('name', 'name'), ('vtep ip', 'vtep_ip'),
            ('connected', 'connected'), ('in sync', 'in_sync'),
            ('vns', 'vns'), ('ports', lambda r: sorted(r.get('ports') or {})),
            ('flows', 'flows_desired'), ('pending', 'pending'),
            ('origin', 'origin')]
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
            lambda d: table(d, MAPPING_COLS))


def cmd_lookup(api, args, out):
    """nvo3ctl lookup --mac/--ip: mapping entries of any VN."""
    return (api.call('GET', '/v1/mappings',
                     query={'mac': args.mac, 'ip': args.ip}),
            lambda d: table(d, MAPPING_COLS))


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
    return fields(nve, ['dpid', 'name', 'vtep_ip', 'nve_mac', 'connected',
                        'in_sync', 'vns', 'flows_desired', 'pending',
                        'applied_seq', 'requested_seq', 'origin']) + \
        '\n\n' + table(ports, PORT_COLS)


def cmd_nve(api, args, out):
    """nvo3ctl nve <dpid>: one NVE and its ports."""
    return api.call('GET', '/v1/nves/%s' % _part(args.dpid)), _nve_text


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
    return api.call('POST', '/v1/vns', body), lambda d: table([d], VN_COLS)


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
    return (api.call('PATCH', '/v1/vns/%s' % _part(args.vnid), body),
            lambda d: table([d], VN_COLS))


def cmd_delete_vn(api, args, out):
    """nvo3ctl delete-vn: delete a VN."""
    api.call('DELETE', '/v1/vns/%s' % _part(args.vnid))
    return None, lambda d: 'deleted VN %s' % args.vnid


def cmd_register_nve(api, args, out):
    """nvo3ctl register-nve: register an NVE or change it."""
    body = {k: v for k, v in (('vtep_ip', args.vtep_ip), ('name', args.name))
            if v is not None}
    return (api.call('PUT', '/v1/nves/%s' % _part(args.dpid), body),
            lambda d: table([d], NVE_COLS))


def cmd_delete_nve(api, args, out):
    """nvo3ctl delete-nve: forget an NVE (disconnecting its switch)."""
    api.call('DELETE', '/v1/nves/%s' % _part(args.dpid))
    return None, lambda d: 'deleted NVE %s' % args.dpid


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
    data = api.call('PUT', '/v1/nves/%s/ports/%s' % (
        _part(args.dpid), _part(args.port)), body)
    return data, lambda d: table([d], [('nve', 'nve')] + PORT_COLS)


def cmd_unbind(api, args, out):
    """nvo3ctl unbind: remove an access port's binding."""
    api.call('DELETE', '/v1/nves/%s/ports/%s' % (
        _part(args.dpid), _part(args.port)))
    return None, lambda d: 'unbound port %s of NVE %s' % (args.port,
                                                          args.dpid)


def cmd_sync(api, args, out):
    """nvo3ctl sync: whether every connected NVE acknowledged its flows."""
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        data = api.call('GET', '/v1/sync')
        if data['in_sync'] or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    rows = [dict(s, nve=dpid) for dpid, s in sorted(data['nves'].items())]

    def text(d):
        return ('in sync' if d['in_sync'] else 'NOT in sync') + '\n\n' + \
            table(rows, [('nve', 'nve'), ('connected', 'connected'),
                         ('in sync', 'in_sync'), ('pending', 'pending'),
                         ('applied', 'applied_seq'),
                         ('requested', 'requested_seq')])

    if args.wait and not data['in_sync']:
        raise ApiError('timeout', 'not-in-sync',
                       'NVEs not in sync after %gs' % args.wait)
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
    add('nve', cmd_nve, 'show one NVE and its ports').add_argument('dpid')
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
                             choices=('vxlan', 'gre'))
        else:
            cmd.add_argument('--name')
            cmd.add_argument('--service', choices=('l2', 'l3'))
            cmd.add_argument('--encap', choices=('vxlan', 'gre'))
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
    add('delete-vn', cmd_delete_vn, 'delete a VN').add_argument('vnid')
    cmd = add('register-nve', cmd_register_nve,
              'register an NVE or change its VTEP address or name')
    cmd.add_argument('dpid')
    cmd.add_argument('--vtep-ip')
    cmd.add_argument('--name')
    add('delete-nve', cmd_delete_nve, 'forget an NVE: its bindings and '
        'tenant systems go, its switch is disconnected').add_argument('dpid')
    cmd = add('bind', cmd_bind,
              'bind an access port to a VN, or VLANs on it to VNs')
    cmd.add_argument('dpid')
    cmd.add_argument('port')
    cmd.add_argument('--vnid', type=int)
    cmd.add_argument('--vlan', action='append', metavar='VLAN=VNID')
    cmd = add('unbind', cmd_unbind, 'unbind an access port')
    cmd.add_argument('dpid')
    cmd.add_argument('port')
    add('bgp', cmd_bgp, 'the BGP EVPN speaker: sessions and routes')
    cmd = add('sync', cmd_sync, 'flow sync status of the NVEs')
    cmd.add_argument('--wait', type=float, default=0,
                     help='wait up to this many seconds for in-sync '
                          '(exit 1 if not)')
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
        data, render = args.func(api, args, out)
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
        return 0
    if args.json:
        out.write(json.dumps(data, indent=2) + '\n')
    else:
        out.write(render(data) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
