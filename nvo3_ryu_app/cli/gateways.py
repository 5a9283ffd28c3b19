"""nvo3ctl commands of the interconnection functionality (draft 4.3):
interconnects between VNs and external networks on gateway NVEs
(docs/contracts.md, interconnection).

    nvo3ctl interconnects
    nvo3ctl put-interconnect vn1-vn3 --gateway 00000000000000ff \\
        --vn 1001 --vn 1003 --allow 02:00:00:00:01:01 --allow ...
    nvo3ctl put-interconnect r-a --gateway ... --vn 1005 --vn 2001 \\
        --router 1005=10.5.0.254/24,02:00:00:00:fe:05
    nvo3ctl externals
    nvo3ctl put-external lab --gateway ... --port ext0 --vlan 100=1001 \\
        --allow 02:00:00:00:e1:01
"""

from .nvo3ctl import UsageError, _part, _write, cell, fields, table

IC_COLS = [('name', 'name'), ('gateway', 'gateway'), ('vns', 'vns'),
           ('kind', 'kind'), ('allowed macs', 'allowed_macs'),
           ('router', lambda r: _routers(r)),
           ('frames', lambda r: (r.get('traffic') or {}).get('frames')),
           ('bytes', lambda r: (r.get('traffic') or {}).get('bytes')),
           ('origin', 'origin')]
EXT_COLS = [('name', 'name'), ('gateway', 'gateway'), ('port', 'port'),
            ('vns', lambda r: r.get('vnid') or r.get('vlans')),
            ('allowed macs', 'allowed_macs'),
            ('hosts', lambda r: len(r.get('hosts') or ())),
            ('origin', 'origin')]
HOST_COLS = [('mac', 'mac'), ('vnid', 'vnid'), ('vlan', 'vlan'),
             ('ips', 'ips'), ('allowed', 'allowed')]


def _routers(ic):
    return ' '.join('%s:%s,%s' % (vnid, r.get('ip'), r.get('mac'))
                    for vnid, r in sorted((ic.get('router') or {}).items()))


def cmd_interconnects(api, args, out):
    """nvo3ctl interconnects: every interconnect."""
    return api.call('GET', '/v1/interconnects'), lambda d: table(d, IC_COLS)


def cmd_interconnect(api, args, out):
    """nvo3ctl interconnect <name>: one interconnect."""
    data = api.call('GET', '/v1/interconnects/%s' % _part(args.name))
    return data, lambda d: fields(dict(
        d, router=_routers(d), frames=d['traffic']['frames'],
        bytes=d['traffic']['bytes']), [
            'name', 'gateway', 'vns', 'kind', 'allowed_macs', 'router',
            'frames', 'bytes', 'origin'])


def _pairs(items, what):
    """``A=B`` words as a dict (``--vlan 100=1001``)."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition('=')
        if not sep or not key or not value:
            raise UsageError('%s takes KEY=VALUE, not %r' % (what, item))
        out[key] = value
    return out


def cmd_put_interconnect(api, args, out):
    """nvo3ctl put-interconnect: create or replace an interconnect."""
    if len(args.vn or ()) != 2:
        raise UsageError('put-interconnect: give --vn twice (the two VNs)')
    body = {'gateway': args.gateway, 'vns': args.vn}
    if args.allow:
        body['allowed_macs'] = args.allow
    routers = _pairs(args.router, '--router')
    if routers:
        body['router'] = {}
        for vnid, value in routers.items():
            ip, sep, mac = value.partition(',')
            if not sep:
                raise UsageError('--router takes VNID=IP/LEN,MAC')
            body['router'][vnid] = {'ip': ip, 'mac': mac}
    return _write(api, args, 'PUT', '/v1/interconnects/%s' % _part(args.name),
                  body, lambda d: table([d], IC_COLS))


def cmd_delete_interconnect(api, args, out):
    """nvo3ctl delete-interconnect <name>: remove an interconnect."""
    return _write(api, args, 'DELETE',
                  '/v1/interconnects/%s' % _part(args.name), None,
                  lambda d: 'deleted interconnect %s' % args.name)


def cmd_externals(api, args, out):
    """nvo3ctl externals: every external network."""
    return api.call('GET', '/v1/externals'), lambda d: table(d, EXT_COLS)


def cmd_external(api, args, out):
    """nvo3ctl external <name>: one external network and its hosts."""
    data = api.call('GET', '/v1/externals/%s' % _part(args.name))
    return data, lambda d: fields(
        dict(d, vns=cell(d.get('vnid') or d.get('vlans'))),
        ['name', 'gateway', 'port', 'ofport', 'vns', 'allowed_macs',
         'origin']) + '\n\n' + table(d['hosts'], HOST_COLS)


def cmd_put_external(api, args, out):
    """nvo3ctl put-external: create or replace an external network."""
    if (args.vnid is None) == (not args.vlan):
        raise UsageError('put-external: give either --vnid or --vlan '
                         'VLAN=VNID')
    body = {'gateway': args.gateway, 'port': args.port}
    if args.vnid is not None:
        body['vnid'] = args.vnid
    else:
        vlans = _pairs(args.vlan, '--vlan')
        if not all(v.isdigit() for v in vlans.values()):
            raise UsageError('--vlan takes VLAN=VNID')
        body['vlans'] = {k: int(v) for k, v in vlans.items()}
    if args.allow:
        body['allowed_macs'] = args.allow
    return _write(api, args, 'PUT', '/v1/externals/%s' % _part(args.name),
                  body, lambda d: table([d], EXT_COLS))


def cmd_delete_external(api, args, out):
    """nvo3ctl delete-external <name>: remove an external network."""
    return _write(api, args, 'DELETE', '/v1/externals/%s' % _part(args.name),
                  None, lambda d: 'deleted external network %s' % args.name)


def add_commands(add, dry_run):
    """Register the commands with nvo3ctl's parser (``add(name, func,
    help)`` returns the command's sub-parser; ``dry_run(cmd)`` gives a
    write its ``--dry-run``)."""
    add('interconnects', cmd_interconnects, 'list interconnects')
    add('interconnect', cmd_interconnect,
        'show one interconnect').add_argument('name')
    cmd = add('put-interconnect', cmd_put_interconnect,
              'create or replace an interconnect between two VNs')
    cmd.add_argument('name')
    cmd.add_argument('--gateway', required=True, help='the gateway dpid')
    cmd.add_argument('--vn', type=int, action='append',
                     help='a VNID (twice)')
    cmd.add_argument('--allow', action='append', metavar='MAC',
                     help='l2 + l2: an allowed MAC (repeat)')
    cmd.add_argument('--router', action='append',
                     metavar='VNID=IP/LEN,MAC',
                     help='l2 + l3: the gateway\'s address on the L2 VN')
    dry_run(cmd)
    cmd = add('delete-interconnect', cmd_delete_interconnect,
              'remove an interconnect')
    cmd.add_argument('name')
    dry_run(cmd)
    add('externals', cmd_externals, 'list external networks')
    add('external', cmd_external,
        'show one external network and its hosts').add_argument('name')
    cmd = add('put-external', cmd_put_external,
              'create or replace an external network on a gateway port')
    cmd.add_argument('name')
    cmd.add_argument('--gateway', required=True, help='the gateway dpid')
    cmd.add_argument('--port', required=True)
    cmd.add_argument('--vnid', type=int, help='untagged: its VN')
    cmd.add_argument('--vlan', action='append', metavar='VLAN=VNID')
    cmd.add_argument('--allow', action='append', metavar='MAC',
                     help='a MAC unicast may reach it for (repeat)')
    dry_run(cmd)
    cmd = add('delete-external', cmd_delete_external,
              'remove an external network')
    cmd.add_argument('name')
    dry_run(cmd)
